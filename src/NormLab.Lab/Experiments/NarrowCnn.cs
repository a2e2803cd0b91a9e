namespace NormLab.Lab.Experiments;

/// <summary>
/// A narrow CNN for experiments that sweep small batches (thousands of steps at batch 2 are affordable):
/// conv3×3(c₁)-norm-ReLU-maxpool, conv3×3(c₂)-norm-ReLU-maxpool, linear(c₂·7·7 → 10), convolutions without bias.
/// The convolutions draw their weights first and in the same order whatever the normalization, so every arm of a
/// seed starts from the same weights.
/// </summary>
internal static class NarrowCnn
{
    /// <summary>The network, with <paramref name="norm"/>(channels) after each convolution.</summary>
    public static Sequential Build(Func<int, Module> norm, Rng rng, int c1 = 8, int c2 = 16) =>
        new Sequential(
            new Conv2d(1, c1, 3, padding: 1, bias: false, rng: rng), norm(c1), new ReLU(), new MaxPool2d(2),
            new Conv2d(c1, c2, 3, padding: 1, bias: false, rng: rng), norm(c2), new ReLU(), new MaxPool2d(2),
            new Flatten(), new Linear(c2 * 7 * 7, 10, rng: rng)) { NeedsInputGradient = false };

    /// <summary>The layer list as a description for reports.</summary>
    public static string Describe(string norm, int c1 = 8, int c2 = 16) =>
        $"conv3×3({c1})-{norm}-ReLU-maxpool2, conv3×3({c2})-{norm}-ReLU-maxpool2, linear({c2 * 49}→10); PyTorch's default initialization";
}

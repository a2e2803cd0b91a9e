using NormLab.Models;

namespace NormLab.Lab.Experiments;

/// <summary>
/// The fully connected networks of the Santurkar experiments (E5–E7), built from modules so that a noise layer or an
/// ℓp normalization can sit where BN would. Every Linear draws its weights from its own generator, seeded from the arm's
/// seed in layer order, so all arms of a seed start from the same weights whatever follows the layers.
/// </summary>
internal static class ProbeNets
{
    /// <summary>What follows each hidden Linear (before its activation): nothing, or a layer of the given width.</summary>
    public delegate Module? After(int width, Rng noise);

    /// <summary>
    /// Linear layers of <paramref name="widths"/> (input … output); after each hidden one, <paramref name="after"/>'s
    /// module, then ReLU unless <paramref name="linear"/>. Hidden layers have a bias only when nothing normalizes them
    /// (<paramref name="hiddenBias"/>); the output layer always has one. Weights: PyTorch's default, or N(0, 1/fan_in)
    /// with <paramref name="lecunNormal"/> (variance-preserving for a deep linear network).
    /// </summary>
    public static Sequential Mlp(Rng rng, IReadOnlyList<int> widths, After after, bool hiddenBias, bool linear = false, bool lecunNormal = false)
    {
        var seeds = Enumerable.Range(0, widths.Count - 1).Select(_ => rng.NextUInt64()).ToArray();
        var noise = rng.Fork();
        var layers = new List<Module>();
        for (int i = 0; i < widths.Count - 1; i++)
        {
            bool hidden = i < widths.Count - 2;
            var layerRng = new Rng(seeds[i]);
            var layer = new Linear(widths[i], widths[i + 1], bias: !hidden || hiddenBias, rng: layerRng);
            if (lecunNormal)
                Init.Normal(layer.Weight.Value, layerRng, 1 / Math.Sqrt(widths[i]));
            layers.Add(layer);
            if (!hidden)
                break;
            if (after(widths[i + 1], noise) is Module m)
                layers.Add(m);
            if (!linear)
                layers.Add(new ReLU());
        }
        return new Sequential([.. layers]) { NeedsInputGradient = false };
    }

    /// <summary>The normalization layer of <paramref name="kind"/> for a dense layer (null for <see cref="NormKind.None"/>).</summary>
    public static After Norm(NormKind kind) => (width, _) => kind == NormKind.None ? null : Zoo.Norm(kind, width, spatial: false);

    /// <summary>Noisy BatchNorm with the lab's noise (§2.8): μ ~ U(−a, a), s ~ U(1, b) per unit and step.</summary>
    public static After NoisyBatchNorm(double a, double b) => (width, noise) => new NoisyBatchNorm(new BatchNorm1d(width), a, b, NoiseKind.Additive, noise.Fork());

    /// <summary>The same noise on its own (the paper's "standard + noise"); draws the same numbers as <see cref="NoisyBatchNorm"/>.</summary>
    public static After Noise(double a, double b) => (_, noise) => new StepNoise(a, b, NoiseKind.Additive, noise.Fork());
}

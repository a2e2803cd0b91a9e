using NormLab.Models;

namespace NormLab.Lab.Experiments;

/// <summary>
/// The zoo's ReLU MLP and CNN, built so that every variant of an experiment (with or without BN, BN before or after the
/// ReLU, with or without dropout) starts from the same weights. Each weight layer draws from its own generator, forked
/// from the arm's generator in a fixed order before any layer is built: a bias that one variant lacks, or a dropout
/// layer that another adds, cannot shift the draws of the layers after it (in the zoo it does).
/// </summary>
internal static class SameInitNets
{
    /// <summary>784 → hidden… → 10, ReLU; BN (if any) before or after each ReLU; dropout (p &gt; 0) after each hidden block.</summary>
    public static Sequential Mlp(IReadOnlyList<int> hidden, bool bn, NormPosition position, double dropout, Rng rng)
    {
        var rngs = Forks(rng, hidden.Count + 1);
        var dropRngs = Forks(rng, hidden.Count);
        var layers = new List<Module>();
        int width = 784;
        for (int i = 0; i < hidden.Count; i++)
        {
            layers.Add(new Linear(width, hidden[i], bias: !(bn && position == NormPosition.Before), rng: rngs[i]));
            Block(layers, bn ? new BatchNorm1d(hidden[i]) : null, position);
            if (dropout > 0)
                layers.Add(new Dropout(dropout, dropRngs[i]));
            width = hidden[i];
        }
        layers.Add(new Linear(width, 10, rng: rngs[^1]));
        return new Sequential([.. layers]) { NeedsInputGradient = false };
    }

    /// <summary>Zoo.Cnn's layout: conv3×3(32)-BN-ReLU-maxpool, conv3×3(64)-BN-ReLU-maxpool, linear(3136→128)-BN-ReLU, linear(128→10).</summary>
    public static Sequential Cnn(bool bn, NormPosition position, Rng rng)
    {
        var rngs = Forks(rng, 4);
        bool bias = !(bn && position == NormPosition.Before);
        var layers = new List<Module> { new Conv2d(1, 32, 3, padding: 1, bias: bias, rng: rngs[0]) };
        Block(layers, bn ? new BatchNorm2d(32) : null, position);
        layers.Add(new MaxPool2d(2));
        layers.Add(new Conv2d(32, 64, 3, padding: 1, bias: bias, rng: rngs[1]));
        Block(layers, bn ? new BatchNorm2d(64) : null, position);
        layers.Add(new MaxPool2d(2));
        layers.Add(new Flatten());
        layers.Add(new Linear(64 * 7 * 7, 128, bias: bias, rng: rngs[2]));
        Block(layers, bn ? new BatchNorm1d(128) : null, position);
        layers.Add(new Linear(128, 10, rng: rngs[3]));
        return new Sequential([.. layers]) { NeedsInputGradient = false };
    }

    private static void Block(List<Module> layers, Module? norm, NormPosition position)
    {
        if (norm is null)
            layers.Add(new ReLU());
        else
            layers.AddRange(position == NormPosition.Before ? [norm, new ReLU()] : [new ReLU(), norm]);
    }

    private static Rng[] Forks(Rng rng, int count) => Enumerable.Range(0, count).Select(_ => rng.Fork()).ToArray();
}

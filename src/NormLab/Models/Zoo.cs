namespace NormLab.Models;

/// <summary>Which normalization layer the zoo inserts (the normalization family adds more kinds).</summary>
public enum NormKind
{
    /// <summary>No normalization.</summary>
    None,
    /// <summary>BatchNorm1d / BatchNorm2d.</summary>
    Batch,
    /// <summary>GroupNorm with 32 groups, or the largest divisor of the channel count below 32.</summary>
    Group,
    /// <summary>LayerNorm over a dense layer's features; GroupNorm(1, C) over a feature map (all of a sample's values, per-channel affine).</summary>
    Layer,
    /// <summary>InstanceNorm2d with affine parameters; a dense layer has one value per channel, so it gets LayerNorm instead.</summary>
    Instance,
    /// <summary>BatchNorm followed by noise re-sampled at every step (<see cref="NoisyBatchNorm"/>, additive, a = 1, b = 2).</summary>
    Noisy,
    /// <summary>BatchNorm with frozen statistics from the start (<see cref="BatchNorm.Freeze"/>): γ·(x − 0)/√(1 + eps) + β until unfrozen.</summary>
    Frozen,
    /// <summary>Ghost BatchNorm with virtual batches of 16 samples (<see cref="GhostBatchNorm"/>).</summary>
    Ghost,
    /// <summary>Batch renormalization (<see cref="BatchRenorm"/>) with the paper's r_max/d_max schedule.</summary>
    Renorm,
    /// <summary>ZCA whitening of groups of up to 16 channels (<see cref="DecorrelatedBatchNorm"/>).</summary>
    Whiten,
    /// <summary>ℓ1 batch normalization (<see cref="LpBatchNorm"/>, p = 1).</summary>
    Lp1,
    /// <summary>ℓ2 batch normalization (p = 2).</summary>
    Lp2,
    /// <summary>ℓ∞ batch normalization (p = ∞).</summary>
    LpInf,
    /// <summary>
    /// <see cref="SyncBatchNorm"/> over one process, which is BatchNorm; data-parallel training hands the layers its
    /// communicator with <see cref="SyncBatchNorm.ConvertSyncBatchNorm"/>.
    /// </summary>
    Sync,
}

/// <summary>
/// A normalization kind with the settings of the variants that have any; converts implicitly from <see cref="NormKind"/>
/// (every setting at its default).
/// </summary>
/// <param name="Kind">The layer.</param>
/// <param name="Groups">GroupNorm's group count (null: 32, or the largest divisor of the channel count below it).</param>
/// <param name="VirtualBatch">Ghost BatchNorm's virtual batch size.</param>
/// <param name="WhitenGroup">Channels whitened together (null: the largest divisor of the channel count up to 16).</param>
/// <param name="NoiseA">Noisy BatchNorm: noise means from U(−a, a).</param>
/// <param name="NoiseB">Noisy BatchNorm: noise scales from U(1, b).</param>
/// <param name="Noise">Noisy BatchNorm: additive or multiplicative.</param>
public sealed record NormSpec(NormKind Kind, int? Groups = null, int VirtualBatch = 16, int? WhitenGroup = null, double NoiseA = 1, double NoiseB = 2,
    NoiseKind Noise = NoiseKind.Additive)
{
    /// <summary>The kind with default settings.</summary>
    public static implicit operator NormSpec(NormKind kind) => new(kind);
}

/// <summary>Where normalization sits relative to the activation.</summary>
public enum NormPosition
{
    /// <summary>layer → norm → activation (Ioffe &amp; Szegedy's placement).</summary>
    Before,
    /// <summary>layer → activation → norm.</summary>
    After,
}

/// <summary>The activation of an MLP.</summary>
public enum ActivationKind
{
    /// <summary>1/(1 + e^−x).</summary>
    Sigmoid,
    /// <summary>max(x, 0).</summary>
    ReLU,
    /// <summary>tanh(x).</summary>
    Tanh,
}

/// <summary>
/// The networks of the lab and the CLI, built from the engine's modules. Inputs are MNIST-sized: [N, 784] for the MLPs,
/// [N, 1, 28, 28] for the convolutional nets; outputs are [N, classes] logits. A layer followed by normalization has no
/// bias (the mean subtraction cancels it; β takes its role). The networks take data, so they compute no gradient for
/// their input (<see cref="Module.NeedsInputGradient"/> is false; set it to true to backpropagate into the input).
/// </summary>
public static class Zoo
{
    /// <summary>
    /// The normalization layer for <paramref name="features"/> channels of a 2-D ([N, C]) or 4-D input;
    /// <paramref name="rng"/> seeds layers that draw random numbers (a fork of <see cref="Rng.Global"/> when null).
    /// </summary>
    public static Module Norm(NormSpec spec, int features, bool spatial, Rng? rng = null) => spec.Kind switch
    {
        NormKind.Noisy => new NoisyBatchNorm(spatial ? new BatchNorm2d(features) : new BatchNorm1d(features), spec.NoiseA, spec.NoiseB, spec.Noise,
            (rng ?? Rng.Global).Fork()),
        NormKind.Batch => spatial ? new BatchNorm2d(features) : new BatchNorm1d(features),
        NormKind.Group => new GroupNorm(spec.Groups ?? GroupNorm.DivisorGroups(features), features),
        NormKind.Layer => spatial ? new GroupNorm(1, features) : new LayerNorm(features),
        NormKind.Instance => spatial ? new InstanceNorm2d(features, affine: true) : new LayerNorm(features),
        NormKind.Whiten => new DecorrelatedBatchNorm(features, spec.WhitenGroup),
        NormKind.Renorm => new BatchRenorm(features),
        NormKind.Ghost => new GhostBatchNorm(features, spec.VirtualBatch),
        NormKind.Frozen => (spatial ? (BatchNorm)new BatchNorm2d(features) : new BatchNorm1d(features)).Freeze(),
        NormKind.Lp1 => new LpBatchNorm(features, 1),
        NormKind.Lp2 => new LpBatchNorm(features, 2),
        NormKind.LpInf => new LpBatchNorm(features, double.PositiveInfinity),
        NormKind.Sync => new SyncBatchNorm(features),
        _ => throw new ArgumentOutOfRangeException(nameof(spec), $"No normalization layer for '{spec.Kind}'."),
    };

    /// <summary>
    /// Ioffe &amp; Szegedy's MNIST network (§4.1): 784-100-100-100-10, sigmoid, weights from N(0, initStd²), biases 0.
    /// </summary>
    public static Sequential IoffeMlp(NormSpec norm, NormPosition position = NormPosition.Before, double initStd = 0.1, Rng? rng = null)
    {
        rng ??= Rng.Global;
        var model = Mlp(784, [100, 100, 100], 10, ActivationKind.Sigmoid, norm, position, rng);
        foreach (var layer in model.Modules().OfType<Linear>())
        {
            Init.Normal(layer.Weight.Value, rng, initStd);
            layer.Bias?.Value.Zero();
        }
        return model;
    }

    /// <summary>A multilayer perceptron with the given hidden widths (PyTorch's default initialization).</summary>
    public static Sequential Mlp(int inputs, IReadOnlyList<int> hidden, int classes, ActivationKind activation, NormSpec norm,
        NormPosition position = NormPosition.Before, Rng? rng = null)
    {
        if (hidden.Any(w => w <= 0))
            throw new ArgumentException($"Mlp: hidden widths must be positive, got [{string.Join(", ", hidden)}].");
        rng ??= Rng.Global;
        var layers = new List<Module>();
        int width = inputs;
        foreach (int h in hidden)
        {
            bool normFollows = norm.Kind != NormKind.None && position == NormPosition.Before;
            layers.Add(new Linear(width, h, bias: !normFollows, rng: rng));
            AddNormalized(layers, Activation(activation), norm, position, h, spatial: false, rng);
            width = h;
        }
        layers.Add(new Linear(width, classes, rng: rng));
        return new Sequential([.. layers]) { NeedsInputGradient = false };
    }

    /// <summary>conv3×3(32)-norm-ReLU-maxpool, conv3×3(64)-norm-ReLU-maxpool, linear(3136→128)-norm-ReLU, linear(128→10).</summary>
    public static Sequential Cnn(NormSpec norm, NormPosition position = NormPosition.Before, int classes = 10, Rng? rng = null)
    {
        rng ??= Rng.Global;
        bool noBias = norm.Kind != NormKind.None && position == NormPosition.Before;
        var layers = new List<Module> { new Conv2d(1, 32, 3, padding: 1, bias: !noBias, rng: rng) };
        AddNormalized(layers, new ReLU(), norm, position, 32, spatial: true, rng);
        layers.Add(new MaxPool2d(2));
        layers.Add(new Conv2d(32, 64, 3, padding: 1, bias: !noBias, rng: rng));
        AddNormalized(layers, new ReLU(), norm, position, 64, spatial: true, rng);
        layers.Add(new MaxPool2d(2));
        layers.Add(new Flatten());
        layers.Add(new Linear(64 * 7 * 7, 128, bias: !noBias, rng: rng));
        AddNormalized(layers, new ReLU(), norm, position, 128, spatial: false, rng);
        layers.Add(new Linear(128, classes, rng: rng));
        return new Sequential([.. layers]) { NeedsInputGradient = false };
    }

    /// <summary>
    /// A small ResNet for 28×28 inputs: a 3×3 stem, three stages of <paramref name="blocksPerStage"/> basic blocks
    /// (16/32/64 channels; stages 2 and 3 halve the resolution), global average pooling and a linear classifier.
    /// Normalization follows every convolution; a block's shortcut is a 1×1 convolution where its shape changes.
    /// </summary>
    public static Sequential ResNet(NormSpec norm, int blocksPerStage = 2, int classes = 10, Rng? rng = null)
    {
        rng ??= Rng.Global;
        bool hasNorm = norm.Kind != NormKind.None;
        Module ConvNorm(int cin, int cout, int k, int stride, bool relu)
        {
            var parts = new List<Module> { new Conv2d(cin, cout, k, stride, padding: k / 2, bias: !hasNorm, rng: rng) };
            if (hasNorm)
                parts.Add(Norm(norm, cout, spatial: true, rng));
            if (relu)
                parts.Add(new ReLU());
            return parts.Count == 1 ? parts[0] : new Sequential([.. parts]);
        }

        var layers = new List<Module> { ConvNorm(1, 16, 3, 1, relu: true) };
        int channels = 16;
        foreach (var (width, stride) in new[] { (16, 1), (32, 2), (64, 2) })
            for (int b = 0; b < blocksPerStage; b++)
            {
                int s = b == 0 ? stride : 1;
                var body = new Sequential(ConvNorm(channels, width, 3, s, relu: true), ConvNorm(width, width, 3, 1, relu: false));
                var shortcut = s != 1 || channels != width ? ConvNorm(channels, width, 1, s, relu: false) : null;
                layers.Add(new Residual(body, shortcut));
                layers.Add(new ReLU());
                channels = width;
            }
        layers.Add(new GlobalAvgPool2d());
        layers.Add(new Linear(channels, classes, rng: rng));
        return new Sequential([.. layers]) { NeedsInputGradient = false };
    }

    private static void AddNormalized(List<Module> layers, Module activation, NormSpec norm, NormPosition position, int features, bool spatial, Rng rng)
    {
        if (norm.Kind == NormKind.None)
        {
            layers.Add(activation);
            return;
        }
        var n = Norm(norm, features, spatial, rng);
        layers.AddRange(position == NormPosition.Before ? [n, activation] : [activation, n]);
    }

    private static Module Activation(ActivationKind kind) => kind switch
    {
        ActivationKind.ReLU => new ReLU(),
        ActivationKind.Tanh => new Tanh(),
        _ => new Sigmoid(),
    };
}

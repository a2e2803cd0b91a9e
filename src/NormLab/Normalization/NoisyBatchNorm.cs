namespace NormLab;

/// <summary>How <see cref="NoisyBatchNorm"/> perturbs BatchNorm's output.</summary>
public enum NoiseKind
{
    /// <summary>y' = y + n, n ~ N(μ_j, s_j²) per value, with μ_j ~ U(−a, a) and s_j ~ U(1, b) drawn per unit at every step.</summary>
    Additive,
    /// <summary>y' = s·y + μ with s ~ U(1, b) and μ ~ U(−a, a) drawn per value at every step.</summary>
    Multiplicative,
}

/// <summary>
/// Santurkar et al.'s "noisy" BatchNorm (2018, §2.1): BatchNorm, then noise whose distribution changes at every training
/// step, so that the layer's output distribution keeps shifting ("internal covariate shift" on purpose). The paper's
/// exact distributions are not available; this is the lab's specification (reference §2.8): per step and unit j,
/// μ_j ~ U(−<see cref="A"/>, a), s_j ~ U(1, <see cref="B"/>), see <see cref="NoiseKind"/>. Training only; seeded.
/// Parameters, buffers and <c>num_batches_tracked</c> are the inner BatchNorm's, under this layer's name.
/// </summary>
public sealed class NoisyBatchNorm : Module, IBatchCounter
{
    /// <summary>Wraps <paramref name="inner"/> (BatchNorm1d or BatchNorm2d).</summary>
    public NoisyBatchNorm(BatchNorm inner, double a = 1, double b = 2, NoiseKind kind = NoiseKind.Additive, Rng? rng = null)
    {
        if (!(a >= 0) || !(b >= 1) || double.IsInfinity(a) || double.IsInfinity(b))
            throw new ArgumentOutOfRangeException(nameof(a), $"NoisyBatchNorm: need a ≥ 0 and b ≥ 1 (finite), got a = {a}, b = {b}.");
        Inner = inner;
        Noise = new StepNoise(a, b, kind, rng ?? Rng.Global.Fork());
    }

    /// <summary>The BatchNorm whose output is perturbed.</summary>
    public BatchNorm Inner { get; }

    /// <summary>The noise applied to <see cref="Inner"/>'s output (the same module a network without BN can use on its own).</summary>
    public StepNoise Noise { get; }

    /// <summary>Range of the noise means, U(−a, a).</summary>
    public double A => Noise.A;

    /// <summary>Upper end of the noise scales, U(1, b).</summary>
    public double B => Noise.B;

    /// <summary>Additive or multiplicative.</summary>
    public NoiseKind Kind => Noise.Kind;

    /// <inheritdoc/>
    public bool TracksBatches => Inner.TrackRunningStats;

    /// <inheritdoc/>
    public long NumBatchesTracked { get => Inner.NumBatchesTracked; set => Inner.NumBatchesTracked = value; }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        if (Inner.Training != Training)
            Inner.Train(Training);
        if (Noise.Training != Training)
            Noise.Train(Training);
        return Noise.Forward(Inner.Forward(x));
    }

    /// <inheritdoc/>
    protected override Tensor BackwardCore(Tensor dy) => Inner.Backward(Noise.Backward(dy));

    /// <inheritdoc/>
    protected override IEnumerable<Parameter> LocalParameters() => Inner.Parameters();

    /// <inheritdoc/>
    protected override IEnumerable<(string Name, Tensor Value)> LocalBuffers() => Inner.NamedBuffers();

    /// <inheritdoc/>
    public override string ToString() => $"NoisyBatchNorm({Inner}, a={A}, b={B}, {Kind})";
}

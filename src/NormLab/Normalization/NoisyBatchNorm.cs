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
    private readonly Rng _rng;
    private Tensor? _output, _scale;
    private bool _noisy;

    /// <summary>Wraps <paramref name="inner"/> (BatchNorm1d or BatchNorm2d).</summary>
    public NoisyBatchNorm(BatchNorm inner, double a = 1, double b = 2, NoiseKind kind = NoiseKind.Additive, Rng? rng = null)
    {
        if (!(a >= 0) || !(b >= 1) || double.IsInfinity(a) || double.IsInfinity(b))
            throw new ArgumentOutOfRangeException(nameof(a), $"NoisyBatchNorm: need a ≥ 0 and b ≥ 1 (finite), got a = {a}, b = {b}.");
        Inner = inner;
        A = a;
        B = b;
        Kind = kind;
        _rng = rng ?? Rng.Global.Fork();
    }

    /// <summary>The BatchNorm whose output is perturbed.</summary>
    public BatchNorm Inner { get; }

    /// <summary>Range of the noise means, U(−a, a).</summary>
    public double A { get; }

    /// <summary>Upper end of the noise scales, U(1, b).</summary>
    public double B { get; }

    /// <summary>Additive or multiplicative.</summary>
    public NoiseKind Kind { get; }

    /// <inheritdoc/>
    public bool TracksBatches => Inner.TrackRunningStats;

    /// <inheritdoc/>
    public long NumBatchesTracked { get => Inner.NumBatchesTracked; set => Inner.NumBatchesTracked = value; }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        if (Inner.Training != Training)
            Inner.Train(Training);
        var y = Inner.Forward(x);
        var output = Tensor.Ensure(ref _output, y.Shape);
        _noisy = Training;
        if (!Training)
        {
            output.CopyFrom(y);
            return output;
        }
        int n = y.Dim(0), c = y.Dim(1), s = y.Length / Math.Max(1, n * c);
        var ys = y.Span;
        var os = output.Span;
        if (Kind == NoiseKind.Additive)
        {
            for (int ch = 0; ch < c; ch++)
            {
                double mu = A * (2 * _rng.NextDouble() - 1), sd = 1 + (B - 1) * _rng.NextDouble();
                for (int i = 0; i < n; i++)
                    for (int j = (i * c + ch) * s, end = j + s; j < end; j++)
                        os[j] = (float)(ys[j] + mu + sd * _rng.NextGaussian());
            }
            return output;
        }
        var scale = Tensor.Ensure(ref _scale, y.Shape).Span;
        for (int j = 0; j < ys.Length; j++)
        {
            scale[j] = (float)(1 + (B - 1) * _rng.NextDouble());
            os[j] = (float)(scale[j] * ys[j] + A * (2 * _rng.NextDouble() - 1));
        }
        return output;
    }

    /// <inheritdoc/>
    protected override Tensor BackwardCore(Tensor dy)
    {
        ShapeCheck.Gradient(dy, _output, "NoisyBatchNorm");
        if (!_noisy || Kind == NoiseKind.Additive)
            return Inner.Backward(dy);
        var scaled = Tensor.Ensure(ref _scale, dy.Shape);
        var s = scaled.Span;
        var g = dy.Span;
        for (int j = 0; j < s.Length; j++)
            s[j] *= g[j]; // the scales are not needed after this step
        return Inner.Backward(scaled);
    }

    /// <inheritdoc/>
    protected override IEnumerable<Parameter> LocalParameters() => Inner.Parameters();

    /// <inheritdoc/>
    protected override IEnumerable<(string Name, Tensor Value)> LocalBuffers() => Inner.NamedBuffers();

    /// <inheritdoc/>
    public override string ToString() => $"NoisyBatchNorm({Inner}, a={A}, b={B}, {Kind})";
}

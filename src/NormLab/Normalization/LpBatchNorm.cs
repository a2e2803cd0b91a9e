using NormLab.Kernels;

namespace NormLab;

/// <summary>
/// ℓp batch normalization (Santurkar et al. 2018, §3.3; the formula is this lab's reconstruction, see
/// <see cref="LpNormKernels"/>): per channel over the batch, x̂ = (x − μ_B)/(s_p + eps) with s_p the p-th root of the mean
/// p-th power of the deviations (p = 1, 2 or ∞), then γ, β. Like BatchNorm it keeps running statistics for eval mode:
/// <c>running_mean</c> and <c>running_scale</c> (the batch s_p), averaged with <paramref name="momentum"/>.
/// Input [N, C] or [N, C, H, W].
/// </summary>
public sealed class LpBatchNorm(int numFeatures, double p, double eps = 1e-5, double momentum = 0.1) : Module
{
    private readonly double[] _mean = new double[CheckFeatures(numFeatures)], _scale = new double[numFeatures];
    private Tensor? _input, _output, _inputGrad;
    private bool _usedBatch;
    private (int N, int C, int S) _layout;

    /// <summary>C.</summary>
    public int NumFeatures { get; } = numFeatures;

    /// <summary>p: 1, 2 or <see cref="double.PositiveInfinity"/>.</summary>
    public double P { get; } = p is 1 or 2 || double.IsPositiveInfinity(p) ? p : throw new ArgumentOutOfRangeException(nameof(p), $"LpBatchNorm: p must be 1, 2 or ∞, got {p}.");

    /// <summary>Added to s_p.</summary>
    public double Eps { get; } = eps >= 0 && !double.IsInfinity(eps) ? eps : throw new ArgumentOutOfRangeException(nameof(eps), $"LpBatchNorm: eps must be finite and ≥ 0, got {eps}.");

    /// <summary>Weight of the new batch statistic in the running averages.</summary>
    public double Momentum { get; } = momentum is >= 0 and <= 1 ? momentum : throw new ArgumentOutOfRangeException(nameof(momentum), $"LpBatchNorm: momentum must be in [0, 1], got {momentum}.");

    /// <summary>γ.</summary>
    public Parameter Weight { get; } = NormParameters.Scale(numFeatures);

    /// <summary>β.</summary>
    public Parameter Bias { get; } = NormParameters.Shift(numFeatures);

    /// <summary>The running mean.</summary>
    public Tensor RunningMean { get; } = new(numFeatures);

    /// <summary>The running s_p.</summary>
    public Tensor RunningScale { get; } = NormParameters.Ones(numFeatures);

    private static int CheckFeatures(int c) => c > 0 ? c : throw new ArgumentOutOfRangeException(nameof(numFeatures), $"LpBatchNorm: numFeatures must be positive, got {c}.");

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        if (x.Rank is not (2 or 4) || x.Dim(1) != NumFeatures)
            throw new ArgumentException($"{this}: expected input [N, {NumFeatures}] or [N, {NumFeatures}, H, W], got shape {x.ShapeString}.");
        int n = x.Dim(0), s = x.Rank == 4 ? x.Dim(2) * x.Dim(3) : 1;
        _layout = (n, NumFeatures, s);
        _input = x;
        var y = Tensor.Ensure(ref _output, x.Shape);
        _usedBatch = Training;
        if (Training)
        {
            if ((long)n * s == 1)
                throw new ArgumentException($"{this}: expected more than 1 value per channel when training, got input of shape {x.ShapeString}.");
            LpNormKernels.Moments<float>(x.Span, n, NumFeatures, s, P, _mean, _scale);
            var rm = RunningMean.Span;
            var rs = RunningScale.Span;
            for (int c = 0; c < NumFeatures; c++)
            {
                rm[c] = (float)((1 - Momentum) * rm[c] + Momentum * _mean[c]);
                rs[c] = (float)((1 - Momentum) * rs[c] + Momentum * _scale[c]);
            }
        }
        else
            for (int c = 0; c < NumFeatures; c++)
                (_mean[c], _scale[c]) = (RunningMean.Span[c], RunningScale.Span[c]);
        LpNormKernels.Normalize<float>(y.Span, x.Span, n, NumFeatures, s, _mean, _scale, Eps, Weight.Value.Span, Bias.Value.Span);
        return y;
    }

    /// <inheritdoc/>
    protected override Tensor BackwardCore(Tensor dy)
    {
        ShapeCheck.Gradient(dy, _output, "LpBatchNorm");
        var x = _input!;
        var dx = Tensor.Ensure(ref _inputGrad, x.Shape);
        var (n, c, s) = _layout;
        if (_usedBatch)
            LpNormKernels.Backward<float>(dx.Span, Weight.Grad.Span, Bias.Grad.Span, dy.Span, x.Span, n, c, s, P, _mean, _scale, Eps, Weight.Value.Span);
        else
            LpNormKernels.BackwardFixed<float>(dx.Span, Weight.Grad.Span, Bias.Grad.Span, dy.Span, x.Span, n, c, s, _mean, _scale, Eps, Weight.Value.Span);
        return dx;
    }

    /// <inheritdoc/>
    protected override IEnumerable<Parameter> LocalParameters()
    {
        yield return Weight;
        yield return Bias;
    }

    /// <inheritdoc/>
    protected override IEnumerable<(string Name, Tensor Value)> LocalBuffers()
    {
        yield return ("running_mean", RunningMean);
        yield return ("running_scale", RunningScale);
    }

    /// <inheritdoc/>
    public override string ToString() => $"LpBatchNorm({NumFeatures}, p={(double.IsPositiveInfinity(P) ? "inf" : P.ToString(System.Globalization.CultureInfo.InvariantCulture))}, eps={Eps}, momentum={Momentum})";
}

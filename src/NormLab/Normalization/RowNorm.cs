using NormLab.Kernels;

namespace NormLab;

/// <summary>
/// Normalization with statistics per sample rather than per batch (GroupNorm, LayerNorm, InstanceNorm): each sample's
/// rows are normalized by their own mean and biased variance, the same in training and eval, then scaled and shifted
/// by learnable γ (<c>weight</c>) and β (<c>bias</c>). See <see cref="RowNormKernels"/>.
/// </summary>
public abstract class RowNorm : Module
{
    private Tensor? _input, _output, _inputGrad;
    private double[] _mean = [], _invStd = [], _variance = [], _scratch = [];
    private RowLayout _layout;

    /// <summary>Creates the affine parameters (γ = 1, β = 0) of the given shape, if any.</summary>
    protected RowNorm(double eps, int[]? parameterShape, bool bias = true)
    {
        if (!(eps >= 0) || double.IsInfinity(eps))
            throw new ArgumentOutOfRangeException(nameof(eps), $"{GetType().Name}: eps must be a finite value ≥ 0, got {eps}.");
        Eps = eps;
        if (parameterShape is null)
            return;
        Weight = NormParameters.Scale(parameterShape);
        if (bias)
            Bias = NormParameters.Shift(parameterShape);
    }

    /// <summary>Added to the variance under the square root.</summary>
    public double Eps { get; }

    /// <summary>γ (named <c>weight</c> as in PyTorch); null without affine parameters.</summary>
    public Parameter? Weight { get; }

    /// <summary>β (named <c>bias</c> as in PyTorch); null without it.</summary>
    public Parameter? Bias { get; }

    /// <summary>Checks the input's shape and says how it splits into rows.</summary>
    protected abstract RowLayout Layout(Tensor x);

    /// <summary>The per-row statistics of the last forward pass (mean, 1/√(var + eps), biased variance).</summary>
    protected (double[] Mean, double[] InvStd, double[] Variance) RowStatistics => (_mean, _invStd, _variance);

    /// <summary>Normalizes with per-row statistics; subclasses with running statistics override it.</summary>
    protected override Tensor ForwardCore(Tensor x)
    {
        var layout = Layout(x);
        _layout = layout;
        _input = x;
        var y = Tensor.Ensure(ref _output, x.Shape);
        if (x.Length == 0)
            return y;
        NormParameters.Grow(ref _mean, layout.Rows);
        NormParameters.Grow(ref _invStd, layout.Rows);
        NormParameters.Grow(ref _variance, layout.Rows);
        RowNormKernels.Moments<float>(x.Span, layout, Eps, _mean, _invStd, _variance);
        RowStatisticsComputed(x, layout);
        RowNormKernels.Normalize<float>(y.Span, x.Span, layout, _mean, _invStd, Gamma, Beta);
        return y;
    }

    /// <summary>Called after the row statistics of a forward pass are known (e.g. to update running statistics).</summary>
    protected virtual void RowStatisticsComputed(Tensor x, RowLayout layout)
    {
    }

    /// <inheritdoc/>
    protected override Tensor BackwardCore(Tensor dy)
    {
        ShapeCheck.Gradient(dy, _output, this);
        var x = _input!;
        var dx = Tensor.Ensure(ref _inputGrad, x.Shape);
        if (x.Length == 0)
            return dx;
        NormParameters.Grow(ref _scratch, 2 * _layout.Rows * _layout.Segments);
        RowNormKernels.Backward<float>(dx.Span, Weight is null ? default : Weight.Grad.Span, Bias is null ? default : Bias.Grad.Span,
            dy.Span, x.Span, _layout, _mean, _invStd, Gamma, _scratch);
        return dx;
    }

    /// <inheritdoc/>
    protected override IEnumerable<Parameter> LocalParameters()
    {
        if (Weight is not null)
            yield return Weight;
        if (Bias is not null)
            yield return Bias;
    }

    /// <summary>γ, or empty for γ = 1.</summary>
    protected ReadOnlySpan<float> Gamma => Weight is null ? ReadOnlySpan<float>.Empty : Weight.Value.Span;

    /// <summary>β, or empty for β = 0.</summary>
    protected ReadOnlySpan<float> Beta => Bias is null ? ReadOnlySpan<float>.Empty : Bias.Value.Span;
}

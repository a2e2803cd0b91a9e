using NormLab.Kernels;

namespace NormLab;

/// <summary>
/// y = x·Wᵀ + b with W of shape [out, in] (PyTorch's layout). Input [N, in], output [N, out].
/// Initialized as PyTorch does: W, b ~ U(−1/√in, 1/√in).
/// </summary>
public sealed class Linear : Module
{
    private Tensor? _input, _output, _inputGrad;

    /// <summary>Creates the layer.</summary>
    /// <param name="inFeatures">Input features.</param>
    /// <param name="outFeatures">Output features.</param>
    /// <param name="bias">Whether to add a learnable bias.</param>
    /// <param name="rng">Generator for the initial weights; <see cref="Rng.Global"/> when null.</param>
    public Linear(int inFeatures, int outFeatures, bool bias = true, Rng? rng = null)
    {
        if (inFeatures <= 0 || outFeatures <= 0)
            throw new ArgumentOutOfRangeException(nameof(inFeatures), $"Linear: sizes must be positive, got in={inFeatures}, out={outFeatures}.");
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        rng ??= Rng.Global;
        Weight = new Parameter("weight", new Tensor(outFeatures, inFeatures), ParameterRole.Weight);
        Init.KaimingUniform(Weight.Value, rng, a: Math.Sqrt(5));
        if (bias)
        {
            Bias = new Parameter("bias", new Tensor(outFeatures), ParameterRole.Bias);
            float bound = 1f / MathF.Sqrt(inFeatures);
            Init.Uniform(Bias.Value, rng, -bound, bound);
        }
    }

    /// <summary>Input features.</summary>
    public int InFeatures { get; }

    /// <summary>Output features.</summary>
    public int OutFeatures { get; }

    /// <summary>W, shape [out, in].</summary>
    public Parameter Weight { get; }

    /// <summary>b, shape [out]; null without bias.</summary>
    public Parameter? Bias { get; }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        if (x.Rank != 2 || x.Dim(1) != InFeatures)
            throw new ArgumentException(
                $"Linear({InFeatures}→{OutFeatures}): expected input [N, {InFeatures}] for weight of shape {Weight.Value.ShapeString}, got input of shape {x.ShapeString}.");
        _input = x;
        int n = x.Dim(0);
        var y = Tensor.Ensure(ref _output, n, OutFeatures);
        var ys = y.Span;
        // With a bias the sums start from it (its bits in the sums); without, the product writes y.
        if (Bias is not null)
            for (int i = 0; i < n; i++)
                Bias.Value.Span.CopyTo(ys.Slice(i * OutFeatures, OutFeatures));
        Gemm.ABt<float>(ys, x.Span, Weight.Value.Span, n, InFeatures, OutFeatures, accumulate: Bias is not null);
        return y;
    }

    /// <inheritdoc/>
    protected override Tensor BackwardCore(Tensor dy)
    {
        ShapeCheck.Gradient(dy, _output, "Linear");
        var x = _input!;
        int n = x.Dim(0);
        var dx = NoGradient;
        if (NeedsInputGradient)
        {
            dx = Tensor.Ensure(ref _inputGrad, x.Shape);
            Gemm.AB<float>(dx.Span, dy.Span, Weight.Value.Span, n, OutFeatures, InFeatures, accumulate: false); // dx = dy·W
        }
        // After a ZeroGrad the gradients are written rather than added to (the same bits as adding to zeros).
        var dW = Weight.GradToWrite(out bool overwrite);
        Gemm.AtB<float>(dW.Span, dy.Span, x.Span, OutFeatures, n, InFeatures, accumulate: !overwrite); // dW += dyᵀ·x
        if (Bias is not null)
        {
            var db = Bias.GradToWrite(out bool overwriteBias).Span;
            if (overwriteBias)
                db.Clear();
            var dys = dy.Span;
            for (int i = 0; i < n; i++)
                Gemm.Axpy(db, 1f, dys.Slice(i * OutFeatures, OutFeatures));               // db += Σ_n dy
        }
        return dx;
    }

    /// <inheritdoc/>
    protected override IEnumerable<Parameter> LocalParameters()
    {
        yield return Weight;
        if (Bias is not null)
            yield return Bias;
    }

    /// <inheritdoc/>
    public override string ToString() => $"Linear({InFeatures}, {OutFeatures}, bias={Bias is not null})";
}

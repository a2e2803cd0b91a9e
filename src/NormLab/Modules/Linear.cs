using NormLab.Kernels;
using NormLab.Threading;

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
    protected override unsafe Tensor BackwardCore(Tensor dy)
    {
        ShapeCheck.Gradient(dy, _output, "Linear");
        var x = _input!;
        var dx = NeedsInputGradient ? Tensor.Ensure(ref _inputGrad, x.Shape) : NoGradient;
        var args = new Gradients
        {
            Dx = dx.Span, Dy = dy.Span, X = x.Span, W = Weight.Value.Span, N = x.Dim(0), In = InFeatures, Out = OutFeatures,
        };
        // After a ZeroGrad the gradients are written rather than added to (the same bits as adding to zeros).
        args.DW = Weight.GradToWrite(out args.OverwriteW).Span;
        if (Bias is not null)
            args.Db = Bias.GradToWrite(out args.OverwriteB).Span;
        // dx and dW are products of the same size with no common output: on a team of two each runs whole on its own
        // thread, at the one-thread speed of the GEMM, where the MLP's small products split in two ran at 55–65 % of
        // the peak against 75–82 %. The bits are the same either way (a product's split never changes them).
        if (NeedsInputGradient && Team.Size == 2)
            Team.For(2, ref args, &Run);
        else
            Run(ref args, NeedsInputGradient ? 0 : 1, 2);
        return dx;
    }

    // Part 0: dx = dy·W. Part 1: dW += dyᵀ·x and db += Σ_n dy.
    private static void Run(ref Gradients g, int first, int end)
    {
        for (int part = first; part < end; part++)
        {
            if (part == 0)
            {
                Gemm.AB<float>(g.Dx, g.Dy, g.W, g.N, g.Out, g.In, accumulate: false);
                continue;
            }
            Gemm.AtB<float>(g.DW, g.Dy, g.X, g.Out, g.N, g.In, accumulate: !g.OverwriteW);
            if (g.Db.IsEmpty)
                continue;
            if (g.OverwriteB)
                g.Db.Clear();
            for (int i = 0; i < g.N; i++)
                Gemm.Axpy(g.Db, 1f, g.Dy.Slice(i * g.Out, g.Out));
        }
    }

    private ref struct Gradients
    {
        public Span<float> Dx, DW, Db;
        public ReadOnlySpan<float> Dy, X, W;
        public int N, In, Out;
        public bool OverwriteW, OverwriteB;
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

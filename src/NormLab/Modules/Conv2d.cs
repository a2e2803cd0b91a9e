using NormLab.Kernels;

namespace NormLab;

/// <summary>
/// 2-D convolution (cross-correlation, as in PyTorch) over [N, C_in, H, W] inputs with a square k×k kernel, one stride and
/// zero padding on both axes. Weight [C_out, C_in, k, k], bias [C_out]; output [N, C_out, OH, OW] with
/// OH = (H + 2·padding − k)/stride + 1 rounded down (likewise OW).
/// Initialized as PyTorch does: Kaiming-uniform weight with a = √5, i.e. W, b ~ U(−1/√fan_in, 1/√fan_in), fan_in = C_in·k·k.
/// </summary>
public sealed class Conv2d : Module
{
    private readonly string _name;
    private Tensor? _input, _output, _inputGrad, _columns;
    private Window2d _window;

    /// <summary>Creates the layer.</summary>
    /// <param name="inChannels">C_in, the input channels.</param>
    /// <param name="outChannels">C_out, the output channels (filters).</param>
    /// <param name="kernelSize">k, the side of the square kernel.</param>
    /// <param name="stride">The step between windows, ≥ 1.</param>
    /// <param name="padding">Zeros added on every side of the input, ≥ 0.</param>
    /// <param name="bias">Whether to add a learnable bias per output channel.</param>
    /// <param name="rng">Generator for the initial weights; <see cref="Rng.Global"/> when null.</param>
    public Conv2d(int inChannels, int outChannels, int kernelSize, int stride = 1, int padding = 0, bool bias = true, Rng? rng = null)
    {
        if (inChannels <= 0 || outChannels <= 0 || kernelSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(kernelSize),
                $"Conv2d: channels and kernel size must be positive, got in={inChannels}, out={outChannels}, kernel_size={kernelSize}.");
        if (stride <= 0)
            throw new ArgumentOutOfRangeException(nameof(stride), $"Conv2d: stride must be positive, got {stride}.");
        if (padding < 0)
            throw new ArgumentOutOfRangeException(nameof(padding), $"Conv2d: padding must be ≥ 0, got {padding}.");
        InChannels = inChannels;
        OutChannels = outChannels;
        KernelSize = kernelSize;
        Stride = stride;
        Padding = padding;
        rng ??= Rng.Global;
        Weight = new Parameter("weight", new Tensor(outChannels, inChannels, kernelSize, kernelSize), ParameterRole.Weight);
        Init.KaimingUniform(Weight.Value, rng, a: Math.Sqrt(5));
        if (bias)
        {
            Bias = new Parameter("bias", new Tensor(outChannels), ParameterRole.Bias);
            double bound = 1 / Math.Sqrt(Init.Fans(Weight.Value).FanIn);
            Init.Uniform(Bias.Value, rng, -bound, bound);
        }
        // Built once: error paths name the layer, and the hot path must not format strings.
        _name = $"Conv2d({inChannels}, {outChannels}, kernel_size={kernelSize}, stride={stride}, padding={padding}, bias={bias})";
    }

    /// <summary>C_in, the input channels.</summary>
    public int InChannels { get; }

    /// <summary>C_out, the output channels.</summary>
    public int OutChannels { get; }

    /// <summary>k, the side of the square kernel.</summary>
    public int KernelSize { get; }

    /// <summary>The step between windows, on both axes.</summary>
    public int Stride { get; }

    /// <summary>Zeros added on every side of the input.</summary>
    public int Padding { get; }

    /// <summary>The kernels, shape [C_out, C_in, k, k].</summary>
    public Parameter Weight { get; }

    /// <summary>The bias, shape [C_out]; null without bias.</summary>
    public Parameter? Bias { get; }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        if (x.Rank != 4)
            throw new ArgumentException($"{_name}: expected 4D input [N, {InChannels}, H, W], got {x.Rank}D input of shape {x.ShapeString}.");
        ShapeCheck.Dim(x, 1, InChannels, _name, "channels C");
        int h = x.Dim(2), w = x.Dim(3);
        int outH = Window2d.OutputSize(h, KernelSize, Stride, Padding);
        int outW = Window2d.OutputSize(w, KernelSize, Stride, Padding);
        if (h < 1 || w < 1 || outH < 1 || outW < 1)
            throw new ArgumentException(
                $"{_name}: input of shape {x.ShapeString} is smaller than the {KernelSize}×{KernelSize} kernel even with padding {Padding}.");
        _window = new Window2d(h, w, KernelSize, KernelSize, Stride, Padding);
        _input = x;
        int n = x.Dim(0);
        var y = Tensor.Ensure(ref _output, n, OutChannels, outH, outW);
        Conv.Forward<float>(y.Span, x.Span, Weight.Value.Span, Bias is null ? default : Bias.Value.Span, Scratch(n),
            n, InChannels, OutChannels, _window);
        return y;
    }

    /// <inheritdoc/>
    protected override Tensor BackwardCore(Tensor dy)
    {
        ShapeCheck.Gradient(dy, _output, _name);
        var x = _input!;
        var dx = NeedsInputGradient ? Tensor.Ensure(ref _inputGrad, x.Shape) : NoGradient;
        Conv.Backward<float>(dx.Span, Weight.Grad.Span, Bias is null ? default : Bias.Grad.Span, dy.Span, x.Span, Weight.Value.Span,
            Scratch(x.Dim(0)), x.Dim(0), InChannels, OutChannels, _window);
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
    public override string ToString() => _name;

    // Columns and partial weight gradients per image group (see Conv.ScratchSize), kept across steps.
    private Span<float> Scratch(int n) => Tensor.Ensure(ref _columns, Conv.ScratchSize(n, InChannels, OutChannels, _window)).Span;
}

using NormLab.Kernels;

namespace NormLab;

/// <summary>
/// The shared configuration of 2-D pooling over [N, C, H, W]: a square window, a stride (the window by default) and padding
/// of at most half the window, as PyTorch requires. Output [N, C, OH, OW], OH = (H + 2·padding − k)/stride + 1 rounded down.
/// </summary>
public abstract class Pool2d : Module
{
    private readonly string _name;

    /// <summary>Validates and stores the configuration.</summary>
    /// <param name="kernelSize">k, the side of the square window.</param>
    /// <param name="stride">The step between windows; <paramref name="kernelSize"/> when null (PyTorch's default).</param>
    /// <param name="padding">Added on every side of the input, at most k/2.</param>
    private protected Pool2d(int kernelSize, int? stride, int padding)
    {
        string kind = GetType().Name;
        if (kernelSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(kernelSize), $"{kind}: kernel size must be positive, got {kernelSize}.");
        int s = stride ?? kernelSize;
        if (s <= 0)
            throw new ArgumentOutOfRangeException(nameof(stride), $"{kind}: stride must be positive, got {s}.");
        if (padding < 0 || padding > kernelSize / 2)
            throw new ArgumentOutOfRangeException(nameof(padding),
                $"{kind}: padding should be at most half the kernel size (0 ≤ padding ≤ {kernelSize / 2}), got padding={padding}, kernel_size={kernelSize}.");
        KernelSize = kernelSize;
        Stride = s;
        Padding = padding;
        // Built once: error paths name the layer, and the hot path must not format strings.
        _name = $"{kind}(kernel_size={kernelSize}, stride={s}, padding={padding})";
    }

    /// <summary>k, the side of the square window.</summary>
    public int KernelSize { get; }

    /// <summary>The step between windows, on both axes.</summary>
    public int Stride { get; }

    /// <summary>Added on every side of the input (−∞ for max pooling, zeros for average pooling).</summary>
    public int Padding { get; }

    /// <summary>Checks that <paramref name="x"/> is [N, C, H, W] with room for one window, and returns the window geometry.</summary>
    private protected Window2d Window(Tensor x)
    {
        ShapeCheck.Rank(x, 4, _name, "[N, C, H, W]");
        int h = x.Dim(2), w = x.Dim(3);
        if (h < 1 || w < 1 || Window2d.OutputSize(h, KernelSize, Stride, Padding) < 1 || Window2d.OutputSize(w, KernelSize, Stride, Padding) < 1)
            throw new ArgumentException(
                $"{_name}: input of shape {x.ShapeString} is smaller than the {KernelSize}×{KernelSize} window even with padding {Padding}.");
        return new Window2d(h, w, KernelSize, KernelSize, Stride, Padding);
    }

    /// <summary>The layer's name in error messages.</summary>
    private protected string Name => _name;

    /// <inheritdoc/>
    public override string ToString() => _name;
}

/// <summary>
/// Max pooling: each output is the largest input in its window; padding counts as −∞. Backward routes each gradient to the
/// input that was the max (the first one on ties, as in PyTorch).
/// </summary>
/// <param name="kernelSize">k, the side of the square window.</param>
/// <param name="stride">The step between windows; <paramref name="kernelSize"/> when null.</param>
/// <param name="padding">−∞ added on every side, at most k/2.</param>
public sealed class MaxPool2d(int kernelSize, int? stride = null, int padding = 0) : Pool2d(kernelSize, stride, padding)
{
    private Tensor? _input, _output, _inputGrad;
    private int[] _argmax = [];
    private Window2d _window;

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        _window = Window(x);
        _input = x;
        var y = Tensor.Ensure(ref _output, x.Dim(0), x.Dim(1), _window.OutHeight, _window.OutWidth);
        if (_argmax.Length != y.Length)
            _argmax = new int[y.Length];
        Pooling.MaxForward<float>(y.Span, _argmax, x.Span, x.Dim(0) * x.Dim(1), _window);
        return y;
    }

    /// <inheritdoc/>
    protected override Tensor BackwardCore(Tensor dy)
    {
        ShapeCheck.Gradient(dy, _output, Name);
        var dx = Tensor.Ensure(ref _inputGrad, _input!.Shape);
        Pooling.MaxBackward<float>(dx.Span, dy.Span, _argmax, dx.Dim(0) * dx.Dim(1), _window);
        return dx;
    }

    /// <summary>Whether a layer before this one can pool <paramref name="x"/> in its own pass (<see cref="BatchNorm.ForwardReluPool"/>):
    /// 2×2 windows with stride 2 that tile planes at least 8 wide, no hook.</summary>
    internal bool PoolsInOnePass(Tensor x) =>
        KernelSize == 2 && Stride == 2 && Padding == 0 && ForwardHook is null && x.Rank == 4 && BatchNormPool.Applies(x.Dim(2), x.Dim(3));

    /// <summary>The argmax of the last forward, for a layer that routes <paramref name="dy"/> (checked against the output's
    /// shape) through it in its own pass instead of this module's backward.</summary>
    internal int[] ArgmaxFor(Tensor dy)
    {
        ShapeCheck.Gradient(dy, _output, Name);
        return _argmax;
    }

    /// <summary>The output and argmax this layer's forward would fill for input <paramref name="x"/>, for a layer that pools in
    /// its own pass; the backward then runs as after this module's own forward (it reads only x's shape).</summary>
    internal (Tensor Y, int[] Argmax) OutputsFor(Tensor x)
    {
        _window = Window(x);
        _input = x;
        var y = Tensor.Ensure(ref _output, x.Dim(0), x.Dim(1), _window.OutHeight, _window.OutWidth);
        if (_argmax.Length != y.Length)
            _argmax = new int[y.Length];
        return (y, _argmax);
    }
}

/// <summary>
/// Average pooling: each output is the mean of its k×k window, padding counted as zeros and always divided by k·k
/// (PyTorch's default <c>count_include_pad = True</c>).
/// </summary>
/// <param name="kernelSize">k, the side of the square window.</param>
/// <param name="stride">The step between windows; <paramref name="kernelSize"/> when null.</param>
/// <param name="padding">Zeros added on every side, at most k/2.</param>
public sealed class AvgPool2d(int kernelSize, int? stride = null, int padding = 0) : Pool2d(kernelSize, stride, padding)
{
    private Tensor? _input, _output, _inputGrad;
    private Window2d _window;

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        _window = Window(x);
        _input = x;
        var y = Tensor.Ensure(ref _output, x.Dim(0), x.Dim(1), _window.OutHeight, _window.OutWidth);
        Pooling.AvgForward<float>(y.Span, x.Span, x.Dim(0) * x.Dim(1), _window);
        return y;
    }

    /// <inheritdoc/>
    protected override Tensor BackwardCore(Tensor dy)
    {
        ShapeCheck.Gradient(dy, _output, Name);
        var dx = Tensor.Ensure(ref _inputGrad, _input!.Shape);
        Pooling.AvgBackward<float>(dx.Span, dy.Span, dx.Dim(0) * dx.Dim(1), _window);
        return dx;
    }
}

/// <summary>
/// Global average pooling: [N, C, H, W] → [N, C], the mean of each channel's plane (PyTorch's
/// <c>AdaptiveAvgPool2d(1)</c> followed by a flatten).
/// </summary>
public sealed class GlobalAvgPool2d : Module
{
    private Tensor? _input, _output, _inputGrad;

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        ShapeCheck.Rank(x, 4, "GlobalAvgPool2d", "[N, C, H, W]");
        int size = x.Dim(2) * x.Dim(3);
        if (size < 1)
            throw new ArgumentException($"GlobalAvgPool2d: input of shape {x.ShapeString} has empty planes; expected [N, C, H, W] with H, W ≥ 1.");
        _input = x;
        var y = Tensor.Ensure(ref _output, x.Dim(0), x.Dim(1));
        Pooling.GlobalAvgForward<float>(y.Span, x.Span, y.Length, size);
        return y;
    }

    /// <inheritdoc/>
    protected override Tensor BackwardCore(Tensor dy)
    {
        ShapeCheck.Gradient(dy, _output, "GlobalAvgPool2d");
        var x = _input!;
        var dx = Tensor.Ensure(ref _inputGrad, x.Shape);
        Pooling.GlobalAvgBackward<float>(dx.Span, dy.Span, dy.Length, x.Dim(2) * x.Dim(3));
        return dx;
    }

    /// <inheritdoc/>
    public override string ToString() => "GlobalAvgPool2d()";
}

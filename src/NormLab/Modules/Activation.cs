using NormLab.Kernels;

namespace NormLab;

/// <summary>An element-wise activation; keeps its output, from which its backward is computed.</summary>
public abstract class Activation : Module
{
    private Tensor? _output, _inputGrad;

    /// <summary>y = f(x).</summary>
    protected abstract void Apply(Span<float> y, ReadOnlySpan<float> x);

    /// <summary>dx = dy·f'(x), expressed through y.</summary>
    protected abstract void Derive(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> y);

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        var y = Tensor.Ensure(ref _output, x.Shape);
        Apply(y.Span, x.Span);
        return y;
    }

    /// <summary>The output tensor for input <paramref name="x"/>, for a layer that computes this activation in its own pass
    /// (<see cref="BatchNorm.ForwardRelu"/>); the backward then reads it as after this module's own forward.</summary>
    internal Tensor OutputFor(Tensor x) => Tensor.Ensure(ref _output, x.Shape);

    /// <inheritdoc/>
    protected override Tensor BackwardCore(Tensor dy)
    {
        ShapeCheck.Gradient(dy, _output, this);
        var dx = Tensor.Ensure(ref _inputGrad, dy.Shape);
        Derive(dx.Span, dy.Span, _output!.Span);
        return dx;
    }
}

/// <summary>max(x, 0).</summary>
public sealed class ReLU : Activation
{
    /// <inheritdoc/>
    protected override void Apply(Span<float> y, ReadOnlySpan<float> x) => Activations.Relu(y, x);

    /// <inheritdoc/>
    protected override void Derive(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> y) => Activations.ReluBackward(dx, dy, y);
}

/// <summary>1/(1 + e^−x).</summary>
public sealed class Sigmoid : Activation
{
    /// <inheritdoc/>
    protected override void Apply(Span<float> y, ReadOnlySpan<float> x) => Activations.Sigmoid(y, x);

    /// <inheritdoc/>
    protected override void Derive(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> y) => Activations.SigmoidBackward(dx, dy, y);
}

/// <summary>tanh(x).</summary>
public sealed class Tanh : Activation
{
    /// <inheritdoc/>
    protected override void Apply(Span<float> y, ReadOnlySpan<float> x) => Activations.Tanh(y, x);

    /// <inheritdoc/>
    protected override void Derive(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> y) => Activations.TanhBackward(dx, dy, y);
}

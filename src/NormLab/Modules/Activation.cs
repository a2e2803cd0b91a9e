using NormLab.Kernels;

namespace NormLab;

/// <summary>An element-wise activation; keeps its output, from which its backward is computed.</summary>
public abstract class Activation : Module
{
    private Tensor? _output, _inputGrad;
    private bool _notKept; // the last forward ran fused into the layers around it and did not write the output

    /// <summary>y = f(x).</summary>
    protected abstract void Apply(Span<float> y, ReadOnlySpan<float> x);

    /// <summary>dx = dy·f'(x), expressed through y.</summary>
    protected abstract void Derive(Span<float> dx, ReadOnlySpan<float> dy, ReadOnlySpan<float> y);

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        var y = Tensor.Ensure(ref _output, x.Shape);
        _notKept = false;
        Apply(y.Span, x.Span);
        return y;
    }

    /// <summary>The output tensor for input <paramref name="x"/>, for a layer that computes this activation in its own pass
    /// (<see cref="BatchNorm.ForwardRelu"/>); the backward then reads it as after this module's own forward.</summary>
    internal Tensor OutputFor(Tensor x)
    {
        _notKept = false;
        return Tensor.Ensure(ref _output, x.Shape);
    }

    /// <summary>The output tensor for input <paramref name="x"/>, left unwritten: the forward ran fused with the layers on both
    /// sides (<see cref="BatchNorm.ForwardReluPool"/>), which never materialize it. This module's backward then refuses to run
    /// alone; the fused layers' backward does not need it.</summary>
    internal Tensor OutputNotKeptFor(Tensor x)
    {
        _notKept = true;
        return Tensor.Ensure(ref _output, x.Shape);
    }

    /// <inheritdoc/>
    protected override Tensor BackwardCore(Tensor dy)
    {
        if (_notKept)
            throw new InvalidOperationException(
                $"{this}: the last forward ran fused with the BatchNorm before and the MaxPool2d after this layer and kept no output; " +
                "run the backward through their Sequential, or set Sequential.FuseBatchNormRelu = false.");
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

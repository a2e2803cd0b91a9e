using System.Numerics.Tensors;

namespace NormLab;

/// <summary>
/// y = body(x) + shortcut(x), with the identity as the default shortcut (a ResNet block; use a 1×1 convolution as the
/// shortcut where the body changes the shape).
/// </summary>
public sealed class Residual : Module
{
    private Tensor? _output, _inputGrad;

    /// <summary>Creates the block.</summary>
    public Residual(Module body, Module? shortcut = null)
    {
        Body = body;
        Shortcut = shortcut;
    }

    /// <summary>The residual branch f.</summary>
    public Module Body { get; }

    /// <summary>The shortcut branch; null for the identity.</summary>
    public Module? Shortcut { get; }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        var f = Body.Forward(x);
        var s = Shortcut is null ? x : Shortcut.Forward(x);
        if (!f.HasShape(s.Shape))
            throw new ArgumentException($"Residual: the body's output {f.ShapeString} and the shortcut's {s.ShapeString} differ; give a shortcut that matches.");
        var y = Tensor.Ensure(ref _output, f.Shape);
        TensorPrimitives.Add(f.Span, s.Span, y.Span);
        return y;
    }

    /// <inheritdoc/>
    protected override Tensor BackwardCore(Tensor dy)
    {
        ShapeCheck.Gradient(dy, _output, "Residual");
        var dBody = Body.Backward(dy);
        var dShort = Shortcut is null ? dy : Shortcut.Backward(dy);
        var dx = Tensor.Ensure(ref _inputGrad, dBody.Shape);
        TensorPrimitives.Add(dBody.Span, dShort.Span, dx.Span);
        return dx;
    }

    /// <inheritdoc/>
    public override IEnumerable<(string Name, Module Child)> Children()
    {
        yield return ("body", Body);
        if (Shortcut is not null)
            yield return ("shortcut", Shortcut);
    }
}

namespace NormLab;

/// <summary>
/// Inverted dropout: in training each value is zeroed with probability p and the rest are scaled by 1/(1 − p);
/// in eval mode the layer is the identity. The mask comes from a seeded <see cref="Rng"/>.
/// </summary>
public sealed class Dropout : Module
{
    private readonly Rng _rng;
    private Tensor? _mask, _output, _inputGrad;
    private bool _applied;

    /// <summary>Creates the layer.</summary>
    /// <param name="p">Probability of zeroing a value, in [0, 1).</param>
    /// <param name="rng">Generator of the masks; a fork of <see cref="Rng.Global"/> when null.</param>
    public Dropout(double p = 0.5, Rng? rng = null)
    {
        if (!(p >= 0 && p < 1))
            throw new ArgumentOutOfRangeException(nameof(p), $"Dropout: p must be in [0, 1), got {p}.");
        P = p;
        _rng = rng ?? Rng.Global.Fork();
    }

    /// <summary>The drop probability.</summary>
    public double P { get; }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        var y = Tensor.Ensure(ref _output, x.Shape);
        _applied = Training && P > 0;
        if (!_applied)
        {
            x.Span.CopyTo(y.Span);
            return y;
        }
        var mask = Tensor.Ensure(ref _mask, x.Shape).Span;
        float keep = (float)(1 / (1 - P));
        var xs = x.Span;
        var ys = y.Span;
        for (int i = 0; i < xs.Length; i++)
        {
            mask[i] = _rng.NextDouble() < P ? 0f : keep;
            ys[i] = xs[i] * mask[i];
        }
        return y;
    }

    /// <inheritdoc/>
    protected override Tensor BackwardCore(Tensor dy)
    {
        ShapeCheck.Gradient(dy, _output, "Dropout");
        var dx = Tensor.Ensure(ref _inputGrad, dy.Shape);
        if (_applied)
            System.Numerics.Tensors.TensorPrimitives.Multiply(dy.Span, _mask!.Span, dx.Span);
        else
            dy.Span.CopyTo(dx.Span);
        return dx;
    }

    /// <inheritdoc/>
    public override string ToString() => $"Dropout(p={P})";
}

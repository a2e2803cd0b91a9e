using System.Numerics.Tensors;
using NormLab.Kernels;

namespace NormLab;

/// <summary>
/// Santurkar et al.'s noise (2018, §2.1) on its own: i.i.d. noise whose distribution is re-sampled at every training step,
/// per unit j: μ_j ~ U(−<see cref="A"/>, a), s_j ~ U(1, <see cref="B"/>) (see <see cref="NoiseKind"/>). The lab's
/// specification (reference §2.8), as <see cref="NoisyBatchNorm"/> applies it after BatchNorm; on its own it gives the
/// paper's "standard network + the same noise". Training only (identity in eval mode); seeded by <see cref="Rng"/>.
/// Input [N, C] or [N, C, H, W].
/// </summary>
public sealed class StepNoise : Module
{
    private Tensor? _output, _scale;
    private float[] _mu = [], _sd = [];
    private bool _noisy;

    /// <summary>Noise with means from U(−<paramref name="a"/>, a) and scales from U(1, <paramref name="b"/>).</summary>
    public StepNoise(double a = 1, double b = 2, NoiseKind kind = NoiseKind.Additive, Rng? rng = null)
    {
        if (!(a >= 0) || !(b >= 1) || double.IsInfinity(a) || double.IsInfinity(b))
            throw new ArgumentOutOfRangeException(nameof(a), $"StepNoise: need a ≥ 0 and b ≥ 1 (finite), got a = {a}, b = {b}.");
        A = a;
        B = b;
        Kind = kind;
        Rng = rng ?? Rng.Global.Fork();
    }

    /// <summary>Range of the noise means, U(−a, a).</summary>
    public double A { get; }

    /// <summary>Upper end of the noise scales, U(1, b).</summary>
    public double B { get; }

    /// <summary>Additive or multiplicative.</summary>
    public NoiseKind Kind { get; }

    /// <summary>The generator the noise is drawn from (public so that a probe can save and restore its state).</summary>
    public Rng Rng { get; }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor y)
    {
        if (y.Rank < 2)
            throw new ArgumentException($"{this}: expected input [N, C] or [N, C, H, W], got shape {y.ShapeString}.");
        var output = Tensor.Ensure(ref _output, y.Shape);
        _noisy = Training;
        if (!Training)
        {
            output.CopyFrom(y);
            return output;
        }
        int n = y.Dim(0), c = y.Dim(1), s = y.Length / Math.Max(1, n * c);
        var ys = y.Span;
        var os = output.Span;
        if (Kind == NoiseKind.Additive)
        {
            // y' = y + μ_j + s_j·z with z ~ N(0, 1): the unit's (μ_j, s_j) first, then every z in one vectorized fill.
            NormParameters.Grow(ref _mu, c);
            NormParameters.Grow(ref _sd, c);
            for (int ch = 0; ch < c; ch++)
            {
                _mu[ch] = (float)(A * (2 * Rng.NextDouble() - 1));
                _sd[ch] = (float)(1 + (B - 1) * Rng.NextDouble());
            }
            NoiseFill.Gaussian(Rng, os);
            for (int i = 0; i < n; i++)
            {
                if (s == 1)
                {
                    var row = os.Slice(i * c, c);
                    TensorPrimitives.MultiplyAdd(row, _sd.AsSpan(0, c), ys.Slice(i * c, c), row);
                    TensorPrimitives.Add(row, _mu.AsSpan(0, c), row);
                    continue;
                }
                for (int ch = 0; ch < c; ch++)
                {
                    var plane = os.Slice((i * c + ch) * s, s);
                    TensorPrimitives.MultiplyAdd(plane, _sd[ch], ys.Slice((i * c + ch) * s, s), plane);
                    TensorPrimitives.Add(plane, _mu[ch], plane);
                }
            }
            return output;
        }
        // y' = s·y + μ with s ~ U(1, b) and μ ~ U(−a, a) per value.
        var scale = Tensor.Ensure(ref _scale, y.Shape).Span;
        NoiseFill.Uniform(Rng, scale);
        TensorPrimitives.Multiply(scale, (float)(B - 1), scale);
        TensorPrimitives.Add(scale, 1f, scale);
        NoiseFill.Uniform(Rng, os);
        TensorPrimitives.Multiply(os, (float)(2 * A), os);
        TensorPrimitives.Subtract(os, (float)A, os);
        TensorPrimitives.MultiplyAdd(scale, ys, os, os);
        return output;
    }

    /// <inheritdoc/>
    protected override Tensor BackwardCore(Tensor dy)
    {
        ShapeCheck.Gradient(dy, _output, "StepNoise");
        if (!_noisy || Kind == NoiseKind.Additive)
            return dy;
        var scaled = Tensor.Ensure(ref _scale, dy.Shape);
        var s = scaled.Span;
        var g = dy.Span;
        TensorPrimitives.Multiply(s, g, s); // the scales are not needed after this step
        return scaled;
    }

    /// <inheritdoc/>
    public override string ToString() => $"StepNoise(a={A}, b={B}, {Kind})";
}

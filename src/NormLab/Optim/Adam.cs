using System.Numerics;

namespace NormLab;

/// <summary>
/// Adam with PyTorch's semantics (<c>torch.optim.Adam</c>; with <c>decoupled</c> = true, <c>torch.optim.AdamW</c>):
/// <code>
/// g = ∇ + λ·w                      (Adam's L2 form)      or   w = w·(1 − lr·λ)   (AdamW, decoupled)
/// m = β₁·m + (1 − β₁)·g            v = β₂·v + (1 − β₂)·g²
/// w = w − lr/(1 − β₁ᵗ) · m / (√v/√(1 − β₂ᵗ) + ε)
/// </code>
/// </summary>
public class Adam : Optimizer
{
    private readonly float[][] _m, _v;
    private readonly bool _decoupled;

    /// <summary>Creates Adam (L2 weight decay added to the gradient).</summary>
    public Adam(IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        double weightDecay = 0, DecayPolicy decay = DecayPolicy.All)
        : this(parameters, lr, beta1, beta2, eps, weightDecay, decay, decoupled: false)
    {
    }

    /// <summary>Creates Adam or AdamW.</summary>
    protected Adam(IEnumerable<Parameter> parameters, double lr, double beta1, double beta2, double eps, double weightDecay,
        DecayPolicy decay, bool decoupled)
        : base(parameters, lr, weightDecay, decay)
    {
        if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
            throw new ArgumentOutOfRangeException(nameof(beta1), $"{GetType().Name}: betas must be in [0, 1), got ({beta1}, {beta2}).");
        if (!(eps >= 0))
            throw new ArgumentOutOfRangeException(nameof(eps), $"{GetType().Name}: eps must be ≥ 0, got {eps}.");
        Beta1 = beta1;
        Beta2 = beta2;
        Eps = eps;
        _decoupled = decoupled;
        _m = Parameters.Select(p => new float[p.Value.Length]).ToArray();
        _v = Parameters.Select(p => new float[p.Value.Length]).ToArray();
    }

    /// <summary>β₁.</summary>
    public double Beta1 { get; }

    /// <summary>β₂.</summary>
    public double Beta2 { get; }

    /// <summary>ε.</summary>
    public double Eps { get; }

    /// <inheritdoc/>
    protected override void Update(int index, Parameter p, float weightDecay, int from, int to)
    {
        var w = p.Value.Span[from..to];
        var grad = p.Grad.Span[from..to];
        var m = _m[index].AsSpan(from, to - from);
        var v = _v[index].AsSpan(from, to - from);
        float b1 = (float)Beta1, b2 = (float)Beta2, eps = (float)Eps, lr = (float)LearningRate;
        double t = StepCount;
        float stepSize = (float)(LearningRate / (1 - Math.Pow(Beta1, t)));
        float sqrtBc2 = (float)Math.Sqrt(1 - Math.Pow(Beta2, t));
        float l2 = _decoupled ? 0f : weightDecay;
        float shrink = _decoupled ? 1f - lr * weightDecay : 1f;
        // The vector loop does per lane exactly what the scalar tail does (no fused multiply-add): same bits either way.
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            Vector<float> vl2 = new(l2), vshrink = new(shrink), vb1 = new(b1), vb2 = new(b2), vc1 = new(1 - b1), vc2 = new(1 - b2);
            Vector<float> vstep = new(stepSize), vbc2 = new(sqrtBc2), veps = new(eps);
            for (; i <= w.Length - Vector<float>.Count; i += Vector<float>.Count)
            {
                var wi = new Vector<float>(w.Slice(i));
                var g = new Vector<float>(grad.Slice(i)) + vl2 * wi;
                wi *= vshrink;
                var mi = vb1 * new Vector<float>(m.Slice(i)) + vc1 * g;
                var vi = vb2 * new Vector<float>(v.Slice(i)) + vc2 * g * g;
                mi.CopyTo(m.Slice(i));
                vi.CopyTo(v.Slice(i));
                (wi - vstep * mi / (Vector.SquareRoot(vi) / vbc2 + veps)).CopyTo(w.Slice(i));
            }
        }
        for (; i < w.Length; i++)
        {
            float g = grad[i] + l2 * w[i];
            w[i] *= shrink;
            m[i] = b1 * m[i] + (1 - b1) * g;
            v[i] = b2 * v[i] + (1 - b2) * g * g;
            w[i] -= stepSize * m[i] / (MathF.Sqrt(v[i]) / sqrtBc2 + eps);
        }
    }

    /// <inheritdoc/>
    protected override float[]? StateBuffer(string name)
    {
        var parts = name.Split('.');
        if (parts.Length != 2 || !int.TryParse(parts[0], out int i) || (uint)i >= (uint)_m.Length)
            return null;
        return parts[1] switch { "exp_avg" => _m[i], "exp_avg_sq" => _v[i], _ => null };
    }

    /// <inheritdoc/>
    public override IEnumerable<(string Name, float[] Values)> StateBuffers()
    {
        for (int i = 0; i < _m.Length; i++)
        {
            yield return ($"{i}.exp_avg", _m[i]);
            yield return ($"{i}.exp_avg_sq", _v[i]);
        }
    }
}

/// <summary>AdamW: Adam with decoupled weight decay (default λ = 0.01, as in PyTorch).</summary>
public sealed class AdamW(IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
    double weightDecay = 1e-2, DecayPolicy decay = DecayPolicy.All)
    : Adam(parameters, lr, beta1, beta2, eps, weightDecay, decay, decoupled: true);

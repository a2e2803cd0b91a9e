using System.Numerics;

namespace NormLab;

/// <summary>
/// Stochastic gradient descent with PyTorch's semantics (<c>torch.optim.SGD</c>):
/// <code>
/// g = ∇ + λ·w
/// b = g (first step), else b = μ·b + (1 − dampening)·g
/// g = g + μ·b (Nesterov) or g = b
/// w = w − lr·g
/// </code>
/// </summary>
public sealed class Sgd : Optimizer
{
    private readonly float[]?[] _momentumBuffers;
    private readonly bool[] _firstStep; // per parameter: whether this step creates its momentum buffer

    /// <summary>Creates the optimizer.</summary>
    public Sgd(IEnumerable<Parameter> parameters, double lr, double momentum = 0, double dampening = 0, double weightDecay = 0,
        bool nesterov = false, DecayPolicy decay = DecayPolicy.All)
        : base(parameters, lr, weightDecay, decay)
    {
        if (!(momentum >= 0))
            throw new ArgumentOutOfRangeException(nameof(momentum), $"Sgd: momentum must be ≥ 0, got {momentum}.");
        if (nesterov && (momentum <= 0 || dampening != 0))
            throw new ArgumentException("Sgd: Nesterov momentum requires a momentum > 0 and zero dampening.");
        Momentum = momentum;
        Dampening = dampening;
        Nesterov = nesterov;
        _momentumBuffers = new float[]?[Parameters.Count];
        _firstStep = new bool[Parameters.Count];
    }

    /// <summary>μ.</summary>
    public double Momentum { get; }

    /// <summary>Dampening of the momentum update.</summary>
    public double Dampening { get; }

    /// <summary>Whether Nesterov momentum is used.</summary>
    public bool Nesterov { get; }

    /// <summary>Creates the momentum buffer on a parameter's first step (PyTorch's buffer = g then), before the ranges of
    /// the update run, possibly on several threads.</summary>
    protected override void BeginUpdate(int index, Parameter p)
    {
        _firstStep[index] = Momentum != 0 && _momentumBuffers[index] is null;
        if (Momentum != 0)
            _momentumBuffers[index] ??= new float[p.Value.Length];
    }

    /// <inheritdoc/>
    protected override void Update(int index, Parameter p, float weightDecay, int from, int to)
    {
        var w = p.Value.Span[from..to];
        var grad = p.Grad.Span[from..to];
        float lr = (float)LearningRate, mu = (float)Momentum, damp = 1f - (float)Dampening;
        bool first = _firstStep[index], hasBuf = mu != 0;
        var buf = hasBuf ? _momentumBuffers[index].AsSpan(from, to - from) : default;
        // The vector loop does per lane exactly what the scalar tail does (no fused multiply-add), so every element gets
        // the same bits whichever loop it falls in.
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var vlr = new Vector<float>(lr);
            var vwd = new Vector<float>(weightDecay);
            var vmu = new Vector<float>(mu);
            var vdamp = new Vector<float>(damp);
            for (; i <= w.Length - Vector<float>.Count; i += Vector<float>.Count)
            {
                var wi = new Vector<float>(w.Slice(i));
                var g = new Vector<float>(grad.Slice(i)) + vwd * wi;
                if (hasBuf)
                {
                    var b = first ? g : vmu * new Vector<float>(buf.Slice(i)) + vdamp * g;
                    b.CopyTo(buf.Slice(i));
                    g = Nesterov ? g + vmu * b : b;
                }
                (wi - vlr * g).CopyTo(w.Slice(i));
            }
        }
        for (; i < w.Length; i++)
        {
            float g = grad[i] + weightDecay * w[i];
            if (hasBuf)
            {
                buf[i] = first ? g : mu * buf[i] + damp * g;
                g = Nesterov ? g + mu * buf[i] : buf[i];
            }
            w[i] -= lr * g;
        }
    }

    /// <inheritdoc/>
    protected override float[]? StateBuffer(string name)
    {
        var parts = name.Split('.');
        if (parts.Length != 2 || parts[1] != "momentum_buffer" || !int.TryParse(parts[0], out int i) || (uint)i >= (uint)_momentumBuffers.Length)
            return null;
        return _momentumBuffers[i] ??= new float[Parameters[i].Value.Length];
    }

    /// <inheritdoc/>
    public override IEnumerable<(string Name, float[] Values)> StateBuffers()
    {
        for (int i = 0; i < _momentumBuffers.Length; i++)
            if (_momentumBuffers[i] is { } b)
                yield return ($"{i}.momentum_buffer", b);
    }
}

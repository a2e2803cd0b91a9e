using NormLab.Threading;

namespace NormLab;

/// <summary>Which parameters weight decay applies to.</summary>
public enum DecayPolicy
{
    /// <summary>Every parameter (PyTorch's default).</summary>
    All,
    /// <summary>All but γ and β of normalization layers (a common practice: decaying γ fights the scale invariance BN provides).</summary>
    SkipNormalization,
    /// <summary>All but γ, β and the biases of linear and convolution layers.</summary>
    SkipNormalizationAndBias,
}

/// <summary>
/// Base of the optimizers: holds the parameters, the learning rate and the weight-decay policy. γ and β of normalization
/// layers are ordinary parameters here; <see cref="DecayPolicy"/> decides whether weight decay touches them.
/// </summary>
public abstract class Optimizer
{
    private readonly Parameter[] _parameters;
    private readonly bool[] _decay;

    /// <summary>Creates the optimizer over <paramref name="parameters"/>.</summary>
    protected Optimizer(IEnumerable<Parameter> parameters, double lr, double weightDecay, DecayPolicy decay)
    {
        _parameters = parameters.ToArray();
        if (_parameters.Length == 0)
            throw new ArgumentException($"{GetType().Name}: got an empty parameter list.");
        if (!(lr >= 0) || double.IsInfinity(lr))
            throw new ArgumentOutOfRangeException(nameof(lr), $"{GetType().Name}: learning rate must be finite and ≥ 0, got {lr}.");
        if (!(weightDecay >= 0) || double.IsInfinity(weightDecay))
            throw new ArgumentOutOfRangeException(nameof(weightDecay), $"{GetType().Name}: weight decay must be finite and ≥ 0, got {weightDecay}.");
        LearningRate = lr;
        WeightDecay = weightDecay;
        Decay = decay;
        _decay = _parameters.Select(p => decay switch
        {
            DecayPolicy.SkipNormalization => !p.IsNormalization,
            DecayPolicy.SkipNormalizationAndBias => !p.IsNormalization && p.Role != ParameterRole.Bias,
            _ => true,
        }).ToArray();
    }

    /// <summary>The learning rate; schedules may change it between steps.</summary>
    public double LearningRate { get; set; }

    /// <summary>The weight-decay coefficient.</summary>
    public double WeightDecay { get; }

    /// <summary>Which parameters weight decay applies to.</summary>
    public DecayPolicy Decay { get; }

    /// <summary>The parameters, in the order given.</summary>
    public IReadOnlyList<Parameter> Parameters => _parameters;

    /// <summary>Number of steps taken.</summary>
    public long StepCount { get; protected set; }

    /// <summary>Zeroes every parameter's gradient, lazily (<see cref="Parameter.ZeroGrad"/>): no pass over memory here,
    /// and the backward of a linear layer then writes its gradients instead of adding to them.</summary>
    public void ZeroGrad()
    {
        foreach (var p in _parameters)
            p.ZeroGrad();
    }

    /// <summary>Updates every parameter from its gradient.</summary>
    public unsafe void Step()
    {
        StepCount++;
        for (int i = 0; i < _parameters.Length; i++)
        {
            var p = _parameters[i];
            float weightDecay = _decay[i] ? (float)WeightDecay : 0f;
            _ = p.Grad; // a pending lazy zero is carried out here, on one thread, before the team reads the gradient
            BeginUpdate(i, p);
            if (p.Value.Length < ParallelLength)
            {
                Update(i, p, weightDecay, 0, p.Value.Length);
                continue;
            }
            var args = new Parts { Optimizer = this, Parameter = p, Index = i, WeightDecay = weightDecay };
            Team.For(Team.Size, ref args, &UpdateParts);
        }
    }

    /// <summary>Prepares the update of parameter <paramref name="index"/> (creates state it needs) on the calling thread,
    /// before <see cref="Update"/> runs over its ranges.</summary>
    protected virtual void BeginUpdate(int index, Parameter p)
    {
    }

    /// <summary>
    /// Updates elements [<paramref name="from"/>, <paramref name="to"/>) of parameter <paramref name="index"/> with the given
    /// effective weight decay. Every element's update must depend on that element alone (and on per-parameter scalars):
    /// large parameters are cut into ranges over the <see cref="Team"/>, and the cut must not change the bits.
    /// </summary>
    protected abstract void Update(int index, Parameter p, float weightDecay, int from, int to);

    // Parameters of this many values or more are updated by the team: the largest weight of a network (the
    // MLP's first layer, 78,400 values) otherwise costs a single core a pass over three arrays, much of it from the other
    // core's cache, where the backward's product left its half of the gradient.
    private const int ParallelLength = 1 << 15;

    private struct Parts
    {
        public Optimizer Optimizer;
        public Parameter Parameter;
        public int Index;
        public float WeightDecay;
    }

    // Part `part` of `parts` of a parameter's values, cut at multiples of 16 values (whole vectors, whole lines).
    private static (int From, int To) Range(int length, int part, int parts)
    {
        int units = (length + 15) / 16;
        int from = part == 0 ? 0 : Team.RangeEnd(part - 1, units, parts) * 16, to = Math.Min(length, Team.RangeEnd(part, units, parts) * 16);
        return (from, Math.Max(from, to));
    }

    private static void UpdateParts(ref Parts a, int first, int end)
    {
        int length = a.Parameter.Value.Length, parts = Team.Size;
        for (int part = first; part < end; part++)
        {
            var (from, to) = Range(length, part, parts);
            a.Optimizer.Update(a.Index, a.Parameter, a.WeightDecay, from, to);
        }
    }

    /// <summary>Per-parameter state buffers by name (momentum, moments), for checkpoints.</summary>
    public abstract IEnumerable<(string Name, float[] Values)> StateBuffers();

    /// <summary>Restores the step count and the buffers named as <see cref="StateBuffers"/> names them.</summary>
    /// <exception cref="ArgumentException">A buffer is missing, unknown, or of the wrong length.</exception>
    public void RestoreState(long stepCount, IReadOnlyDictionary<string, float[]> buffers)
    {
        StepCount = stepCount;
        foreach (var (name, values) in buffers)
        {
            var target = StateBuffer(name)
                ?? throw new ArgumentException($"{GetType().Name}: the checkpoint has an unknown state buffer '{name}'.");
            if (target.Length != values.Length)
                throw new ArgumentException($"{GetType().Name}: state buffer '{name}' has {values.Length} values, expected {target.Length}.");
            values.CopyTo(target, 0);
        }
    }

    /// <summary>The state buffer with a <see cref="StateBuffers"/> name, created if the optimizer creates it lazily; null if unknown.</summary>
    protected abstract float[]? StateBuffer(string name);
}

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

    /// <summary>Zeroes every parameter's gradient.</summary>
    public void ZeroGrad()
    {
        foreach (var p in _parameters)
            p.Grad.Zero();
    }

    /// <summary>Updates every parameter from its gradient.</summary>
    public void Step()
    {
        StepCount++;
        for (int i = 0; i < _parameters.Length; i++)
            Update(i, _parameters[i], _decay[i] ? (float)WeightDecay : 0f);
    }

    /// <summary>Updates parameter <paramref name="index"/> with the given effective weight decay.</summary>
    protected abstract void Update(int index, Parameter p, float weightDecay);

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

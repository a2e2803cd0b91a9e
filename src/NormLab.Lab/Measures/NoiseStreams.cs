namespace NormLab.Lab.Measures;

/// <summary>
/// The states of a model's noise generators (<see cref="StepNoise"/>, also inside <see cref="NoisyBatchNorm"/>): a probe
/// that runs a forward pass in training mode draws noise, and restoring the generators afterwards keeps the run's noise,
/// and so its training, exactly as it would have been without the probe.
/// </summary>
public sealed class NoiseStreams
{
    private readonly Rng[] _generators;
    private readonly ulong[][] _states;

    /// <summary>Finds <paramref name="model"/>'s noise generators (nothing is saved yet).</summary>
    public NoiseStreams(Module model)
    {
        _generators = model.Modules()
            .Select(m => m switch { StepNoise s => s.Rng, NoisyBatchNorm n => n.Noise.Rng, _ => null })
            .OfType<Rng>().ToArray();
        _states = new ulong[_generators.Length][];
    }

    /// <summary>How many generators the model has.</summary>
    public int Count => _generators.Length;

    /// <summary>Saves the generators' states.</summary>
    public NoiseStreams Save()
    {
        for (int i = 0; i < _generators.Length; i++)
            _states[i] = _generators[i].GetState();
        return this;
    }

    /// <summary>Puts the saved states back.</summary>
    public void Restore()
    {
        for (int i = 0; i < _generators.Length; i++)
            _generators[i].SetState(_states[i]);
    }
}

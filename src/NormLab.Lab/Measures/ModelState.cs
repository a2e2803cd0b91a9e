namespace NormLab.Lab.Measures;

/// <summary>
/// A copy of every parameter and buffer (running statistics, counters) of a model in preallocated arrays: the probes
/// move the weights, measure, and put everything back, leaving training exactly as it would have been.
/// </summary>
public sealed class ModelState
{
    private readonly Tensor[] _tensors;
    private readonly float[][] _copies;

    /// <summary>Allocates the copies for <paramref name="model"/> (nothing is copied yet).</summary>
    public ModelState(Module model)
    {
        _tensors = model.Parameters().Select(p => p.Value).Concat(model.NamedBuffers().Select(b => b.Value)).ToArray();
        _copies = _tensors.Select(t => new float[t.Length]).ToArray();
    }

    /// <summary>Copies the model's current values in.</summary>
    public ModelState Save()
    {
        for (int i = 0; i < _tensors.Length; i++)
            _tensors[i].Span.CopyTo(_copies[i]);
        return this;
    }

    /// <summary>Copies the saved values back into the model.</summary>
    public void Restore()
    {
        for (int i = 0; i < _tensors.Length; i++)
            _copies[i].CopyTo(_tensors[i].Span);
    }
}

namespace NormLab.Lab.Measures;

/// <summary>
/// A model's parameters as one flat vector, in <see cref="Module.Parameters"/> order (a Sequential's forward order): read
/// and write the values, read the gradients, and find where each parameter sits.
/// </summary>
public sealed class ParameterVector
{
    private readonly Parameter[] _parameters;
    private readonly int[] _offsets;

    /// <summary>The vector of <paramref name="model"/>'s parameters.</summary>
    public ParameterVector(Module model)
    {
        _parameters = model.Parameters().ToArray();
        _offsets = new int[_parameters.Length + 1];
        for (int i = 0; i < _parameters.Length; i++)
            _offsets[i + 1] = _offsets[i] + _parameters[i].Value.Length;
    }

    /// <summary>The number of scalars.</summary>
    public int Length => _offsets[^1];

    /// <summary>The parameters, in vector order.</summary>
    public IReadOnlyList<Parameter> Parameters => _parameters;

    /// <summary>Where <paramref name="p"/> sits in the vector.</summary>
    public Range RangeOf(Parameter p)
    {
        int i = Array.IndexOf(_parameters, p);
        if (i < 0)
            throw new ArgumentException($"ParameterVector: {p} is not a parameter of this model.");
        return _offsets[i].._offsets[i + 1];
    }

    /// <summary>
    /// The ranges of the weight matrices and kernels (<see cref="ParameterRole.Weight"/>), layer by layer in forward order:
    /// Santurkar's W_1 … W_k. Biases and normalization parameters sit between them, each after its layer's weight.
    /// </summary>
    public Range[] WeightRanges() => _parameters.Where(p => p.Role == ParameterRole.Weight).Select(RangeOf).ToArray();

    /// <summary>Copies the values into <paramref name="destination"/>.</summary>
    public void Read(Span<float> destination)
    {
        for (int i = 0; i < _parameters.Length; i++)
            _parameters[i].Value.Span.CopyTo(destination[_offsets[i].._offsets[i + 1]]);
    }

    /// <summary>A new array holding the values.</summary>
    public float[] Read()
    {
        var w = new float[Length];
        Read(w);
        return w;
    }

    /// <summary>Sets the values from <paramref name="source"/>.</summary>
    public void Write(ReadOnlySpan<float> source)
    {
        for (int i = 0; i < _parameters.Length; i++)
            source[_offsets[i].._offsets[i + 1]].CopyTo(_parameters[i].Value.Span);
    }

    /// <summary>Copies the gradients into <paramref name="destination"/>.</summary>
    public void ReadGrad(Span<float> destination)
    {
        for (int i = 0; i < _parameters.Length; i++)
            _parameters[i].Grad.Span.CopyTo(destination[_offsets[i].._offsets[i + 1]]);
    }

    /// <summary>Zeroes the gradients.</summary>
    public void ZeroGrad()
    {
        foreach (var p in _parameters)
            p.Grad.Zero();
    }
}

namespace NormLab;

/// <summary>What a parameter is for, so that optimizers can treat kinds differently (e.g. no weight decay on γ and β).</summary>
public enum ParameterRole
{
    /// <summary>A weight matrix or convolution kernel.</summary>
    Weight,
    /// <summary>An additive bias of a linear or convolution layer.</summary>
    Bias,
    /// <summary>γ, the scale of a normalization layer.</summary>
    NormScale,
    /// <summary>β, the shift of a normalization layer.</summary>
    NormShift,
}

/// <summary>A learnable tensor and its gradient. Gradients accumulate (<c>+=</c>) in Backward; the training loop zeroes them.</summary>
public sealed class Parameter
{
    /// <summary>Creates a parameter with a zeroed gradient of the same shape.</summary>
    public Parameter(string name, Tensor value, ParameterRole role)
    {
        Name = name;
        Value = value;
        _grad = new Tensor(value.Shape.ToArray());
        Role = role;
    }

    /// <summary>The local name (PyTorch's: <c>weight</c>, <c>bias</c>).</summary>
    public string Name { get; }

    /// <summary>The value.</summary>
    public Tensor Value { get; }

    /// <summary>
    /// The accumulated gradient of the loss with respect to <see cref="Value"/>. After <see cref="ZeroGrad"/> it reads as
    /// zeros; read it through this property then, not through a reference kept from before (as with PyTorch's
    /// <c>zero_grad(set_to_none=True)</c>, which replaces the tensor).
    /// </summary>
    public Tensor Grad
    {
        get
        {
            if (_zeroPending)
            {
                _grad.Zero();
                _zeroPending = false;
            }
            return _grad;
        }
    }

    private readonly Tensor _grad;

    // Set by ZeroGrad: the memory still holds the old gradient, and the first reader clears it, or the first backward
    // that writes it whole overwrites it (GradToWrite).
    private bool _zeroPending;

    /// <summary>
    /// Zeroes <see cref="Grad"/> without a pass over it now: the next backward that writes the whole gradient (a linear
    /// layer's) overwrites it instead of adding to it, which saves the clearing pass and the product's read of the old
    /// values; any other reader finds it cleared first.
    /// </summary>
    public void ZeroGrad() => _zeroPending = true;

    /// <summary>The gradient for a backward that writes every value of it: with <paramref name="overwrite"/>, the values
    /// are stale (a <see cref="ZeroGrad"/> is pending) and must be overwritten, not added to.</summary>
    internal Tensor GradToWrite(out bool overwrite)
    {
        overwrite = _zeroPending;
        _zeroPending = false;
        return _grad;
    }

    /// <summary>What the parameter is for.</summary>
    public ParameterRole Role { get; }

    /// <summary>True for γ and β of normalization layers.</summary>
    public bool IsNormalization => Role is ParameterRole.NormScale or ParameterRole.NormShift;

    /// <inheritdoc/>
    public override string ToString() => $"{Name} {Value.ShapeString}";
}

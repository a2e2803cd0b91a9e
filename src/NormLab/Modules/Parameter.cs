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
        Grad = new Tensor(value.Shape.ToArray());
        Role = role;
    }

    /// <summary>The local name (PyTorch's: <c>weight</c>, <c>bias</c>).</summary>
    public string Name { get; }

    /// <summary>The value.</summary>
    public Tensor Value { get; }

    /// <summary>The accumulated gradient of the loss with respect to <see cref="Value"/>.</summary>
    public Tensor Grad { get; }

    /// <summary>What the parameter is for.</summary>
    public ParameterRole Role { get; }

    /// <summary>True for γ and β of normalization layers.</summary>
    public bool IsNormalization => Role is ParameterRole.NormScale or ParameterRole.NormShift;

    /// <inheritdoc/>
    public override string ToString() => $"{Name} {Value.ShapeString}";
}

namespace NormLab;

/// <summary>Mean squared error over all elements (PyTorch's <c>MSELoss</c>, mean reduction).</summary>
public sealed class MeanSquaredError
{
    private Tensor? _grad;

    /// <summary>Mean of (prediction − target)²; the shapes must match.</summary>
    public float Forward(Tensor prediction, Tensor target)
    {
        ShapeCheck.Same(prediction, target, "MeanSquaredError");
        var g = Tensor.Ensure(ref _grad, prediction.Shape);
        return (float)Kernels.Loss.MeanSquaredError<float>(g.Span, prediction.Span, target.Span);
    }

    /// <summary>dL/dprediction of the last <see cref="Forward"/>.</summary>
    public Tensor Backward() => _grad ?? throw new InvalidOperationException("MeanSquaredError: Backward called before Forward.");
}

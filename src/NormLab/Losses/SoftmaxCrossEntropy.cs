namespace NormLab;

/// <summary>
/// Softmax cross-entropy with mean reduction over the batch (PyTorch's <c>CrossEntropyLoss</c> on logits).
/// <see cref="Forward"/> returns the loss and computes the gradient, which <see cref="Backward"/> returns.
/// </summary>
public sealed class SoftmaxCrossEntropy
{
    private Tensor? _grad;
    private int[] _predictions = [];

    /// <summary>Mean loss of <paramref name="logits"/> [N, K] against class indices <paramref name="targets"/> (length N, each in [0, K)).</summary>
    public float Forward(Tensor logits, ReadOnlySpan<int> targets)
    {
        ShapeCheck.Rank(logits, 2, "SoftmaxCrossEntropy", "logits [N, K]");
        int n = logits.Dim(0), k = logits.Dim(1);
        if (targets.Length != n)
            throw new ArgumentException($"SoftmaxCrossEntropy: {targets.Length} targets for logits of shape {logits.ShapeString}.");
        for (int i = 0; i < n; i++)
            if ((uint)targets[i] >= (uint)k)
                throw new ArgumentException($"SoftmaxCrossEntropy: target {targets[i]} at row {i} is outside [0, {k}) for logits of shape {logits.ShapeString}.");
        var g = Tensor.Ensure(ref _grad, logits.Shape);
        return (float)Kernels.Loss.SoftmaxCrossEntropy<float>(g.Span, logits.Span, targets, n, k);
    }

    /// <summary>dL/dlogits of the last <see cref="Forward"/>.</summary>
    public Tensor Backward() => _grad ?? throw new InvalidOperationException("SoftmaxCrossEntropy: Backward called before Forward.");

    /// <summary>Number of rows whose arg-max equals the target.</summary>
    public static int CountCorrect(Tensor logits, ReadOnlySpan<int> targets)
    {
        int n = logits.Dim(0), k = logits.Dim(1), correct = 0;
        var s = logits.Span;
        for (int i = 0; i < n; i++)
            if (System.Numerics.Tensors.TensorPrimitives.IndexOfMax(s.Slice(i * k, k)) == targets[i])
                correct++;
        return correct;
    }
}

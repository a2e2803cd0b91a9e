using NormLab.Kernels;

namespace NormLab;

/// <summary>
/// Layer normalization (Ba, Kiros &amp; Hinton 2016), PyTorch's
/// <c>nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True, bias=True)</c>: each sample is normalized over
/// its last dimensions (<see cref="NormalizedShape"/>) by its own mean and biased variance, in training and eval alike;
/// then an element-wise γ, β of that shape.
/// </summary>
public sealed class LayerNorm : RowNorm
{
    private readonly int[] _shape;
    private readonly int _length;

    /// <summary>Creates the layer.</summary>
    public LayerNorm(int[] normalizedShape, double eps = 1e-5, bool elementwiseAffine = true, bool bias = true)
        : base(eps, Validate(normalizedShape, elementwiseAffine), bias)
    {
        _shape = (int[])normalizedShape.Clone();
        _length = _shape.Aggregate(1, (a, b) => a * b);
    }

    /// <summary>A layer normalizing the last dimension of <paramref name="features"/> values.</summary>
    public LayerNorm(int features, double eps = 1e-5, bool elementwiseAffine = true, bool bias = true)
        : this([features], eps, elementwiseAffine, bias)
    {
    }

    /// <summary>The trailing dimensions every sample is normalized over.</summary>
    public IReadOnlyList<int> NormalizedShape => _shape;

    // The parameters' shape (null without affine parameters), once the shape is known to be valid.
    private static int[]? Validate(int[] shape, bool affine)
    {
        if (shape.Length == 0 || shape.Any(d => d <= 0))
            throw new ArgumentException($"LayerNorm: normalized_shape must be non-empty with positive dimensions, got [{string.Join(", ", shape)}].");
        return affine ? (int[])shape.Clone() : null;
    }

    /// <inheritdoc/>
    protected override RowLayout Layout(Tensor x)
    {
        int k = _shape.Length;
        if (x.Rank < k || !x.Shape[^k..].SequenceEqual(_shape))
            throw new ArgumentException(
                $"LayerNorm: given normalized_shape=[{string.Join(", ", _shape)}], expected input with shape [*, {string.Join(", ", _shape)}], but got input of shape {x.ShapeString}.");
        // Computed once: LINQ here would allocate an enumerator per step until the JIT's escape analysis removes it.
        return new RowLayout(x.Length / _length, _length, 1, 1);
    }

    /// <inheritdoc/>
    public override string ToString() => $"LayerNorm([{string.Join(", ", _shape)}], eps={Eps}, elementwise_affine={Weight is not null})";
}

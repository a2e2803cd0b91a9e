namespace NormLab;

/// <summary>[N, d1, d2, ...] → [N, d1·d2·...]; a view, no copy.</summary>
public sealed class Flatten : Module
{
    private Tensor? _input, _output, _inputGrad;

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        if (x.Rank < 1)
            throw new ArgumentException($"Flatten: expected at least 1 dimension (the batch), got shape {x.ShapeString}.");
        _input = x;
        int n = x.Dim(0);
        int rest = n == 0 ? 0 : x.Length / n;
        _output = View(_output, x, [n, rest]);
        return _output;
    }

    /// <inheritdoc/>
    protected override Tensor BackwardCore(Tensor dy)
    {
        ShapeCheck.Gradient(dy, _output, "Flatten");
        _inputGrad = View(_inputGrad, dy, _input!.Shape);
        return _inputGrad;
    }

    // Reuses the view object while storage, offset and shape stay, so steady steps allocate nothing.
    private static Tensor View(Tensor? cached, Tensor source, ReadOnlySpan<int> shape)
    {
        if (cached is not null && cached.Storage == source.Storage && cached.Offset == source.Offset && cached.HasShape(shape))
            return cached;
        return new Tensor(source.Storage, source.Offset, shape.ToArray());
    }
}

namespace NormLab;

/// <summary>Shape validation with errors that name both shapes and the operation.</summary>
public static class ShapeCheck
{
    /// <summary>Throws unless <paramref name="a"/> and <paramref name="b"/> have the same shape.</summary>
    public static void Same(Tensor a, Tensor b, string operation)
    {
        if (!a.HasShape(b.Shape))
            throw new ArgumentException($"{operation}: shapes {a.ShapeString} and {b.ShapeString} differ.");
    }

    /// <summary>Throws unless <paramref name="x"/> has rank <paramref name="rank"/>.</summary>
    public static void Rank(Tensor x, int rank, string module, string expected)
    {
        if (x.Rank != rank)
            throw new ArgumentException($"{module}: expected {rank}D input {expected}, got {x.Rank}D input of shape {x.ShapeString}.");
    }

    /// <summary>Throws unless dimension <paramref name="dim"/> of <paramref name="x"/> is <paramref name="size"/>.</summary>
    public static void Dim(Tensor x, int dim, int size, string module, string what)
    {
        if (x.Dim(dim) != size)
            throw new ArgumentException($"{module}: expected {what} = {size} (dimension {dim}), got input of shape {x.ShapeString}.");
    }

    /// <summary>Throws unless a gradient has the shape of the output it belongs to; the module's type names it.</summary>
    /// <remarks>Named only on failure: <c>GetType().Name</c> sits in a weakly held reflection cache, so calling it every
    /// step allocates again after each garbage collection.</remarks>
    public static void Gradient(Tensor dy, Tensor? output, Module module)
    {
        if (output is null || !dy.HasShape(output.Shape))
            Gradient(dy, output, module.GetType().Name);
    }

    /// <summary>Throws unless a gradient has the shape of the output it belongs to.</summary>
    public static void Gradient(Tensor dy, Tensor? output, string module)
    {
        if (output is null)
            throw new InvalidOperationException($"{module}: Backward called before Forward.");
        if (!dy.HasShape(output.Shape))
            throw new ArgumentException($"{module}: gradient of shape {dy.ShapeString} does not match the output of shape {output.ShapeString}.");
    }
}

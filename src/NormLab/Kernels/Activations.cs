using System.Numerics;
using System.Numerics.Tensors;

namespace NormLab.Kernels;

/// <summary>Element-wise activations and their backward, written in terms of the output y (what the modules keep).</summary>
public static class Activations
{
    /// <summary>y = max(x, 0).</summary>
    public static void Relu<T>(Span<T> y, ReadOnlySpan<T> x) where T : unmanaged, IFloatingPointIeee754<T> =>
        TensorPrimitives.Max(x, T.Zero, y);

    /// <summary>dx = dy where y &gt; 0, else 0 (the subgradient at 0 is 0, as in PyTorch).</summary>
    public static void ReluBackward<T>(Span<T> dx, ReadOnlySpan<T> dy, ReadOnlySpan<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i = 0; i < dx.Length; i++)
            dx[i] = y[i] > T.Zero ? dy[i] : T.Zero;
    }

    /// <summary>y = 1/(1 + e^−x).</summary>
    public static void Sigmoid<T>(Span<T> y, ReadOnlySpan<T> x) where T : unmanaged, IFloatingPointIeee754<T> =>
        TensorPrimitives.Sigmoid(x, y);

    /// <summary>dx = dy·y·(1 − y).</summary>
    public static void SigmoidBackward<T>(Span<T> dx, ReadOnlySpan<T> dy, ReadOnlySpan<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i = 0; i < dx.Length; i++)
            dx[i] = dy[i] * y[i] * (T.One - y[i]);
    }

    /// <summary>y = tanh(x).</summary>
    public static void Tanh<T>(Span<T> y, ReadOnlySpan<T> x) where T : unmanaged, IFloatingPointIeee754<T> =>
        TensorPrimitives.Tanh(x, y);

    /// <summary>dx = dy·(1 − y²).</summary>
    public static void TanhBackward<T>(Span<T> dx, ReadOnlySpan<T> dy, ReadOnlySpan<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i = 0; i < dx.Length; i++)
            dx[i] = dy[i] * (T.One - y[i] * y[i]);
    }
}

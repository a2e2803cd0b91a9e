using System.Numerics;
using System.Numerics.Tensors;

namespace NormLab.Kernels;

/// <summary>
/// 2-D pooling over a batch viewed as <c>planes</c> independent H×W planes (planes = N·C), with PyTorch's semantics
/// (<c>ceil_mode = False</c>): max pooling treats the padding as −∞, average pooling counts it as zeros
/// (<c>count_include_pad = True</c>), so every window divides by kh·kw.
/// </summary>
/// <remarks>
/// The padding may be at most half the window on each axis, as PyTorch requires: then every window overlaps the plane,
/// so a max always exists.
/// </remarks>
public static class Pooling
{
    /// <summary>
    /// y[o] = max of the window at o; <paramref name="argmax"/>[o] is where it came from, as an index h·W + w in its plane
    /// (PyTorch's <c>return_indices</c>). Ties go to the first maximum in row-major window order, and a NaN wins, as in PyTorch.
    /// </summary>
    public static void MaxForward<T>(Span<T> y, Span<int> argmax, ReadOnlySpan<T> x, int planes, Window2d w)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckSizes(x.Length, y.Length, planes, w);
        if (argmax.Length != y.Length)
            throw new ArgumentException($"MaxPool kernel: {argmax.Length} argmax slots for {y.Length} outputs.");
        int width = w.Width;
        for (int p = 0; p < planes; p++)
        {
            var xp = x.Slice(p * w.PlaneSize, w.PlaneSize);
            int o = p * w.OutPlaneSize;
            for (int oy = 0; oy < w.OutHeight; oy++)
            {
                var (y0, y1) = Rows(w, oy);
                for (int ox = 0; ox < w.OutWidth; ox++, o++)
                {
                    var (x0, x1) = Cols(w, ox);
                    T max = T.NegativeInfinity;
                    int at = y0 * width + x0;
                    for (int iy = y0; iy < y1; iy++)
                        for (int ix = x0; ix < x1; ix++)
                        {
                            T v = xp[iy * width + ix];
                            if (v > max || T.IsNaN(v))
                            {
                                max = v;
                                at = iy * width + ix;
                            }
                        }
                    y[o] = max;
                    argmax[o] = at;
                }
            }
        }
    }

    /// <summary>dx = 0 except dx[argmax[o]] += dy[o]: each output's gradient goes to the input it copied.</summary>
    public static void MaxBackward<T>(Span<T> dx, ReadOnlySpan<T> dy, ReadOnlySpan<int> argmax, int planes, Window2d w)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckSizes(dx.Length, dy.Length, planes, w);
        if (argmax.Length != dy.Length)
            throw new ArgumentException($"MaxPool kernel: {argmax.Length} argmax slots for {dy.Length} outputs.");
        dx.Clear();
        for (int p = 0; p < planes; p++)
        {
            var dxp = dx.Slice(p * w.PlaneSize, w.PlaneSize);
            int first = p * w.OutPlaneSize;
            for (int o = first; o < first + w.OutPlaneSize; o++)
                dxp[argmax[o]] += dy[o];
        }
    }

    /// <summary>y[o] = (Σ of the window at o over the plane) / (kh·kw): padded positions count as zeros.</summary>
    public static void AvgForward<T>(Span<T> y, ReadOnlySpan<T> x, int planes, Window2d w)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckSizes(x.Length, y.Length, planes, w);
        T area = T.CreateChecked(w.KernelArea);
        int width = w.Width;
        for (int p = 0; p < planes; p++)
        {
            var xp = x.Slice(p * w.PlaneSize, w.PlaneSize);
            int o = p * w.OutPlaneSize;
            for (int oy = 0; oy < w.OutHeight; oy++)
            {
                var (y0, y1) = Rows(w, oy);
                for (int ox = 0; ox < w.OutWidth; ox++, o++)
                {
                    var (x0, x1) = Cols(w, ox);
                    T sum = T.Zero;
                    for (int iy = y0; iy < y1; iy++)
                        sum += TensorPrimitives.Sum(xp.Slice(iy * width + x0, x1 - x0));
                    y[o] = sum / area;
                }
            }
        }
    }

    /// <summary>dx = 0 plus dy[o]/(kh·kw) on every input inside the window at o.</summary>
    public static void AvgBackward<T>(Span<T> dx, ReadOnlySpan<T> dy, int planes, Window2d w)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckSizes(dx.Length, dy.Length, planes, w);
        T area = T.CreateChecked(w.KernelArea);
        int width = w.Width;
        dx.Clear();
        for (int p = 0; p < planes; p++)
        {
            var dxp = dx.Slice(p * w.PlaneSize, w.PlaneSize);
            int o = p * w.OutPlaneSize;
            for (int oy = 0; oy < w.OutHeight; oy++)
            {
                var (y0, y1) = Rows(w, oy);
                for (int ox = 0; ox < w.OutWidth; ox++, o++)
                {
                    var (x0, x1) = Cols(w, ox);
                    T g = dy[o] / area;
                    for (int iy = y0; iy < y1; iy++)
                    {
                        var row = dxp.Slice(iy * width + x0, x1 - x0);
                        TensorPrimitives.Add(row, g, row);
                    }
                }
            }
        }
    }

    /// <summary>y[p] = mean of plane p over its <paramref name="size"/> values: [N, C, H, W] → [N, C].</summary>
    public static void GlobalAvgForward<T>(Span<T> y, ReadOnlySpan<T> x, int planes, int size)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckGlobal(x.Length, y.Length, planes, size);
        T count = T.CreateChecked(size);
        for (int p = 0; p < planes; p++)
            y[p] = TensorPrimitives.Sum(x.Slice(p * size, size)) / count;
    }

    /// <summary>dx = dy[p]/size on every value of plane p.</summary>
    public static void GlobalAvgBackward<T>(Span<T> dx, ReadOnlySpan<T> dy, int planes, int size)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckGlobal(dx.Length, dy.Length, planes, size);
        T count = T.CreateChecked(size);
        for (int p = 0; p < planes; p++)
            dx.Slice(p * size, size).Fill(dy[p] / count);
    }

    // The window at output row oy, clipped to the plane: padding contributes nothing to a sum and never wins a max.
    private static (int Lo, int Hi) Rows(Window2d w, int oy)
    {
        int start = oy * w.Stride - w.Padding;
        return (Math.Max(start, 0), Math.Min(start + w.KernelHeight, w.Height));
    }

    private static (int Lo, int Hi) Cols(Window2d w, int ox)
    {
        int start = ox * w.Stride - w.Padding;
        return (Math.Max(start, 0), Math.Min(start + w.KernelWidth, w.Width));
    }

    private static void CheckSizes(int input, int output, int planes, Window2d w)
    {
        if (2 * w.Padding > w.KernelHeight || 2 * w.Padding > w.KernelWidth)
            throw new ArgumentException($"Pooling kernel: padding must be at most half the window, got {w}.");
        if (input != (long)planes * w.PlaneSize || output != (long)planes * w.OutPlaneSize)
            throw new ArgumentException($"Pooling kernel: {input} input and {output} output values do not form {planes} planes of {w}.");
    }

    private static void CheckGlobal(int input, int output, int planes, int size)
    {
        if (size < 1 || input != (long)planes * size || output != planes)
            throw new ArgumentException($"Global pooling kernel: {input} input and {output} output values do not form {planes} planes of {size}.");
    }
}

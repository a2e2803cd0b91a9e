using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using NormLab.Threading;

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
    public static unsafe void MaxForward<T>(Span<T> y, Span<int> argmax, ReadOnlySpan<T> x, int planes, Window2d w)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckSizes(x.Length, y.Length, planes, w);
        if (argmax.Length != y.Length)
            throw new ArgumentException($"MaxPool kernel: {argmax.Length} argmax slots for {y.Length} outputs.");
        var args = new MaxArgs<T> { Y = y, Argmax = argmax, X = x, W = w };
        if (x.Length < ParallelLength)
            MaxForwardPlanes(ref args, 0, planes);
        else
            Team.For(planes, ref args, &MaxForwardPlanes);
    }

    private static void MaxForwardPlanes<T>(ref MaxArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var w = a.W;
        for (int p = first; p < end; p++)
        {
            var xp = a.X.Slice(p * w.PlaneSize, w.PlaneSize);
            var yp = a.Y.Slice(p * w.OutPlaneSize, w.OutPlaneSize);
            var ap = a.Argmax.Slice(p * w.OutPlaneSize, w.OutPlaneSize);
            if (w is { KernelHeight: 2, KernelWidth: 2, Stride: 2, Padding: 0 })
                MaxPlane2x2(yp, ap, xp, w);
            else
                MaxPlane(yp, ap, xp, w);
        }
    }

    private static void MaxPlane<T>(Span<T> y, Span<int> argmax, ReadOnlySpan<T> xp, Window2d w) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int width = w.Width, o = 0;
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
                        Take(xp[iy * width + ix], iy * width + ix, ref max, ref at);
                y[o] = max;
                argmax[o] = at;
            }
        }
    }

    // The CNNs' 2×2 window with stride 2: the same comparisons in the same order as MaxPlane, without the bounds
    // arithmetic; float goes through pointers (this loop is a CNN step's largest outside the products).
    private static unsafe void MaxPlane2x2<T>(Span<T> y, Span<int> argmax, ReadOnlySpan<T> xp, Window2d w) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int width = w.Width, outH = w.OutHeight, outW = w.OutWidth;
        if (typeof(T) == typeof(float))
        {
            fixed (T* px = xp, py = y)
            fixed (int* pa = argmax)
                MaxPlane2x2Float((float*)px, (float*)py, pa, width, outH, outW);
            return;
        }
        int o = 0;
        for (int oy = 0; oy < outH; oy++)
        {
            int row = 2 * oy * width;
            for (int ox = 0; ox < outW; ox++, o++)
            {
                int i = row + 2 * ox, at = i;
                T max = T.NegativeInfinity;
                Take(xp[i], i, ref max, ref at);
                Take(xp[i + 1], i + 1, ref max, ref at);
                Take(xp[i + width], i + width, ref max, ref at);
                Take(xp[i + width + 1], i + width + 1, ref max, ref at);
                y[o] = max;
                argmax[o] = at;
            }
        }
    }

    private static unsafe void MaxPlane2x2Float(float* x, float* y, int* argmax, int width, int outH, int outW)
    {
        for (int oy = 0; oy < outH; oy++, y += outW, argmax += outW)
        {
            int row = 2 * oy * width;
            float* top = x + row, bottom = top + width;
            int ox = 0;
            if (Sse41.IsSupported && outW >= 4)
            {
                // Four windows at a time, branch-free (on real activations the comparisons are coin flips); the last
                // group overlaps the one before rather than falling back to scalar code.
                for (; ; ox += 4)
                {
                    ox = Math.Min(ox, outW - 4);
                    MaxFour(top + 2 * ox, bottom + 2 * ox, y + ox, argmax + ox, row + 2 * ox, width);
                    if (ox == outW - 4)
                        break;
                }
                continue;
            }
            for (; ox < outW; ox++)
            {
                // max starts at the first value (a NaN or −∞ there is kept, as Take would keep it), then the others in order.
                float max = top[2 * ox];
                int at = 0;
                Select(top[2 * ox + 1], 1, ref max, ref at);
                Select(bottom[2 * ox], width, ref max, ref at);
                Select(bottom[2 * ox + 1], width + 1, ref max, ref at);
                y[ox] = max;
                argmax[ox] = row + 2 * ox + at;
            }
        }
    }

    // The scalar Select's comparisons, four windows wide: a later value wins if it is larger or NaN.
    private static unsafe void MaxFour(float* top, float* bottom, float* y, int* argmax, int first, int width) =>
        MaxFour(Sse.LoadVector128(top), Sse.LoadVector128(top + 4), Sse.LoadVector128(bottom), Sse.LoadVector128(bottom + 4), y, argmax,
            first, width);

    /// <summary>Four 2×2 windows from their two rows of 8 values (t0, t1 on top, b0, b1 below): the maxima into
    /// <paramref name="y"/>, their indices (<paramref name="first"/>, the top-left input's, plus 0, 1, W or W + 1) into
    /// <paramref name="argmax"/>. Also the pooling of <see cref="BatchNormPool"/>.</summary>
    internal static unsafe void MaxFour(Vector128<float> t0, Vector128<float> t1, Vector128<float> b0, Vector128<float> b1, float* y, int* argmax,
        int first, int width)
    {
        var max = Sse.Shuffle(t0, t1, 0b10_00_10_00);            // top-left of each window
        var at = Vector128<int>.Zero;
        Pick(Sse.Shuffle(t0, t1, 0b11_01_11_01), Vector128.Create(1), ref max, ref at);
        Pick(Sse.Shuffle(b0, b1, 0b10_00_10_00), Vector128.Create(width), ref max, ref at);
        Pick(Sse.Shuffle(b0, b1, 0b11_01_11_01), Vector128.Create(width + 1), ref max, ref at);
        Sse.Store(y, max);
        Sse2.Store(argmax, Sse2.Add(at, Vector128.Create(first, first + 2, first + 4, first + 6)));
    }

    private static void Pick(Vector128<float> v, Vector128<int> offset, ref Vector128<float> max, ref Vector128<int> at)
    {
        var take = Sse.Or(Sse.CompareGreaterThan(v, max), Sse.CompareUnordered(v, v));
        max = Sse41.BlendVariable(max, v, take);
        at = Sse41.BlendVariable(at.AsSingle(), offset.AsSingle(), take).AsInt32();
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void Select(float v, int offset, ref float max, ref int at)
    {
        bool take = (v > max) | float.IsNaN(v);
        max = take ? v : max;
        at = take ? offset : at;
    }

    private static void Take<T>(T v, int index, ref T max, ref int at) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (v > max || T.IsNaN(v))
        {
            max = v;
            at = index;
        }
    }

    private const int ParallelLength = 1 << 15;

    private ref struct MaxArgs<T> where T : unmanaged
    {
        public Span<T> Y;
        public Span<int> Argmax;
        public ReadOnlySpan<T> X;
        public Window2d W;
    }

    /// <summary>dx = dy routed back to each window's argmax (dx is overwritten; overlapping windows add up).</summary>
    public static unsafe void MaxBackward<T>(Span<T> dx, ReadOnlySpan<T> dy, ReadOnlySpan<int> argmax, int planes, Window2d w)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckSizes(dx.Length, dy.Length, planes, w);
        if (argmax.Length != dy.Length)
            throw new ArgumentException($"MaxPool kernel: {argmax.Length} argmax slots for {dy.Length} outputs.");
        var args = new MaxBackArgs<T> { DX = dx, DY = dy, Argmax = argmax, W = w };
        if (dx.Length < ParallelLength)
            MaxBackwardPlanes(ref args, 0, planes);
        else
            Team.For(planes, ref args, &MaxBackwardPlanes);
    }

    private static unsafe void MaxBackwardPlanes<T>(ref MaxBackArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var w = a.W;
        if (typeof(T) == typeof(float) && Sse2.IsSupported && w is { KernelHeight: 2, KernelWidth: 2, Stride: 2, Padding: 0, OutWidth: >= 4 })
        {
            fixed (T* dx = a.DX, dy = a.DY)
            fixed (int* argmax = a.Argmax)
                for (int p = first; p < end; p++)
                    MaxBackward2x2Float((float*)dx + (long)p * w.PlaneSize, (float*)dy + (long)p * w.OutPlaneSize,
                        argmax + (long)p * w.OutPlaneSize, w.Height, w.Width);
            return;
        }
        for (int p = first; p < end; p++)
        {
            var dxp = a.DX.Slice(p * w.PlaneSize, w.PlaneSize);
            dxp.Clear();
            int o0 = p * w.OutPlaneSize;
            for (int o = o0; o < o0 + w.OutPlaneSize; o++)
                dxp[a.Argmax[o]] += a.DY[o];
        }
    }

    // The CNNs' 2×2 window with stride 2, whose windows tile the plane: each input is written once, with its window's
    // gradient where it was the argmax and 0 elsewhere, instead of clearing the plane and scattering into it. Four
    // windows at a time: their two rows of 8 inputs each from a comparison of the argmax offsets; the last group overlaps
    // the one before (rewriting the same values). A last row or column that no window covers (odd H or W) gets zeros.
    // Also the pooled gradient of BatchNormPool's backward, a plane at a time.
    internal static unsafe void MaxBackward2x2Float(float* dx, float* dy, int* argmax, int height, int width)
    {
        int outW = width / 2, outH = height / 2;
        for (int oy = 0; oy < outH; oy++, dy += outW, argmax += outW)
        {
            int row = 2 * oy * width;
            float* top = dx + row, bottom = top + width;
            for (int ox = 0; ; ox += 4)
            {
                ox = Math.Min(ox, outW - 4);
                var g = Sse.LoadVector128(dy + ox);
                // Each window's argmax relative to its top-left input: 0, 1, W or W + 1.
                var at = Sse2.Subtract(Sse2.LoadVector128(argmax + ox), Vector128.Create(row + 2 * ox, row + 2 * ox + 2, row + 2 * ox + 4, row + 2 * ox + 6));
                Vector128<float> gLow = Sse.UnpackLow(g, g), gHigh = Sse.UnpackHigh(g, g);
                Vector128<int> atLow = Sse2.UnpackLow(at, at), atHigh = Sse2.UnpackHigh(at, at);
                Vector128<int> left = Vector128.Create(0, 1, 0, 1), below = Vector128.Create(width, width + 1, width, width + 1);
                Sse.Store(top + 2 * ox, Sse.And(gLow, Sse2.CompareEqual(atLow, left).AsSingle()));
                Sse.Store(top + 2 * ox + 4, Sse.And(gHigh, Sse2.CompareEqual(atHigh, left).AsSingle()));
                Sse.Store(bottom + 2 * ox, Sse.And(gLow, Sse2.CompareEqual(atLow, below).AsSingle()));
                Sse.Store(bottom + 2 * ox + 4, Sse.And(gHigh, Sse2.CompareEqual(atHigh, below).AsSingle()));
                if (ox == outW - 4)
                    break;
            }
            if (width > 2 * outW)
            {
                top[width - 1] = 0;
                bottom[width - 1] = 0;
            }
        }
        if (height > 2 * outH)
            new Span<float>(dx + (height - 1) * width, width).Clear();
    }

    private ref struct MaxBackArgs<T> where T : unmanaged
    {
        public Span<T> DX;
        public ReadOnlySpan<T> DY;
        public ReadOnlySpan<int> Argmax;
        public Window2d W;
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

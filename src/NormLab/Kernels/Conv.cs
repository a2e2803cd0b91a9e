using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using NormLab.Threading;

namespace NormLab.Kernels;

/// <summary>
/// A kh×kw window sliding over an H×W plane with a stride and zero padding, as convolution and pooling use it.
/// Per axis the output has <c>(size + 2·padding − kernel)/stride + 1</c> positions, rounded down (PyTorch's rule without
/// <c>ceil_mode</c>); output position o covers input rows <c>o·stride − padding + i</c>, i in [0, kernel).
/// </summary>
public readonly struct Window2d
{
    /// <summary>Creates the geometry.</summary>
    /// <exception cref="ArgumentException">A size is not positive, the padding is negative, or the window does not fit the padded plane.</exception>
    public Window2d(int height, int width, int kernelHeight, int kernelWidth, int stride, int padding)
    {
        if (height < 1 || width < 1 || kernelHeight < 1 || kernelWidth < 1 || stride < 1 || padding < 0)
            throw new ArgumentException(
                $"Window2d: plane {height}×{width}, kernel {kernelHeight}×{kernelWidth}, stride {stride}, padding {padding}: sizes must be positive and padding ≥ 0.");
        int outHeight = OutputSize(height, kernelHeight, stride, padding);
        int outWidth = OutputSize(width, kernelWidth, stride, padding);
        if (outHeight < 1 || outWidth < 1)
            throw new ArgumentException(
                $"Window2d: a {kernelHeight}×{kernelWidth} kernel does not fit a {height}×{width} plane padded by {padding}.");
        Height = height;
        Width = width;
        KernelHeight = kernelHeight;
        KernelWidth = kernelWidth;
        Stride = stride;
        Padding = padding;
        OutHeight = outHeight;
        OutWidth = outWidth;
    }

    /// <summary>H, the input plane's height.</summary>
    public int Height { get; }

    /// <summary>W, the input plane's width.</summary>
    public int Width { get; }

    /// <summary>kh, the window's height.</summary>
    public int KernelHeight { get; }

    /// <summary>kw, the window's width.</summary>
    public int KernelWidth { get; }

    /// <summary>The step between windows, on both axes.</summary>
    public int Stride { get; }

    /// <summary>Zeros (or −∞ for max pooling) added on every side of the plane.</summary>
    public int Padding { get; }

    /// <summary>Output height.</summary>
    public int OutHeight { get; }

    /// <summary>Output width.</summary>
    public int OutWidth { get; }

    /// <summary>H·W.</summary>
    public int PlaneSize => Height * Width;

    /// <summary>OutHeight·OutWidth, the number of window positions.</summary>
    public int OutPlaneSize => OutHeight * OutWidth;

    /// <summary>kh·kw.</summary>
    public int KernelArea => KernelHeight * KernelWidth;

    /// <summary>True for a 1×1 window with stride 1 and no padding, where the columns of a plane are the plane itself.</summary>
    public bool IsPointwise => KernelHeight == 1 && KernelWidth == 1 && Stride == 1 && Padding == 0;

    /// <summary>
    /// Positions along one axis: <c>(size + 2·padding − kernel)/stride + 1</c> rounded down, or 0 when the kernel is larger than
    /// the padded size (where integer division would round −1/2 up to a phantom position).
    /// </summary>
    public static int OutputSize(int size, int kernel, int stride, int padding)
    {
        if (stride < 1)
            throw new ArgumentOutOfRangeException(nameof(stride), $"Window2d: stride must be positive, got {stride}.");
        long span = (long)size + 2L * padding - kernel;
        return span < 0 ? 0 : (int)Math.Min(span / stride + 1, int.MaxValue);
    }

    /// <summary>
    /// The output positions [Lo, Hi) whose window element at <paramref name="k"/> lands inside the plane,
    /// i.e. 0 ≤ o·stride − padding + k &lt; size. Outside that range the element reads the padding.
    /// </summary>
    internal (int Lo, int Hi) Inside(int k, int size, int outSize)
    {
        int offset = k - Padding;
        int lo = offset >= 0 ? 0 : (-offset + Stride - 1) / Stride;
        int hi = size - offset <= 0 ? 0 : Math.Min((size - offset + Stride - 1) / Stride, outSize);
        return (Math.Min(lo, hi), hi);
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"Window2d({Height}×{Width}, kernel {KernelHeight}×{KernelWidth}, stride {Stride}, padding {Padding} → {OutHeight}×{OutWidth})";
}

/// <summary>
/// 2-D convolution (cross-correlation, as in PyTorch) over NCHW images, through im2col and <see cref="Gemm"/>.
/// With K = C_in·kh·kw and L = OutHeight·OutWidth, one image's columns form col [K, L] and
/// <code>
/// y_n  = W·col_n + b          W: [C_out, K]
/// dW  += dy_n·col_nᵀ          db += Σ_L dy_n
/// dx_n = col2im(Wᵀ·dy_n)
/// </code>
/// The caller owns the scratch buffer (K·L values), so the kernels never allocate. In float, 3×3 convolutions with stride
/// 1 and at least 8 channels each way compute y, and dx where the padding is at most 2, by <see cref="Winograd"/>
/// F(2×2, 3×3) instead: 2.25 times fewer multiplies (the CNN's conv2 at 2 threads, 128 images: forward 6.9 → 4.6 ms).
/// </summary>
public static class Conv
{
    /// <summary>
    /// Unfolds one C×H×W image into columns:
    /// <c>col[(c·kh + i)·kw + j, oy·OW + ox] = x[c, oy·s − p + i, ox·s − p + j]</c>, 0 where that falls in the padding.
    /// </summary>
    public static void Im2Col<T>(Span<T> col, ReadOnlySpan<T> image, int channels, Window2d w)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckColumns(col.Length, image.Length, channels, w);
        if (ShiftedRun<T>.Applies(w))
        {
            ShiftedRun<T>.Im2Col(col, image, channels, w);
            return;
        }
        int outW = w.OutWidth, cols = w.OutPlaneSize, s = w.Stride;
        int row = 0;
        for (int c = 0; c < channels; c++)
        {
            var plane = image.Slice(c * w.PlaneSize, w.PlaneSize);
            for (int i = 0; i < w.KernelHeight; i++)
            {
                var (oy0, oy1) = w.Inside(i, w.Height, w.OutHeight);
                for (int j = 0; j < w.KernelWidth; j++, row++)
                {
                    var (ox0, ox1) = w.Inside(j, w.Width, outW);
                    var dst = col.Slice(row * cols, cols);
                    // A row with any padding is cleared in one call rather than in slivers around every line.
                    bool padded = oy0 > 0 || oy1 < w.OutHeight || ox0 > 0 || ox1 < outW;
                    if (padded)
                        dst.Clear();
                    for (int oy = oy0; oy < oy1; oy++)
                    {
                        var line = dst.Slice(oy * outW, outW);
                        var src = plane.Slice((oy * s - w.Padding + i) * w.Width, w.Width);
                        int ix = ox0 * s - w.Padding + j;
                        if (s == 1)
                            CopyLine(src.Slice(ix, ox1 - ox0), line.Slice(ox0));
                        else
                            for (int ox = ox0; ox < ox1; ox++, ix += s)
                                line[ox] = src[ix];
                    }
                }
            }
        }
    }

    /// <summary>
    /// The adjoint of <see cref="Im2Col{T}"/>: adds every column entry back onto the pixel it was read from
    /// (<c>image += col2im(col)</c>); entries that read the padding are dropped. Overlapping windows sum.
    /// </summary>
    public static void Col2Im<T>(Span<T> image, ReadOnlySpan<T> col, int channels, Window2d w)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckColumns(col.Length, image.Length, channels, w);
        if (ShiftedRun<T>.Applies(w))
        {
            ShiftedRun<T>.Col2Im(image, col, channels, w);
            return;
        }
        int outW = w.OutWidth, cols = w.OutPlaneSize, s = w.Stride;
        int row = 0;
        for (int c = 0; c < channels; c++)
        {
            var plane = image.Slice(c * w.PlaneSize, w.PlaneSize);
            for (int i = 0; i < w.KernelHeight; i++)
            {
                var (oy0, oy1) = w.Inside(i, w.Height, w.OutHeight);
                for (int j = 0; j < w.KernelWidth; j++, row++)
                {
                    var (ox0, ox1) = w.Inside(j, w.Width, outW);
                    var src = col.Slice(row * cols, cols);
                    for (int oy = oy0; oy < oy1; oy++)
                    {
                        var line = src.Slice(oy * outW, outW);
                        var dst = plane.Slice((oy * s - w.Padding + i) * w.Width, w.Width);
                        int ix = ox0 * s - w.Padding + j;
                        if (s == 1)
                            AddLine(line.Slice(ox0, ox1 - ox0), dst.Slice(ix, ox1 - ox0));
                        else
                            for (int ox = ox0; ox < ox1; ox++, ix += s)
                                dst[ix] += line[ox];
                    }
                }
            }
        }
    }

    // The lines of a convolution's columns are short (an output row, 14 values for conv2 of the CNN): copied and added in
    // place with vectors, as a library call per line costs more than the line.
    private static void CopyLine<T>(ReadOnlySpan<T> src, Span<T> dst) where T : unmanaged
    {
        int n = src.Length, i = 0, width = Vector256<T>.Count;
        ref T s = ref MemoryMarshal.GetReference(src);
        ref T d = ref MemoryMarshal.GetReference(dst);
        if (dst.Length < n)
            throw new ArgumentException("Conv: a column line is longer than its destination.");
        if (Vector256.IsHardwareAccelerated && n >= width)
        {
            for (; i <= n - width; i += width)
                Vector256.LoadUnsafe(ref s, (nuint)i).StoreUnsafe(ref d, (nuint)i);
            if (i < n) // the last vector overlaps the one before: copying a value twice is harmless
                Vector256.LoadUnsafe(ref s, (nuint)(n - width)).StoreUnsafe(ref d, (nuint)(n - width));
            return;
        }
        for (; i < n; i++)
            Unsafe.Add(ref d, i) = Unsafe.Add(ref s, i);
    }

    private static void AddLine<T>(ReadOnlySpan<T> src, Span<T> dst) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = src.Length, i = 0, width = Vector256<T>.Count;
        ref T s = ref MemoryMarshal.GetReference(src);
        ref T d = ref MemoryMarshal.GetReference(dst);
        if (dst.Length < n)
            throw new ArgumentException("Conv: a column line is longer than its destination.");
        if (Vector256.IsHardwareAccelerated)
            for (; i <= n - width; i += width)
                (Vector256.LoadUnsafe(ref d, (nuint)i) + Vector256.LoadUnsafe(ref s, (nuint)i)).StoreUnsafe(ref d, (nuint)i);
        for (; i < n; i++)
            Unsafe.Add(ref d, i) += Unsafe.Add(ref s, i);
    }

    /// <summary>
    /// Images are processed in <see cref="Groups"/> fixed groups, in parallel on the <see cref="Team"/> (the products inside
    /// a group then run inline; a lone group runs on the caller and its products use the team). The grouping depends only
    /// on the batch size, so the weight gradient, summed per group and then over groups in order, is the same whatever the
    /// number of threads.
    /// </summary>
    public static int Groups(int n) => Math.Min(n, 8);

    /// <summary>Values of the scratch buffer <see cref="Forward{T}"/> and <see cref="Backward{T}"/> need: per group, one
    /// image's columns K·L (none for a pointwise window) and a partial weight gradient C_out·K; and once, Wᵀ (K·C_out).</summary>
    /// <remarks>A convolution that <see cref="Winograd"/> computes needs, per group, the larger of the columns and its
    /// transformed image, and once its transformed filters, at the end.</remarks>
    public static int ScratchSize(int n, int inChannels, int outChannels, Window2d w)
    {
        long k = (long)inChannels * w.KernelArea;
        return checked((int)(Groups(n) * (ColumnsSize(inChannels, outChannels, w) + outChannels * k) + outChannels * k + FiltersSize(inChannels, outChannels, w)));
    }

    // The transformed filters of the forward and of the input gradient, when Winograd computes them (one at a time).
    private static long FiltersSize(int inChannels, int outChannels, Window2d w) => Math.Max(
        Winograd.Applies<float>(inChannels, outChannels, w) ? Winograd.FilterSize(inChannels, outChannels) : 0,
        Winograd.InputGradientWindow<float>(inChannels, outChannels, w) is not null ? Winograd.FilterSize(outChannels, inChannels) : 0);

    // The weight gradient's product as dWᵀ += col·dyᵀ rather than dW += dy·colᵀ when the output has fewer channels than
    // the columns have rows: the packed GEMM reads its A in place and transposes its B, so the smaller operand, dy, is
    // the one transposed (conv2 of the CNN, 64 channels against 288 rows: 12 % faster). The same products in the same
    // order, so the same bits; both forms stay on the packed path (SgemmSmall's dot products take narrow transposed Bs).
    private static bool TransposedWeightGradient(int outChannels, long k) =>
        outChannels < k && outChannels > SgemmSmall.MaxDotColumns;

    private static long ColumnsSize(int inChannels, int outChannels, Window2d w)
    {
        long columns = w.IsPointwise ? 0 : (long)inChannels * w.KernelArea * w.OutPlaneSize;
        if (Winograd.Applies<float>(inChannels, outChannels, w))
            columns = Math.Max(columns, Winograd.ImageScratch(inChannels, outChannels, w));
        if (Winograd.InputGradientWindow<float>(inChannels, outChannels, w) is { } back)
            columns = Math.Max(columns, Winograd.ImageScratch(outChannels, inChannels, back));
        return columns;
    }

    /// <summary>
    /// y = conv(x, W) + b for a batch: x [n, C_in, H, W], weight [C_out, C_in, kh, kw], y [n, C_out, OH, OW] (overwritten).
    /// An empty <paramref name="bias"/> means none. <paramref name="scratch"/> holds <see cref="ScratchSize"/> values.
    /// </summary>
    public static unsafe void Forward<T>(Span<T> y, ReadOnlySpan<T> x, ReadOnlySpan<T> weight, ReadOnlySpan<T> bias, Span<T> scratch,
        int n, int inChannels, int outChannels, Window2d w)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckSizes(x.Length, y.Length, weight.Length, bias.Length, scratch.Length, n, inChannels, outChannels, w);
        var args = new Args<T>
        {
            Y = y, X = x, Weight = weight, Bias = bias, Scratch = scratch, N = n, InChannels = inChannels, OutChannels = outChannels, W = w,
        };
        if (Winograd.Applies<T>(inChannels, outChannels, w))
        {
            // The filters transformed once per call, into the end of the scratch; the images in groups over the team.
            int size = ScratchSize(n, inChannels, outChannels, w), filters = (int)Winograd.FilterSize(inChannels, outChannels);
            args.Filters = scratch.Slice(size - (int)FiltersSize(inChannels, outChannels, w), filters);
            fixed (T* pu = args.Filters)
                Winograd.TransformFilters((float*)pu, MemoryMarshal.Cast<T, float>(weight), inChannels, outChannels);
            Team.For(Groups(n), ref args, &WinogradGroups);
            return;
        }
        // One group (a single image) runs on the calling thread, so that its products can use the team themselves.
        if (Groups(n) == 1)
            ForwardGroups(ref args, 0, 1);
        else
            Team.For(Groups(n), ref args, &ForwardGroups);
    }

    private static unsafe void WinogradGroups<T>(ref Args<T> a, int firstGroup, int endGroup) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var w = a.W;
        int groups = Groups(a.N), imageSize = a.InChannels * w.PlaneSize, outSize = a.OutChannels * w.OutPlaneSize;
        int colSize = (int)ColumnsSize(a.InChannels, a.OutChannels, w);
        var bias = MemoryMarshal.Cast<T, float>(a.Bias);
        fixed (T* px = a.X, py = a.Y, pu = a.Filters, pScratch = a.Scratch)
            for (int g = firstGroup; g < endGroup; g++)
                for (int img = Team.RangeEnd(g - 1, a.N, groups); img < Team.RangeEnd(g, a.N, groups); img++)
                    Winograd.Image((float*)py + (long)img * outSize, (float*)px + (long)img * imageSize, (float*)pu,
                        (float*)pScratch + (long)g * colSize, bias, a.InChannels, a.OutChannels, w);
    }

    private static void ForwardGroups<T>(ref Args<T> a, int firstGroup, int endGroup) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var w = a.W;
        int groups = Groups(a.N), k = a.InChannels * w.KernelArea, l = w.OutPlaneSize, imageSize = a.InChannels * w.PlaneSize;
        int colSize = (int)ColumnsSize(a.InChannels, a.OutChannels, w);
        for (int g = firstGroup; g < endGroup; g++)
        {
            var col = a.Scratch.Slice(g * colSize, colSize);
            for (int img = Team.RangeEnd(g - 1, a.N, groups); img < Team.RangeEnd(g, a.N, groups); img++)
            {
                var xn = a.X.Slice(img * imageSize, imageSize);
                var yn = a.Y.Slice(img * a.OutChannels * l, a.OutChannels * l);
                // With a bias the sums start from it (its bits in the sums); without, the product writes y.
                if (!a.Bias.IsEmpty)
                    for (int co = 0; co < a.OutChannels; co++)
                        yn.Slice(co * l, l).Fill(a.Bias[co]);
                ReadOnlySpan<T> cols = xn;
                if (!w.IsPointwise)
                {
                    Im2Col(col, xn, a.InChannels, w);
                    cols = col;
                }
                Gemm.AB(yn, a.Weight, cols, a.OutChannels, k, l, accumulate: !a.Bias.IsEmpty);
            }
        }
    }

    /// <summary>
    /// Backward of <see cref="Forward{T}"/> given dy [n, C_out, OH, OW]: dx is overwritten, <paramref name="dWeight"/> and
    /// <paramref name="dBias"/> accumulate (<c>+=</c>); an empty <paramref name="dBias"/> skips the bias gradient, an empty
    /// <paramref name="dx"/> the input gradient (a network's first layer). The columns are recomputed from x into the scratch, which then holds dcol = Wᵀ·dy_n: one buffer serves both, since
    /// dW has consumed the columns before dcol is needed.
    /// </summary>
    public static unsafe void Backward<T>(Span<T> dx, Span<T> dWeight, Span<T> dBias, ReadOnlySpan<T> dy, ReadOnlySpan<T> x,
        ReadOnlySpan<T> weight, Span<T> scratch, int n, int inChannels, int outChannels, Window2d w)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckSizes(x.Length, dy.Length, weight.Length, dBias.Length, scratch.Length, n, inChannels, outChannels, w);
        if ((dx.Length != x.Length && !dx.IsEmpty) || dWeight.Length != weight.Length)
            throw new ArgumentException(
                $"Conv kernel: dx of {dx.Length} values for x of {x.Length}, dW of {dWeight.Length} values for W of {weight.Length}.");
        int l = w.OutPlaneSize, k = inChannels * w.KernelArea;
        if (!dBias.IsEmpty)
            for (int img = 0; img < n; img++)
                for (int co = 0; co < outChannels; co++)
                    dBias[co] += TensorPrimitives.Sum(dy.Slice((img * outChannels + co) * l, l));
        int groups = Groups(n), colSize = (int)ColumnsSize(inChannels, outChannels, w);
        var partials = scratch.Slice(groups * colSize, groups * weight.Length);
        // Wᵀ, once per call: dcol = Wᵀ·dy then reads its A in place instead of transposing W into panels for every image.
        var weightT = scratch.Slice(groups * (colSize + weight.Length), weight.Length);
        var back = dx.IsEmpty ? null : Winograd.InputGradientWindow<T>(inChannels, outChannels, w);
        if (!dx.IsEmpty && back is null)
            for (int co = 0; co < outChannels; co++)
                for (int kk = 0; kk < k; kk++)
                    weightT[kk * outChannels + co] = weight[co * k + kk];
        var args = new Args<T>
        {
            Y = dx, X = x, DY = dy, Weight = weightT, Scratch = scratch, N = n, InChannels = inChannels, OutChannels = outChannels, W = w,
        };
        if (back is { } b)
        {
            // dx by Winograd: dy convolved with the flipped filters, transformed once per call.
            int size = ScratchSize(n, inChannels, outChannels, w), filters = (int)Winograd.FilterSize(outChannels, inChannels);
            args.Filters = scratch.Slice(size - (int)FiltersSize(inChannels, outChannels, w), filters);
            fixed (T* pu = args.Filters)
                Winograd.TransformFilters((float*)pu, MemoryMarshal.Cast<T, float>(weight), outChannels, inChannels, flipped: true);
            args.Back = b;
        }
        if (groups == 1)
            BackwardGroups(ref args, 0, 1);
        else
            Team.For(groups, ref args, &BackwardGroups);
        bool transposed = TransposedWeightGradient(outChannels, k);
        for (int g = 0; g < groups; g++)
        {
            var partial = partials.Slice(g * weight.Length, weight.Length);
            if (!transposed)
            {
                TensorPrimitives.Add(dWeight, partial, dWeight);
                continue;
            }
            for (int co = 0; co < outChannels; co++)
                for (int kk = 0; kk < k; kk++)
                    dWeight[co * k + kk] += partial[kk * outChannels + co];
        }
    }

    private static unsafe void BackwardGroups<T>(ref Args<T> a, int firstGroup, int endGroup) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var w = a.W;
        int groups = Groups(a.N), k = a.InChannels * w.KernelArea, l = w.OutPlaneSize, imageSize = a.InChannels * w.PlaneSize;
        int colSize = (int)ColumnsSize(a.InChannels, a.OutChannels, w), dwSize = a.Weight.Length;
        for (int g = firstGroup; g < endGroup; g++)
        {
            var cols = a.Scratch.Slice(g * colSize, colSize);
            var dW = a.Scratch.Slice(groups * colSize + g * dwSize, dwSize); // dWᵀ [K, C_out] when TransposedWeightGradient
            dW.Clear();
            bool transposed = TransposedWeightGradient(a.OutChannels, k);
            for (int img = Team.RangeEnd(g - 1, a.N, groups); img < Team.RangeEnd(g, a.N, groups); img++)
            {
                var xn = a.X.Slice(img * imageSize, imageSize);
                var dyn = a.DY.Slice(img * a.OutChannels * l, a.OutChannels * l);
                if (w.IsPointwise)
                {
                    WeightGradient(dW, dyn, xn, a.OutChannels, l, k, transposed);
                    if (!a.Y.IsEmpty)
                    {
                        Gemm.AB(a.Y.Slice(img * imageSize, imageSize), a.Weight, dyn, k, a.OutChannels, l, accumulate: false);
                    }
                    continue;
                }
                Im2Col(cols, xn, a.InChannels, w);
                WeightGradient(dW, dyn, cols, a.OutChannels, l, k, transposed);
                if (a.Y.IsEmpty)
                    continue;
                var dxn = a.Y.Slice(img * imageSize, imageSize);
                if (a.Back is { } back)
                {
                    // The columns are consumed: their space holds the transformed dy.
                    fixed (T* pdx = dxn, pdy = dyn, pu = a.Filters, pcols = cols)
                        Winograd.Image((float*)pdx, (float*)pdy, (float*)pu, (float*)pcols, default, a.OutChannels, a.InChannels, back);
                    continue;
                }
                dxn.Clear();
                Gemm.AB(cols, a.Weight, dyn, k, a.OutChannels, l, accumulate: false);
                Col2Im(dxn, cols, a.InChannels, w);
            }
        }
    }

    // dW += dy·colᵀ, or dWᵀ += col·dyᵀ (see TransposedWeightGradient).
    private static void WeightGradient<T>(Span<T> dW, ReadOnlySpan<T> dy, ReadOnlySpan<T> cols, int outChannels, int l, int k, bool transposed)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (transposed)
            Gemm.ABt(dW, cols, dy, k, l, outChannels);
        else
            Gemm.ABt(dW, dy, cols, outChannels, l, k);
    }

    // The arguments of one parallel call; Y is the output (y forward, dx backward); backward, Weight is Wᵀ [K, C_out].
    private ref struct Args<T> where T : unmanaged
    {
        public Span<T> Y, Scratch;
        public ReadOnlySpan<T> X, DY, Weight, Bias, Filters;
        public int N, InChannels, OutChannels;
        public Window2d W;
        public Window2d? Back; // the input gradient's window when Winograd computes it
    }

    private static void CheckColumns(int colLength, int imageLength, int channels, Window2d w)
    {
        if ((long)channels * w.PlaneSize != imageLength || colLength < (long)channels * w.KernelArea * w.OutPlaneSize)
            throw new ArgumentException(
                $"im2col: an image of {imageLength} values and columns of {colLength} values do not fit {channels} channels of {w}.");
    }

    private static void CheckSizes(int x, int y, int weight, int bias, int col, int n, int inChannels, int outChannels, Window2d w)
    {
        long k = (long)inChannels * w.KernelArea;
        if (x != (long)n * inChannels * w.PlaneSize || y != (long)n * outChannels * w.OutPlaneSize || weight != outChannels * k)
            throw new ArgumentException(
                $"Conv kernel: x {x}, y {y} and W {weight} values do not form n={n}, C_in={inChannels}, C_out={outChannels} over {w}.");
        if (bias != 0 && bias != outChannels)
            throw new ArgumentException($"Conv kernel: a bias of {bias} values for {outChannels} output channels.");
        long need = ScratchSize(n, inChannels, outChannels, w);
        if (col < need)
            throw new ArgumentException($"Conv kernel: a scratch buffer of {col} values, {need} needed for n={n} over {w}.");
    }
}

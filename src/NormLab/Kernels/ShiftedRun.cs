using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace NormLab.Kernels;

/// <summary>
/// im2col and col2im for stride 1 with as many output columns as input columns (a "same" width, as a 3×3 window with
/// padding 1): the column row of tap (i, j) is then the plane shifted by <c>(i − p)·W + (j − p)</c>, one run of memory
/// instead of a short copy per output line. The values a shift wraps around a line's edge belong to the padding; a mask
/// by output column zeroes them.
/// </summary>
/// <remarks>A run depends on the tap only, so it is set up once and used for every channel. The mask of a vector is read
/// from a line of masks at the vector's first column (a scalar that wraps), not computed from the previous vector's: a
/// chain of vector arithmetic from one vector to the next cost more than the copy.</remarks>
internal readonly ref struct ShiftedRun<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private static int Lanes => Vector256<T>.Count;

    /// <summary>Lines at most this long use the shifted runs (their mask line is on the stack).</summary>
    private const int MaxWidth = 1024;

    /// <summary>Whether the window is such a shift, with lines at least a vector wide (so that a vector wraps at most once).</summary>
    public static bool Applies(Window2d w) => w.Stride == 1 && w.OutWidth == w.Width && w.Width >= Lanes && w.Width <= MaxWidth;

    // Output positions [_from, _to) have rows that read the plane, at position + _shift; _reads[k] is all ones where
    // output column k mod W reads the plane, for k < W + Lanes.
    private readonly int _from, _to, _shift, _width;
    private readonly ReadOnlySpan<T> _reads;

    private ShiftedRun(Window2d w, int i, int j, Span<T> reads)
    {
        _width = w.Width;
        _shift = (i - w.Padding) * _width + (j - w.Padding);
        var (oy0, oy1) = w.Inside(i, w.Height, w.OutHeight);
        var (ox0, ox1) = w.Inside(j, _width, _width);
        _from = Math.Max(oy0 * _width, -_shift);
        _to = Math.Max(_from, Math.Min(oy1 * _width, w.PlaneSize - _shift));
        for (int k = 0; k < reads.Length; k++)
            reads[k] = k % _width >= ox0 && k % _width < ox1 ? Vector256<T>.AllBitsSet[0] : T.Zero;
        _reads = reads;
    }

    public static void Im2Col(Span<T> col, ReadOnlySpan<T> image, int channels, Window2d w)
    {
        Span<T> reads = stackalloc T[w.Width + Lanes];
        for (int tap = 0; tap < w.KernelArea; tap++)
        {
            var run = new ShiftedRun<T>(w, tap / w.KernelWidth, tap % w.KernelWidth, reads);
            for (int c = 0; c < channels; c++)
                run.Copy(Row(col, w, c * w.KernelArea + tap), image.Slice(c * w.PlaneSize, w.PlaneSize));
        }
    }

    /// <remarks>Tap after tap, channel after channel: each plane still takes its taps in the order of the general col2im,
    /// so every pixel sums the same values in the same order.</remarks>
    public static void Col2Im(Span<T> image, ReadOnlySpan<T> col, int channels, Window2d w)
    {
        Span<T> reads = stackalloc T[w.Width + Lanes];
        for (int tap = 0; tap < w.KernelArea; tap++)
        {
            var run = new ShiftedRun<T>(w, tap / w.KernelWidth, tap % w.KernelWidth, reads);
            for (int c = 0; c < channels; c++)
                run.AddTo(image.Slice(c * w.PlaneSize, w.PlaneSize), Row(col, w, c * w.KernelArea + tap));
        }
    }

    // Row r of the columns: (channel·kh + i)·kw + j, one value per output position.
    private static Span<T> Row(Span<T> col, Window2d w, int r) => col.Slice(r * w.OutPlaneSize, w.OutPlaneSize);

    private static ReadOnlySpan<T> Row(ReadOnlySpan<T> col, Window2d w, int r) => col.Slice(r * w.OutPlaneSize, w.OutPlaneSize);

    // dst[q] = plane[q + shift] where output column q mod W reads the plane, else 0.
    private void Copy(Span<T> dst, ReadOnlySpan<T> plane)
    {
        ref T s = ref MemoryMarshal.GetReference(plane);
        ref T d = ref MemoryMarshal.GetReference(dst);
        ref T reads = ref MemoryMarshal.GetReference(_reads);
        // Zeros before and after the run, a whole vector at a time: what they write inside the run, the run rewrites.
        int lastVector = dst.Length - Lanes;
        for (int k = 0; k < _from; k += Lanes)
            Vector256<T>.Zero.StoreUnsafe(ref d, (nuint)Math.Min(k, lastVector));
        for (int k = _to; k < dst.Length; k += Lanes)
            Vector256<T>.Zero.StoreUnsafe(ref d, (nuint)Math.Min(k, lastVector));
        if (_to - _from < Lanes)
        {
            for (int q = _from; q < _to; q++)
                dst[q] = Reads(q % _width) ? plane[q + _shift] : T.Zero;
            return;
        }
        int at = _from, column = _from % _width;
        for (; at < _to - Lanes; at += Lanes, column = Wrap(column + Lanes))
            (Vector256.LoadUnsafe(ref s, (nuint)(at + _shift)) & Vector256.LoadUnsafe(ref reads, (nuint)column)).StoreUnsafe(ref d, (nuint)at);
        // The last vector ends at the run's end, overlapping the one before: it rewrites the same values.
        int back = at - (_to - Lanes);
        at -= back;
        column = column >= back ? column - back : column - back + _width;
        (Vector256.LoadUnsafe(ref s, (nuint)(at + _shift)) & Vector256.LoadUnsafe(ref reads, (nuint)column)).StoreUnsafe(ref d, (nuint)at);
    }

    // The adjoint: plane[q + shift] += col[q] where output column q mod W reads the plane.
    private void AddTo(Span<T> plane, ReadOnlySpan<T> col)
    {
        if (_to - _from < Lanes)
        {
            for (int q = _from; q < _to; q++)
                if (Reads(q % _width))
                    plane[q + _shift] += col[q];
            return;
        }
        ref T s = ref MemoryMarshal.GetReference(col);
        ref T d = ref MemoryMarshal.GetReference(plane);
        ref T reads = ref MemoryMarshal.GetReference(_reads);
        int at = _from, column = _from % _width;
        for (; at < _to - Lanes; at += Lanes, column = Wrap(column + Lanes))
            Add(ref d, ref s, at, Vector256.LoadUnsafe(ref reads, (nuint)column));
        // The last vector ends at the run's end; its first `back` lanes were added already.
        int back = at - (_to - Lanes);
        at -= back;
        column = column >= back ? column - back : column - back + _width;
        var fresh = Vector256.GreaterThanOrEqual(Vector256<T>.Indices, Vector256.Create(T.CreateTruncating(back)));
        Add(ref d, ref s, at, Vector256.LoadUnsafe(ref reads, (nuint)column) & fresh);
    }

    private void Add(ref T plane, ref T col, int at, Vector256<T> mask) =>
        (Vector256.LoadUnsafe(ref plane, (nuint)(at + _shift)) + (Vector256.LoadUnsafe(ref col, (nuint)at) & mask))
            .StoreUnsafe(ref plane, (nuint)(at + _shift));

    // A mask entry is all ones (a NaN as T) or zero: compare bits, not values.
    private bool Reads(int column) => !Vector256.CreateScalar(_reads[column]).Equals(Vector256<T>.Zero);

    private int Wrap(int column) => column >= _width ? column - _width : column;
}

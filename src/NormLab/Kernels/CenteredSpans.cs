using System.Numerics;

namespace NormLab.Kernels;

/// <summary>
/// Span loops over values centred on a mean held as a (hi, lo) pair (see <see cref="Centered.Split{T}"/>), for the
/// per-sample normalizations (<see cref="RowNormKernels"/>): (x − hi) − lo keeps the spread of data far from zero.
/// </summary>
internal static class CenteredSpans
{
    /// <summary>Σ (x − shift): with a shift near the data the float sum keeps the data's spread, not their offset.</summary>
    public static double SumShifted<T>(ReadOnlySpan<T> x, T shift) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        T sum = T.Zero;
        if (Vector.IsHardwareAccelerated && x.Length >= Vector<T>.Count)
        {
            var vs = new Vector<T>(shift);
            var acc = Vector<T>.Zero;
            for (; i <= x.Length - Vector<T>.Count; i += Vector<T>.Count)
                acc += new Vector<T>(x.Slice(i)) - vs;
            sum = Vector.Sum(acc);
        }
        for (; i < x.Length; i++)
            sum += x[i] - shift;
        return double.CreateChecked(sum);
    }

    /// <summary>Σ ((x − hi) − lo)².</summary>
    public static double SumSquares<T>(ReadOnlySpan<T> x, T hi, T lo) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        T sum = T.Zero;
        if (Vector.IsHardwareAccelerated && x.Length >= Vector<T>.Count)
        {
            var vh = new Vector<T>(hi);
            var vl = new Vector<T>(lo);
            var acc = Vector<T>.Zero;
            for (; i <= x.Length - Vector<T>.Count; i += Vector<T>.Count)
            {
                var d = (new Vector<T>(x.Slice(i)) - vh) - vl;
                acc += d * d;
            }
            sum = Vector.Sum(acc);
        }
        for (; i < x.Length; i++)
        {
            T d = (x[i] - hi) - lo;
            sum += d * d;
        }
        return double.CreateChecked(sum);
    }

    /// <summary>Σ dy·((x − hi) − lo).</summary>
    public static double SumProduct<T>(ReadOnlySpan<T> dy, ReadOnlySpan<T> x, T hi, T lo) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        T sum = T.Zero;
        if (Vector.IsHardwareAccelerated && x.Length >= Vector<T>.Count)
        {
            var vh = new Vector<T>(hi);
            var vl = new Vector<T>(lo);
            var acc = Vector<T>.Zero;
            for (; i <= x.Length - Vector<T>.Count; i += Vector<T>.Count)
                acc += new Vector<T>(dy.Slice(i)) * ((new Vector<T>(x.Slice(i)) - vh) - vl);
            sum = Vector.Sum(acc);
        }
        for (; i < x.Length; i++)
            sum += dy[i] * ((x[i] - hi) - lo);
        return double.CreateChecked(sum);
    }

    /// <summary>y = ((x − hi) − lo)·a + b.</summary>
    public static void ScaleShift<T>(Span<T> y, ReadOnlySpan<T> x, T hi, T lo, T a, T b) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && x.Length >= Vector<T>.Count)
        {
            var vh = new Vector<T>(hi);
            var vl = new Vector<T>(lo);
            var va = new Vector<T>(a);
            var vb = new Vector<T>(b);
            for (; i <= x.Length - Vector<T>.Count; i += Vector<T>.Count)
                (((new Vector<T>(x.Slice(i)) - vh) - vl) * va + vb).CopyTo(y.Slice(i));
        }
        for (; i < x.Length; i++)
            y[i] = ((x[i] - hi) - lo) * a + b;
    }
}

using System.Numerics;

namespace NormLab.Kernels;

/// <summary>
/// Vector loops over values centred on a mean that is held as a pair (hi, lo) with hi + lo ≈ mean in double precision.
/// <c>(x − hi) − lo</c> is exact to the last bit of the result when x sits near the mean (Sterbenz), so data far from
/// zero (1e4 ± 1e-2) keep their small spread; folding the mean into one float shift would cancel catastrophically.
/// </summary>
internal static class Centered
{
    /// <summary>Splits a double into a T pair whose sum is the double to about twice T's precision.</summary>
    public static (T Hi, T Lo) Split<T>(double value) where T : unmanaged, IFloatingPointIeee754<T>
    {
        T hi = T.CreateChecked(value);
        T lo = T.CreateChecked(value - double.CreateChecked(hi));
        return (hi, lo);
    }

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

    /// <summary>dx = scale·(dy − meanDy − ((x − hi) − lo)·k).</summary>
    public static void BackwardApply<T>(Span<T> dx, ReadOnlySpan<T> dy, ReadOnlySpan<T> x, T hi, T lo, T scale, T meanDy, T k)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && x.Length >= Vector<T>.Count)
        {
            var vh = new Vector<T>(hi);
            var vl = new Vector<T>(lo);
            var vs = new Vector<T>(scale);
            var vm = new Vector<T>(meanDy);
            var vk = new Vector<T>(k);
            for (; i <= x.Length - Vector<T>.Count; i += Vector<T>.Count)
            {
                var xc = (new Vector<T>(x.Slice(i)) - vh) - vl;
                (vs * (new Vector<T>(dy.Slice(i)) - vm - xc * vk)).CopyTo(dx.Slice(i));
            }
        }
        for (; i < x.Length; i++)
            dx[i] = scale * (dy[i] - meanDy - ((x[i] - hi) - lo) * k);
    }
}

using System.Numerics;
using System.Runtime.Intrinsics;

namespace NormLab.Kernels;

/// <summary>
/// BN kernels for the layout [n, c] (s = 1): n rows of c contiguous values, one per channel. Vectors run across channels:
/// unit u is the block of channels [u·w, u·w + w) (w = lanes of a vector) while whole blocks fit, then one unit per
/// leftover channel, computed in lane 0. The units depend on c only, never on the thread split.
/// </summary>
/// <remarks>
/// A unit's sums run down its n rows in a fixed order (rows round-robin over four accumulators, added up in a fixed
/// order), each row's value widened to double, so every channel's statistics are double sums as in the plane layout.
/// A unit's rows stay in L2 between its passes.
/// </remarks>
internal static unsafe class BatchNormRows
{
    /// <summary>The number of units of c channels.</summary>
    public static int Units<T>(int c) where T : unmanaged => c / Vector512<T>.Count + c % Vector512<T>.Count;

    // The first channel and the width (w or 1) of unit u.
    private static (int First, int Width) Unit<T>(int u, int c) where T : unmanaged
    {
        int w = Vector512<T>.Count, whole = c / w;
        return u < whole ? (u * w, w) : (whole * w + u - whole, 1);
    }

    public static void MomentsRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int u = first; u < end; u++)
        {
            var (c0, width) = Unit<T>(u, a.C);
            Moments(a.X + c0, a.N, a.C, width, a.Mean + c0, a.M2 + c0);
        }
    }

    /// <summary>Statistics, then y = γ·x̂ + β, unit by unit.</summary>
    public static void ForwardTrainingRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector512<T>.Count, n = a.N, c = a.C;
        T* hi = stackalloc T[w], alpha = stackalloc T[w], shift = stackalloc T[w];
        for (int u = first; u < end; u++)
        {
            var (c0, width) = Unit<T>(u, c);
            Moments(a.X + c0, n, c, width, a.Mean + c0, a.M2 + c0);
            for (int j = 0, ch = c0; j < width; j++, ch++)
            {
                a.InvStd[ch] = BatchNormFormulas.InvStd(a.M2[ch], n, a.Eps);
                (hi[j], alpha[j], shift[j]) = BatchNormFormulas.Affine<T>(a.Mean[ch], a.InvStd[ch], a.GammaOf(ch), a.BetaOf(ch));
            }
            var normalized = new Normalized<T>(Lanes.Load(hi, width), Lanes.Load(alpha, width), Lanes.Load(shift, width));
            Map(a.Y + c0, a.X + c0, a.X + c0, n, c, width, normalized);
        }
    }

    /// <summary>y = γ·x̂ + β over rows <c>[first, end)</c>, in memory order, with the constants of <see cref="BatchNormArgs{T}.Hi"/>.</summary>
    public static void NormalizeRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector512<T>.Count, c = a.C;
        for (int i = first; i < end; i++)
        {
            long row = (long)i * c;
            for (int c0 = 0, width; c0 < c; c0 += width)
            {
                width = c - c0 >= w ? w : 1;
                var normalized = new Normalized<T>(Lanes.Load(a.Hi + c0, width), Lanes.Load(a.Alpha + c0, width), Lanes.Load(a.Shift + c0, width));
                Lanes.Store(normalized.Of(Lanes.Load(a.X + row + c0, width), default), a.Y + row + c0, width);
            }
        }
    }

    /// <summary>One pass for Σdy and Σdy·(x − μ), one for dx; see <see cref="InputGradient{T}"/>.</summary>
    public static void BackwardBatchStatsRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector512<T>.Count, n = a.N, c = a.C;
        T* scale = stackalloc T[w], meanDy = stackalloc T[w], k = stackalloc T[w];
        double* sumDy = stackalloc double[w], sumDyXc = stackalloc double[w];
        for (int u = first; u < end; u++)
        {
            var (c0, width) = Unit<T>(u, c);
            var (hi, lo) = GradientSums(ref a, c0, width, sumDy, sumDyXc);
            for (int j = 0, ch = c0; j < width; j++, ch++)
                (scale[j], meanDy[j], k[j]) = BatchNormFormulas.Gradient<T>(a.InvStd[ch], a.GammaOf(ch), sumDy[j], sumDyXc[j], n);
            var gradient = new InputGradient<T>(hi, lo, Lanes.Load(scale, width), Lanes.Load(meanDy, width), Lanes.Load(k, width));
            Map(a.Y + c0, a.X + c0, a.DY + c0, n, c, width, gradient);
        }
    }

    /// <summary>dx = dy·γ·invStd, and the parameter gradients.</summary>
    public static void BackwardFixedStatsRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector512<T>.Count, c = a.C;
        T* scale = stackalloc T[w];
        double* sumDy = stackalloc double[w], sumDyXc = stackalloc double[w];
        for (int u = first; u < end; u++)
        {
            var (c0, width) = Unit<T>(u, c);
            if (a.DGamma != null || a.DBeta != null)
                GradientSums(ref a, c0, width, sumDy, sumDyXc);
            for (int j = 0, ch = c0; j < width; j++, ch++)
                scale[j] = T.CreateChecked(a.GammaOf(ch) * a.InvStd[ch]);
            Map(a.Y + c0, a.X + c0, a.DY + c0, a.N, c, width, new ScaledGradient<T>(Lanes.Load(scale, width)));
        }
    }

    // Mean and M2 of the unit whose first channel's column starts at x: two passes, as in the plane layout.
    private static void Moments<T>(T* x, int n, int c, int width, double* mean, double* m2) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector512<T>.Count;
        Span<double> sums = stackalloc double[w];
        T* hi = stackalloc T[w], lo = stackalloc T[w];
        Sum(x, n, c, width, new Deviation<T>(Lanes.Load(x, width))).CopyTo(sums);
        for (int j = 0; j < width; j++)
        {
            mean[j] = double.CreateChecked(x[j]) + sums[j] / n;
            (hi[j], lo[j]) = Centered.Split<T>(mean[j]);
        }
        Sum(x, n, c, width, new SquaredDeviation<T>(Lanes.Load(hi, width), Lanes.Load(lo, width))).CopyTo(sums);
        for (int j = 0; j < width; j++)
            m2[j] = sums[j];
    }

    // Σ f(x) down the n rows of a unit, per lane in double.
    private static DoubleLanes Sum<T, TTerm>(T* x, int n, int c, int width, TTerm f)
        where T : unmanaged where TTerm : struct, ITerm<T>
    {
        DoubleLanes a0 = default, a1 = default, a2 = default, a3 = default;
        int i = 0;
        for (; i <= n - 4; i += 4)
        {
            T* row = x + (long)i * c;
            a0.Add(f.Of(Lanes.Load(row, width)));
            a1.Add(f.Of(Lanes.Load(row + c, width)));
            a2.Add(f.Of(Lanes.Load(row + 2 * c, width)));
            a3.Add(f.Of(Lanes.Load(row + 3 * c, width)));
        }
        for (; i < n; i++)
            a0.Add(f.Of(Lanes.Load(x + (long)i * c, width)));
        return (a0 + a1) + (a2 + a3);
    }

    // Σdy and Σdy·(x − μ) of the unit at channel c0 into the per-lane buffers; accumulates dβ and dγ. Returns μ as (hi, lo).
    private static (Vector512<T> Hi, Vector512<T> Lo) GradientSums<T>(ref BatchNormArgs<T> a, int c0, int width, double* sumDy, double* sumDyXc)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector512<T>.Count, n = a.N, c = a.C;
        T* his = stackalloc T[w], los = stackalloc T[w];
        for (int j = 0; j < width; j++)
            (his[j], los[j]) = Centered.Split<T>(a.Mean[c0 + j]);
        var hi = Lanes.Load(his, width);
        var lo = Lanes.Load(los, width);
        T* x = a.X + c0, dy = a.DY + c0;
        DoubleLanes d0 = default, d1 = default, p0 = default, p1 = default;
        int i = 0;
        for (; i <= n - 2; i += 2)
        {
            long at = (long)i * c;
            var g0 = Lanes.Load(dy + at, width);
            var g1 = Lanes.Load(dy + at + c, width);
            d0.Add(g0);
            d1.Add(g1);
            p0.Add(g0 * ((Lanes.Load(x + at, width) - hi) - lo));
            p1.Add(g1 * ((Lanes.Load(x + at + c, width) - hi) - lo));
        }
        for (; i < n; i++)
        {
            long at = (long)i * c;
            var g = Lanes.Load(dy + at, width);
            d0.Add(g);
            p0.Add(g * ((Lanes.Load(x + at, width) - hi) - lo));
        }
        (d0 + d1).CopyTo(new Span<double>(sumDy, w));
        (p0 + p1).CopyTo(new Span<double>(sumDyXc, w));
        for (int j = 0; j < width; j++)
            a.AccumulateParameterGradients(c0 + j, sumDy[j], sumDyXc[j]);
        return (hi, lo);
    }

    // y = f(x, dy) down the n rows of a unit.
    private static void Map<T, TMap>(T* y, T* x, T* dy, int n, int c, int width, TMap f)
        where T : unmanaged where TMap : struct, IMap<T>
    {
        for (int i = 0; i < n; i++)
        {
            long at = (long)i * c;
            Lanes.Store(f.Of(Lanes.Load(x + at, width), Lanes.Load(dy + at, width)), y + at, width);
        }
    }
}

using System.Numerics;
using System.Runtime.Intrinsics;

namespace NormLab.Kernels;

/// <summary>
/// BN kernels for the layout [n, c, s] with s &gt; 1: a channel is n planes of s contiguous values. Training walks one
/// channel at a time, so its planes are still in L2 when the pass after the statistics reads them again; eval has no
/// reduction and walks memory in order, plane after plane.
/// </summary>
/// <remarks>
/// Each channel's sums run plane after plane in a fixed order (per lane in T within a plane, in double across planes), so
/// any split of the channels over threads gives the same bits.
/// </remarks>
internal static unsafe class BatchNormPlanes
{
    /// <summary>Mean and M2 = Σ(x − mean)² of channel <paramref name="ch"/>, in one pass around the channel's first value,
    /// and again around its mean where that pass lost bits (<see cref="BatchNormFormulas.FromDeviations"/>). A channel whose
    /// per-lane sums overflow T (squares of values near 1e18 over a large plane) is summed again in double
    /// (<see cref="WideMoments"/>).</summary>
    public static (double Mean, double M2) Moments<T>(T* x, int n, int c, int s, int ch) where T : unmanaged, IFloatingPointIeee754<T>
    {
        long stride = (long)c * s;
        T* first = x + (long)ch * s;
        T shift = *first;
        var shiftLanes = Vector256.Create(shift);
        var sum = new DoubleLanes();
        var squares = new DoubleLanes();
        for (int i = 0; i < n; i++)
        {
            var (planeSum, planeSquares) = Centered.Deviations(first + i * stride, s, shiftLanes);
            sum.Add(planeSum);
            squares.Add(planeSquares);
        }
        var (mean, m2, sumAgain) = BatchNormFormulas.FromDeviations(Lanes.ToDouble(shift), sum.Total, squares.Total, (double)n * s);
        if (sumAgain)
        {
            var (hi, lo) = Centered.Split<T>(mean);
            var squared = new SquaredDeviation<T>(Vector256.Create(hi), Vector256.Create(lo));
            var centered = new DoubleLanes();
            for (int i = 0; i < n; i++)
                centered.Add(Centered.Sum(first + i * stride, s, squared));
            m2 = centered.Total;
        }
        return WideMoments.Needed(mean, m2) ? WideMoments.Of(first, n, s, stride) : (mean, m2);
    }

    public static void MomentsRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int ch = first; ch < end; ch++)
            (a.Mean[ch], a.M2[ch]) = Moments(a.X, a.N, a.C, a.S, ch);
    }

    /// <summary>Statistics, then y = γ·x̂ + β, channel by channel.</summary>
    public static void ForwardTrainingRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = a.N, c = a.C, s = a.S;
        for (int ch = first; ch < end; ch++)
        {
            var (mean, m2) = Moments(a.X, n, c, s, ch);
            double invStd = BatchNormFormulas.InvStd(m2, (double)n * s, a.Eps);
            var (hi, alpha, shift) = BatchNormFormulas.Affine<T>(mean, invStd, a.GammaOf(ch), a.BetaOf(ch));
            MapChannel(ref a, ch, a.X, new Normalized<T>(Vector256.Create(hi), Vector256.Create(alpha), Vector256.Create(shift)));
            a.Mean[ch] = mean;
            a.M2[ch] = m2;
            a.InvStd[ch] = invStd;
        }
        if (a.Streaming)
            Centered.Fence();
    }

    /// <summary>y = γ·x̂ + β over planes <c>[first, end)</c> of the n·c, with the constants of <see cref="BatchNormArgs{T}.Hi"/>.</summary>
    public static void NormalizeRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (a.Streaming)
        {
            NormalizePlanes(ref a, first, end, streaming: true);
            Centered.Fence();
        }
        else
        {
            NormalizePlanes(ref a, first, end, streaming: false);
        }
    }

    // The plane loop of NormalizeRange, with the kind of store fixed for the whole loop (a branch per plane kept the
    // maps from inlining, which costs planes of 8×8 values a call each).
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void NormalizePlanes<T>(ref BatchNormArgs<T> a, int first, int end, bool streaming) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int c = a.C, s = a.S;
        for (int plane = first, ch = first % c; plane < end; plane++, ch = ch + 1 == c ? 0 : ch + 1)
        {
            var normalized = new Normalized<T>(Vector256.Create(a.Hi[ch]), Vector256.Create(a.Alpha[ch]), Vector256.Create(a.Shift[ch]));
            long at = (long)plane * s;
            if (streaming)
                Centered.MapStreaming(a.Y + at, a.X + at, a.X + at, s, normalized);
            else
                Centered.Map(a.Y + at, a.X + at, a.X + at, s, normalized);
        }
    }

    /// <summary>One pass for Σdy and Σdy·(x − μ), one for dx; see <see cref="InputGradient{T}"/>.</summary>
    public static void BackwardBatchStatsRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        double m = (double)a.N * a.S;
        for (int ch = first; ch < end; ch++)
        {
            var (hi, lo, sumDy, sumDyXc) = GradientSums(ref a, ch);
            MapInputGradient(ref a, ch, hi, lo, sumDy, sumDyXc, m);
        }
        if (a.Streaming)
            Centered.Fence();
    }

    /// <summary>Σdy and Σdy·(x − μ) into <see cref="BatchNormArgs{T}.SumDy"/>/<see cref="BatchNormArgs{T}.SumDyXc"/>, and the parameter gradients.</summary>
    public static void GradientSumsRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int ch = first; ch < end; ch++)
            (_, _, a.SumDy[ch], a.SumDyXc[ch]) = GradientSums(ref a, ch);
    }

    /// <summary>dx from the sums in <see cref="BatchNormArgs{T}.SumDy"/>/<see cref="BatchNormArgs{T}.SumDyXc"/> over <see cref="BatchNormArgs{T}.Count"/> values.</summary>
    public static void InputGradientRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int ch = first; ch < end; ch++)
        {
            var (hi, lo) = Centered.Split<T>(a.Mean[ch]);
            MapInputGradient(ref a, ch, Vector256.Create(hi), Vector256.Create(lo), a.SumDy[ch], a.SumDyXc[ch], a.Count);
        }
    }

    // dx = γ·invStd·(dy − Σdy/m − (x − μ)·k) over the planes of channel ch.
    private static void MapInputGradient<T>(ref BatchNormArgs<T> a, int ch, Vector256<T> hi, Vector256<T> lo, double sumDy, double sumDyXc, double m)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (scale, meanDy, k) = BatchNormFormulas.Gradient<T>(a.InvStd[ch], a.GammaOf(ch), sumDy, sumDyXc, m);
        MapChannel(ref a, ch, a.DY, new InputGradient<T>(hi, lo, Vector256.Create(scale), Vector256.Create(meanDy), Vector256.Create(k)));
    }

    // y = f(x, second) over the planes of channel ch, with non-temporal stores when the output streams; one loop per
    // kind of store, so that each inlines its map.
    private static void MapChannel<T, TMap>(ref BatchNormArgs<T> a, int ch, T* second, TMap f)
        where T : unmanaged, IFloatingPointIeee754<T> where TMap : struct, IMap<T>
    {
        int n = a.N, s = a.S;
        long stride = (long)a.C * s, at = (long)ch * s;
        if (a.Streaming)
            for (int i = 0; i < n; i++, at += stride)
                Centered.MapStreaming(a.Y + at, a.X + at, second + at, s, f);
        else
            for (int i = 0; i < n; i++, at += stride)
                Centered.Map(a.Y + at, a.X + at, second + at, s, f);
    }

    /// <summary>dx = dy·γ·invStd, and the parameter gradients.</summary>
    public static void BackwardFixedStatsRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int ch = first; ch < end; ch++)
        {
            if (a.DGamma != null || a.DBeta != null)
                GradientSums(ref a, ch);
            MapChannel(ref a, ch, a.DY, new ScaledGradient<T>(Vector256.Create(Lanes.FromDouble<T>(a.GammaOf(ch) * a.InvStd[ch]))));
        }
        if (a.Streaming)
            Centered.Fence();
    }

    // Σdy and Σdy·(x − μ) of channel ch; accumulates dβ += Σdy and dγ += Σdy·x̂.
    private static (Vector256<T> Hi, Vector256<T> Lo, double SumDy, double SumDyXc) GradientSums<T>(ref BatchNormArgs<T> a, int ch)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = a.N, c = a.C, s = a.S;
        var (hi, lo) = Centered.Split<T>(a.Mean[ch]);
        var vhi = Vector256.Create(hi);
        var vlo = Vector256.Create(lo);
        var sumDy = new DoubleLanes();
        var sumDyXc = new DoubleLanes();
        for (int i = 0; i < n; i++)
        {
            long at = ((long)i * c + ch) * s;
            var (dy, dyXc) = Centered.SumGradients(a.DY + at, a.X + at, s, vhi, vlo);
            sumDy.Add(dy);
            sumDyXc.Add(dyXc);
        }
        double totalDy = sumDy.Total, totalDyXc = sumDyXc.Total;
        a.AccumulateParameterGradients(ch, totalDy, totalDyXc);
        return (vhi, vlo, totalDy, totalDyXc);
    }
}

using System.Numerics;
using System.Runtime.Intrinsics;

namespace NormLab.Kernels;

/// <summary>
/// BN kernels for the layout [n, c, s] with s &gt; 1: a channel is n planes of s contiguous values. Training walks a group
/// of channels at a time (<see cref="GroupSize{T}"/>; one channel for planes of a page or more), so that the group's planes
/// are still in cache when the pass after the statistics reads them again; eval has no reduction and walks memory in
/// order, plane after plane.
/// </summary>
/// <remarks>
/// Each channel's sums run plane after plane in a fixed order (per lane in T within a plane, in double across planes), so
/// any split of the channels over threads gives the same bits.
/// </remarks>
internal static unsafe class BatchNormPlanes
{
    /// <summary>
    /// Channels walked together: enough that a sample's planes of the group are one run of at least <see cref="RunBytes"/>
    /// (the prefetchers follow a run, while a lone plane of a few hundred bytes starts on a new page every sample), few
    /// enough that the group stays in cache for the pass after its sums. Planes of a page or more go one channel at a time.
    /// </summary>
    public static int GroupSize<T>(int s) where T : unmanaged
    {
        long plane = (long)s * sizeof(T);
        return plane >= 4096 ? 1 : (int)Math.Min(MaxGroup, (RunBytes + plane - 1) / plane);
    }

    private const int RunBytes = 8192, MaxGroup = 64;

    // TwoSamples: the sums of a group read two samples' runs side by side (Centered.Deviations2, SumGradients2: the same
    // bits as one plane after the other). The hardware prefetchers stop at a page's end, and one sample at a time kept
    // one run in flight. At 2 threads, 256×64×32×32 (one channel a group): statistics 4.0–4.3 → 2.5–2.8 ms (a sequential
    // read of the 64 MiB takes 2.3), the backward's sums 5.4–5.6 → 4.2–4.5 ms; 128×256×14×14 (11 channels):
    // statistics 0.82–1.19 → 0.49–0.64 ms, the backward's sums 1.5–1.6 → 1.1–1.5 ms. Two planes side by side also
    // hide the add latency of short planes. Software prefetch of the next sample's run measured slower.

    /// <summary>Mean and M2 = Σ(x − mean)² of channels [c0, c1) into <see cref="BatchNormArgs{T}.Mean"/> and
    /// <see cref="BatchNormArgs{T}.M2"/>: per channel in one pass around its first value, and again around its mean where
    /// that pass lost bits (<see cref="BatchNormFormulas.FromDeviations"/>). A channel whose per-lane sums overflow T
    /// (squares of values near 1e18 over a large plane) is summed again in double (<see cref="WideMoments"/>). Each
    /// channel adds its planes in sample order, whatever the group, so the bits do not depend on the grouping.</summary>
    private static void GroupMoments<T>(ref BatchNormArgs<T> a, int c0, int c1) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = a.N, c = a.C, s = a.S, g = c1 - c0;
        Span<DoubleLanes> sums = stackalloc DoubleLanes[g], squares = stackalloc DoubleLanes[g];
        Span<T> shifts = stackalloc T[g];
        sums.Clear();
        squares.Clear();
        for (int k = 0; k < g; k++)
            shifts[k] = a.X[(long)(c0 + k) * s];
        // Two samples at a time (see TwoSamples), each channel adding its planes in sample order.
        long stride = (long)c * s;
        int i = 0;
        for (; i + 1 < n; i += 2)
        {
            T* plane = a.X + i * stride + (long)c0 * s;
            for (int k = 0; k < g; k++, plane += s)
            {
                var shift = Vector256.Create(shifts[k]);
                var (first, second) = Centered.Deviations2(plane, plane + stride, s, shift, shift);
                sums[k].Add(first.Sum);
                squares[k].Add(first.Squares);
                sums[k].Add(second.Sum);
                squares[k].Add(second.Squares);
            }
        }
        if (i < n) // an odd sample left
            for (int k = 0; k < g; k++)
            {
                var (planeSum, planeSquares) = Centered.Deviations(a.X + i * stride + (long)(c0 + k) * s, s, Vector256.Create(shifts[k]));
                sums[k].Add(planeSum);
                squares[k].Add(planeSquares);
            }
        for (int k = 0; k < g; k++)
            (a.Mean[c0 + k], a.M2[c0 + k]) = Finish(a.X, n, c, s, c0 + k, shifts[k], sums[k].Total, squares[k].Total);
    }

    // A channel's moments from its sums of deviations around `shift`.
    private static (double Mean, double M2) Finish<T>(T* x, int n, int c, int s, int ch, T shift, double sum, double squares)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        long stride = (long)c * s;
        T* first = x + (long)ch * s;
        var (mean, m2, sumAgain) = BatchNormFormulas.FromDeviations(Lanes.ToDouble(shift), sum, squares, (double)n * s);
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
        for (int c0 = first, g = GroupSize<T>(a.S); c0 < end; c0 += g)
            GroupMoments(ref a, c0, Math.Min(end, c0 + g));
    }

    /// <summary>Statistics, then y = γ·x̂ + β (max(γ·x̂ + β, 0) with a fused ReLU), a group of channels at a time
    /// (<see cref="GroupSize{T}"/>).</summary>
    public static void ForwardTrainingRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (a.Relu)
            ForwardTrainingRange<T, Rectified<T, Normalized<T>>>(ref a, first, end);
        else
            ForwardTrainingRange<T, Normalized<T>>(ref a, first, end);
    }

    private static void ForwardTrainingRange<T, TMap>(ref BatchNormArgs<T> a, int first, int end)
        where T : unmanaged, IFloatingPointIeee754<T> where TMap : unmanaged, IMap<T>, IFromAffine<T, TMap>
    {
        int n = a.N, s = a.S, g = GroupSize<T>(s);
        Span<TMap> maps = stackalloc TMap[g];
        for (int c0 = first; c0 < end; c0 += g)
        {
            int c1 = Math.Min(end, c0 + g);
            GroupMoments(ref a, c0, c1);
            for (int ch = c0; ch < c1; ch++)
            {
                a.InvStd[ch] = BatchNormFormulas.InvStd(a.M2[ch], (double)n * s, a.Eps);
                var (hi, alpha, shift) = BatchNormFormulas.Affine<T>(a.Mean[ch], a.InvStd[ch], a.GammaOf(ch), a.BetaOf(ch));
                maps[ch - c0] = TMap.Create(hi, alpha, shift);
            }
            MapGroup(ref a, c0, c1, a.X, (ReadOnlySpan<TMap>)maps.Slice(0, c1 - c0));
        }
        if (a.Streaming)
            Centered.Fence();
    }

    /// <summary>y = γ·x̂ + β (max(γ·x̂ + β, 0) with a fused ReLU) over planes <c>[first, end)</c> of the n·c, with the constants
    /// of <see cref="BatchNormArgs{T}.Hi"/>.</summary>
    public static void NormalizeRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (a.Relu)
            NormalizeRange<T, Rectified<T, Normalized<T>>>(ref a, first, end);
        else
            NormalizeRange<T, Normalized<T>>(ref a, first, end);
    }

    private static void NormalizeRange<T, TMap>(ref BatchNormArgs<T> a, int first, int end)
        where T : unmanaged, IFloatingPointIeee754<T> where TMap : struct, IMap<T>, IFromAffine<T, TMap>
    {
        int c = a.C, s = a.S;
        if (a.Streaming)
        {
            // The planes of a range are one run of memory: streamed whole, across the planes' boundaries.
            long at = (long)first * s;
            Centered.MapStreaming<T, TMap, ChannelMaps<T, TMap>>(a.Y + at, a.X + at, a.X + at, end - first, s,
                new ChannelMaps<T, TMap>(a.Hi, a.Alpha, a.Shift, c, first));
            Centered.Fence();
            return;
        }
        for (int plane = first, ch = first % c; plane < end; plane++, ch = ch + 1 == c ? 0 : ch + 1)
        {
            long at = (long)plane * s;
            Centered.Map(a.Y + at, a.X + at, a.X + at, s, TMap.Create(a.Hi[ch], a.Alpha[ch], a.Shift[ch]));
        }
    }

    // Plane k of a run from plane `first` on normalizes with the constants of its channel.
    private readonly struct ChannelMaps<T, TMap>(T* hi, T* alpha, T* shift, int c, int first) : IPlaneMaps<TMap>
        where T : unmanaged, IFloatingPointIeee754<T> where TMap : struct, IFromAffine<T, TMap>
    {
        public TMap Plane(int k)
        {
            int ch = (first + k) % c;
            return TMap.Create(hi[ch], alpha[ch], shift[ch]);
        }
    }

    /// <summary>One pass for Σdy and Σdy·(x − μ), one for dx (see <see cref="InputGradient{T}"/>), a group of channels at a
    /// time (<see cref="GroupSize{T}"/>).</summary>
    public static void BackwardBatchStatsRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int g = GroupSize<T>(a.S);
        Span<double> sumDy = stackalloc double[g], sumDyXc = stackalloc double[g];
        for (int c0 = first; c0 < end; c0 += g)
        {
            int c1 = Math.Min(end, c0 + g);
            GroupGradientSums(ref a, c0, c1, sumDy, sumDyXc);
            MapInputGradients(ref a, c0, c1, sumDy, sumDyXc, (double)a.N * a.S);
        }
        if (a.Streaming)
            Centered.Fence();
    }

    /// <summary>Σdy and Σdy·(x − μ) into <see cref="BatchNormArgs{T}.SumDy"/>/<see cref="BatchNormArgs{T}.SumDyXc"/>, and the parameter gradients.</summary>
    public static void GradientSumsRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int c0 = first, g = GroupSize<T>(a.S); c0 < end; c0 += g)
        {
            int c1 = Math.Min(end, c0 + g);
            GroupGradientSums(ref a, c0, c1, new Span<double>(a.SumDy + c0, c1 - c0), new Span<double>(a.SumDyXc + c0, c1 - c0));
        }
    }

    /// <summary>dx from the sums in <see cref="BatchNormArgs{T}.SumDy"/>/<see cref="BatchNormArgs{T}.SumDyXc"/> over <see cref="BatchNormArgs{T}.Count"/> values.</summary>
    public static void InputGradientRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int c0 = first, g = GroupSize<T>(a.S); c0 < end; c0 += g)
        {
            int c1 = Math.Min(end, c0 + g);
            MapInputGradients(ref a, c0, c1, new Span<double>(a.SumDy + c0, c1 - c0), new Span<double>(a.SumDyXc + c0, c1 - c0), a.Count);
        }
    }

    /// <summary>dx = dy·γ·invStd, and the parameter gradients.</summary>
    public static void BackwardFixedStatsRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int g = GroupSize<T>(a.S);
        Span<double> sumDy = stackalloc double[g], sumDyXc = stackalloc double[g];
        Span<ScaledGradient<T>> maps = stackalloc ScaledGradient<T>[g];
        for (int c0 = first; c0 < end; c0 += g)
        {
            int c1 = Math.Min(end, c0 + g);
            if (a.DGamma != null || a.DBeta != null)
                GroupGradientSums(ref a, c0, c1, sumDy, sumDyXc);
            for (int ch = c0; ch < c1; ch++)
                maps[ch - c0] = new ScaledGradient<T>(Vector256.Create(Lanes.FromDouble<T>(a.GammaOf(ch) * a.InvStd[ch])));
            MapGradients(ref a, c0, c1, (ReadOnlySpan<ScaledGradient<T>>)maps.Slice(0, c1 - c0));
        }
        if (a.Streaming)
            Centered.Fence();
    }

    // dx = γ·invStd·(dy − Σdy/m − (x − μ)·k) over the planes of channels [c0, c1), from their sums over m values.
    private static void MapInputGradients<T>(ref BatchNormArgs<T> a, int c0, int c1, ReadOnlySpan<double> sumDy, ReadOnlySpan<double> sumDyXc,
        double m) where T : unmanaged, IFloatingPointIeee754<T>
    {
        Span<InputGradient<T>> maps = stackalloc InputGradient<T>[c1 - c0];
        for (int ch = c0; ch < c1; ch++)
        {
            var (hi, lo) = Centered.Split<T>(a.Mean[ch]);
            var (scale, meanDy, k) = BatchNormFormulas.Gradient<T>(a.InvStd[ch], a.GammaOf(ch), sumDy[ch - c0], sumDyXc[ch - c0], m);
            maps[ch - c0] = new InputGradient<T>(Vector256.Create(hi), Vector256.Create(lo), Vector256.Create(scale),
                Vector256.Create(meanDy), Vector256.Create(k));
        }
        MapGradients(ref a, c0, c1, (ReadOnlySpan<InputGradient<T>>)maps);
    }

    // A gradient map over the planes of channels [c0, c1), fed dy through the gate of a fused ReLU if there is one.
    private static void MapGradients<T, TMap>(ref BatchNormArgs<T> a, int c0, int c1, ReadOnlySpan<TMap> maps)
        where T : unmanaged, IFloatingPointIeee754<T> where TMap : unmanaged, IMap<T>
    {
        if (!a.Relu)
        {
            MapGroup(ref a, c0, c1, a.DY, maps);
            return;
        }
        Span<Gated<T, TMap>> gated = stackalloc Gated<T, TMap>[maps.Length];
        for (int k = 0; k < maps.Length; k++)
            gated[k] = new(a.GateOf<ReluGate<T>>(c0 + k), maps[k]);
        MapGroup(ref a, c0, c1, a.DY, (ReadOnlySpan<Gated<T, TMap>>)gated);
    }

    // Σdy and Σdy·(x − μ) of channels [c0, c1), each adding its planes in sample order; accumulates dβ += Σdy and dγ += Σdy·x̂.
    private static void GroupGradientSums<T>(ref BatchNormArgs<T> a, int c0, int c1, Span<double> sumDy, Span<double> sumDyXc)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (a.Relu)
            GroupGradientSums<T, ReluGate<T>>(ref a, c0, c1, sumDy, sumDyXc);
        else
            GroupGradientSums<T, Open<T>>(ref a, c0, c1, sumDy, sumDyXc);
    }

    private static void GroupGradientSums<T, TGate>(ref BatchNormArgs<T> a, int c0, int c1, Span<double> sumDy, Span<double> sumDyXc)
        where T : unmanaged, IFloatingPointIeee754<T> where TGate : unmanaged, IGate<T, TGate>
    {
        int n = a.N, c = a.C, s = a.S, g = c1 - c0;
        Span<TGate> gates = stackalloc TGate[g];
        for (int k = 0; k < g; k++)
            gates[k] = a.GateOf<TGate>(c0 + k);
        Span<DoubleLanes> dySums = stackalloc DoubleLanes[g], dyXcSums = stackalloc DoubleLanes[g];
        Span<T> his = stackalloc T[g], los = stackalloc T[g];
        dySums.Clear();
        dyXcSums.Clear();
        for (int k = 0; k < g; k++)
            (his[k], los[k]) = Centered.Split<T>(a.Mean[c0 + k]);
        // As in GroupMoments: two samples at a time.
        long stride = (long)c * s;
        int i = 0;
        for (; i + 1 < n; i += 2)
        {
            long at = i * stride + (long)c0 * s;
            for (int k = 0; k < g; k++, at += s)
            {
                var (hi, lo) = (Vector256.Create(his[k]), Vector256.Create(los[k]));
                var (first, second) = Centered.SumGradients2(a.DY + at, a.X + at, a.DY + at + stride, a.X + at + stride, s, hi, lo, hi, lo,
                    gates[k], gates[k]);
                dySums[k].Add(first.SumDy);
                dyXcSums[k].Add(first.SumDyXc);
                dySums[k].Add(second.SumDy);
                dyXcSums[k].Add(second.SumDyXc);
            }
        }
        if (i < n)
            for (int k = 0; k < g; k++)
            {
                long at = i * stride + (long)(c0 + k) * s;
                var (dy, dyXc) = Centered.SumGradients(a.DY + at, a.X + at, s, Vector256.Create(his[k]), Vector256.Create(los[k]), gates[k]);
                dySums[k].Add(dy);
                dyXcSums[k].Add(dyXc);
            }
        for (int k = 0; k < g; k++)
        {
            (sumDy[k], sumDyXc[k]) = (dySums[k].Total, dyXcSums[k].Total);
            a.AccumulateParameterGradients(c0 + k, sumDy[k], sumDyXc[k]);
        }
    }

    // y = f_k(x, second) over the planes of channels [c0, c1), sample after sample (one run of memory per sample), with
    // non-temporal stores when the output streams.
    private static void MapGroup<T, TMap>(ref BatchNormArgs<T> a, int c0, int c1, T* second, ReadOnlySpan<TMap> maps)
        where T : unmanaged, IFloatingPointIeee754<T> where TMap : struct, IMap<T>
    {
        int n = a.N, s = a.S, g = c1 - c0;
        long stride = (long)a.C * s;
        for (int i = 0; i < n; i++)
        {
            long at = i * stride + (long)c0 * s;
            if (a.Streaming)
                Centered.MapStreaming<T, TMap, PlaneMaps<TMap>>(a.Y + at, a.X + at, second + at, g, s, new PlaneMaps<TMap>(maps));
            else
                for (int k = 0; k < g; k++, at += s)
                    Centered.Map(a.Y + at, a.X + at, second + at, s, maps[k]);
        }
    }
}

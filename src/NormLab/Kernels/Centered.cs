using System.Numerics;
using System.Runtime.Intrinsics;

namespace NormLab.Kernels;

/// <summary>
/// Vector loops over one plane (s contiguous values of one channel), around a mean held as a pair (hi, lo) with
/// hi + lo ≈ mean in double precision. <c>(x − hi) − lo</c> is exact to the last bit of the result when x sits near the
/// mean (Sterbenz), so data far from zero (1e4 ± 1e-2) keep their small spread; folding the mean into one float shift
/// would cancel catastrophically.
/// </summary>
/// <remarks>
/// Sums come back per lane, in T: the caller adds planes up in double (<see cref="DoubleLanes"/>), so a sum over a plane
/// costs no horizontal reduction (planes of 8×8 values are common). Tails are whole vectors ending at the plane's end,
/// masked in sums and written twice with the same values in maps (outputs never overlap inputs).
/// </remarks>
internal static unsafe class Centered
{
    /// <summary>Splits a double into a T pair whose sum is the double to about twice T's precision.</summary>
    public static (T Hi, T Lo) Split<T>(double value) where T : unmanaged, IFloatingPointIeee754<T>
    {
        T hi = Lanes.FromDouble<T>(value);
        T lo = Lanes.FromDouble<T>(value - Lanes.ToDouble(hi));
        return (hi, lo);
    }

    /// <summary>Σ f(x) over <paramref name="s"/> values, per lane; four accumulators hide the add latency.</summary>
    public static Vector256<T> Sum<T, TTerm>(T* x, int s, TTerm f)
        where T : unmanaged, IFloatingPointIeee754<T> where TTerm : struct, ITerm<T>
    {
        int w = Vector256<T>.Count;
        if (s < w)
            return f.Of(Lanes.LoadPartial(x, s)) & ~Lanes.Last<T>(w - s);
        Vector256<T> a0 = default, a1 = default, a2 = default, a3 = default;
        int i = 0;
        for (; i <= s - 4 * w; i += 4 * w)
        {
            a0 += f.Of(Vector256.Load(x + i));
            a1 += f.Of(Vector256.Load(x + i + w));
            a2 += f.Of(Vector256.Load(x + i + 2 * w));
            a3 += f.Of(Vector256.Load(x + i + 3 * w));
        }
        for (; i <= s - w; i += w)
            a0 += f.Of(Vector256.Load(x + i));
        if (i < s)
            a1 += f.Of(Vector256.Load(x + s - w)) & Lanes.Last<T>(s - i);
        return (a0 + a1) + (a2 + a3);
    }

    /// <summary>Σ (x − shift) and Σ (x − shift)² over <paramref name="s"/> values, per lane, in one pass.</summary>
    public static (Vector256<T> Sum, Vector256<T> Squares) Deviations<T>(T* x, int s, Vector256<T> shift)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector256<T>.Count;
        if (s < w)
        {
            var d = (Lanes.LoadPartial(x, s) - shift) & ~Lanes.Last<T>(w - s);
            return (d, d * d);
        }
        Vector256<T> s0 = default, s1 = default, q0 = default, q1 = default;
        int i = 0;
        for (; i <= s - 2 * w; i += 2 * w)
        {
            var d0 = Vector256.Load(x + i) - shift;
            var d1 = Vector256.Load(x + i + w) - shift;
            s0 += d0;
            s1 += d1;
            q0 = Lanes.Fma(d0, d0, q0);
            q1 = Lanes.Fma(d1, d1, q1);
        }
        for (; i <= s - w; i += w)
        {
            var d = Vector256.Load(x + i) - shift;
            s0 += d;
            q0 = Lanes.Fma(d, d, q0);
        }
        if (i < s)
        {
            var d = (Vector256.Load(x + s - w) - shift) & Lanes.Last<T>(s - i);
            s1 += d;
            q1 = Lanes.Fma(d, d, q1);
        }
        return (s0 + s1, q0 + q1);
    }

    /// <summary><see cref="Deviations{T}"/> of two planes at once, each with the same operations in the same order (the
    /// same bits): on planes of a few vectors one plane's add chains are too short to hide their latency.</summary>
    public static ((Vector256<T> Sum, Vector256<T> Squares) First, (Vector256<T> Sum, Vector256<T> Squares) Second) Deviations2<T>(
        T* x0, T* x1, int s, Vector256<T> shift0, Vector256<T> shift1) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector256<T>.Count;
        if (s < 2 * w || s % (2 * w) != 0)
            return (Deviations(x0, s, shift0), Deviations(x1, s, shift1));
        Vector256<T> s0 = default, s1 = default, q0 = default, q1 = default;
        Vector256<T> t0 = default, t1 = default, r0 = default, r1 = default;
        for (int i = 0; i < s; i += 2 * w)
        {
            var d0 = Vector256.Load(x0 + i) - shift0;
            var d1 = Vector256.Load(x0 + i + w) - shift0;
            var e0 = Vector256.Load(x1 + i) - shift1;
            var e1 = Vector256.Load(x1 + i + w) - shift1;
            s0 += d0;
            s1 += d1;
            t0 += e0;
            t1 += e1;
            q0 = Lanes.Fma(d0, d0, q0);
            q1 = Lanes.Fma(d1, d1, q1);
            r0 = Lanes.Fma(e0, e0, r0);
            r1 = Lanes.Fma(e1, e1, r1);
        }
        return ((s0 + s1, q0 + q1), (t0 + t1, r0 + r1));
    }

    /// <summary>Σ dy and Σ dy·((x − hi) − lo) over <paramref name="s"/> values, per lane, in one pass over both inputs.</summary>
    public static (Vector256<T> SumDy, Vector256<T> SumDyXc) SumGradients<T>(T* dy, T* x, int s, Vector256<T> hi, Vector256<T> lo)
        where T : unmanaged, IFloatingPointIeee754<T> => SumGradients(dy, x, s, hi, lo, default(Open<T>));

    /// <summary><see cref="SumGradients{T}(T*, T*, int, Vector256{T}, Vector256{T})"/> of the gradient the gate lets through.</summary>
    public static (Vector256<T> SumDy, Vector256<T> SumDyXc) SumGradients<T, TGate>(T* dy, T* x, int s, Vector256<T> hi, Vector256<T> lo, TGate gate)
        where T : unmanaged, IFloatingPointIeee754<T> where TGate : struct, IGate<T, TGate>
    {
        int w = Vector256<T>.Count;
        if (s < w)
        {
            var keep = ~Lanes.Last<T>(w - s);
            var xs = Lanes.LoadPartial(x, s);
            var g = gate.Of(Lanes.LoadPartial(dy, s), xs);
            return (g & keep, (g * ((xs - hi) - lo)) & keep);
        }
        Vector256<T> d0 = default, d1 = default, p0 = default, p1 = default;
        int i = 0;
        for (; i <= s - 2 * w; i += 2 * w)
        {
            var (x0, x1) = (Vector256.Load(x + i), Vector256.Load(x + i + w));
            var g0 = gate.Of(Vector256.Load(dy + i), x0);
            var g1 = gate.Of(Vector256.Load(dy + i + w), x1);
            d0 += g0;
            d1 += g1;
            p0 += g0 * ((x0 - hi) - lo);
            p1 += g1 * ((x1 - hi) - lo);
        }
        for (; i <= s - w; i += w)
        {
            var xi = Vector256.Load(x + i);
            var g = gate.Of(Vector256.Load(dy + i), xi);
            d0 += g;
            p0 += g * ((xi - hi) - lo);
        }
        if (i < s)
        {
            var keep = Lanes.Last<T>(s - i);
            var xi = Vector256.Load(x + s - w);
            var g = gate.Of(Vector256.Load(dy + s - w), xi) & keep;
            d1 += g;
            p1 += g * ((xi - hi) - lo);
        }
        return (d0 + d1, p0 + p1);
    }

    /// <summary><see cref="SumGradients{T}"/> of two planes at once, each with the same operations in the same order (the
    /// same bits), for the latency of short planes as in <see cref="Deviations2{T}"/>.</summary>
    public static ((Vector256<T> SumDy, Vector256<T> SumDyXc) First, (Vector256<T> SumDy, Vector256<T> SumDyXc) Second) SumGradients2<T, TGate>(
        T* dy0, T* x0, T* dy1, T* x1, int s, Vector256<T> hi0, Vector256<T> lo0, Vector256<T> hi1, Vector256<T> lo1, TGate gate0, TGate gate1)
        where T : unmanaged, IFloatingPointIeee754<T> where TGate : struct, IGate<T, TGate>
    {
        int w = Vector256<T>.Count;
        if (s < 2 * w || s % (2 * w) != 0)
            return (SumGradients(dy0, x0, s, hi0, lo0, gate0), SumGradients(dy1, x1, s, hi1, lo1, gate1));
        Vector256<T> d0 = default, d1 = default, p0 = default, p1 = default;
        Vector256<T> e0 = default, e1 = default, r0 = default, r1 = default;
        for (int i = 0; i < s; i += 2 * w)
        {
            var (x00, x01, x10, x11) = (Vector256.Load(x0 + i), Vector256.Load(x0 + i + w), Vector256.Load(x1 + i), Vector256.Load(x1 + i + w));
            var g0 = gate0.Of(Vector256.Load(dy0 + i), x00);
            var g1 = gate0.Of(Vector256.Load(dy0 + i + w), x01);
            var h0 = gate1.Of(Vector256.Load(dy1 + i), x10);
            var h1 = gate1.Of(Vector256.Load(dy1 + i + w), x11);
            d0 += g0;
            d1 += g1;
            e0 += h0;
            e1 += h1;
            p0 += g0 * ((x00 - hi0) - lo0);
            p1 += g1 * ((x01 - hi0) - lo0);
            r0 += h0 * ((x10 - hi1) - lo1);
            r1 += h1 * ((x11 - hi1) - lo1);
        }
        return ((d0 + d1, p0 + p1), (e0 + e1, r0 + r1));
    }

    /// <summary>
    /// y = f_k(x, dy) over a run of <paramref name="planes"/> contiguous planes of <paramref name="s"/> values, plane k
    /// mapped by <c>maps.Plane(k)</c>, with non-temporal stores for every whole 64-byte line of y and plain stores for the
    /// partial lines at the run's two ends: past the last-level cache a plain store first reads its line (a third of the
    /// traffic of a map), and a line written partly by each kind is flushed half-full, which is why the run is not cut at
    /// plane boundaries: a vector that straddles two planes blends the two maps. Planes of at least a line
    /// (<see cref="StreamsPlanes{T}"/>), so that a vector straddles at most one boundary and each end lies in one plane. The
    /// caller fences after its last run (<see cref="Fence"/>).
    /// </summary>
    public static void MapStreaming<T, TMap, TMaps>(T* y, T* x, T* dy, int planes, int s, TMaps maps)
        where T : unmanaged, IFloatingPointIeee754<T> where TMap : struct, IMap<T> where TMaps : IPlaneMaps<TMap>, allows ref struct
    {
        if (planes == 1)
        {
            MapPlaneStreaming(y, x, dy, s, maps.Plane(0));
            return;
        }
        int w = Vector256<T>.Count, perLine = 64 / sizeof(T);
        long count = (long)planes * s;
        int head = (int)((64 - ((nuint)y & 63)) & 63) / sizeof(T);
        if (count - head < 2 * perLine)
        {
            for (int k = 0; k < planes; k++)
                Map(y + (long)k * s, x + (long)k * s, dy + (long)k * s, s, maps.Plane(k));
            return;
        }
        long end = head + (count - head) / perLine * perLine;
        var f = maps.Plane(0);
        MapPart(y, x, dy, 0, head, f);
        int plane = 0;
        long i = head, planeEnd = s;
        while (i < end)
        {
            // The vectors wholly inside this plane, then the one that straddles its end, if any.
            i = MapAligned(y, x, dy, i, Math.Min(planeEnd, end), f);
            if (i >= end)
                break;
            var next = maps.Plane(++plane);
            if (i < planeEnd)
            {
                var (xi, dyi) = (Vector256.Load(x + i), Vector256.Load(dy + i));
                var fromNext = Lanes.Last<T>(w - (int)(planeEnd - i));
                Vector256.ConditionalSelect(fromNext, next.Of(xi, dyi), f.Of(xi, dyi)).StoreAlignedNonTemporal(y + i);
                i += w;
            }
            f = next;
            planeEnd += s;
        }
        long last = (long)(planes - 1) * s;
        MapPart(y + last, x + last, dy + last, (int)(end - last), s, maps.Plane(planes - 1));
    }

    // MapStreaming of a single plane, the case of planes of a page or more (one channel per group). A short method of its
    // own: the run's (a larger frame, set up per call) made 256×64×32×32 training 25–40 % slower.
    private static void MapPlaneStreaming<T, TMap>(T* y, T* x, T* dy, int s, TMap f)
        where T : unmanaged where TMap : struct, IMap<T>
    {
        int perLine = 64 / sizeof(T);
        int head = (int)((64 - ((nuint)y & 63)) & 63) / sizeof(T);
        if (s - head < 2 * perLine)
        {
            Map(y, x, dy, s, f);
            return;
        }
        int end = head + (s - head) / perLine * perLine;
        MapPart(y, x, dy, 0, head, f);
        MapAligned(y, x, dy, head, end, f);
        MapPart(y, x, dy, end, s, f);
    }

    // y = f(x, dy) with non-temporal stores for the whole vectors from 32-byte aligned y + i to at most `to`; returns where
    // it stopped. A method of its own so that the map's constants stay in registers (in the loop of MapStreaming, where
    // the map changes from plane to plane, they went through the stack for every vector).
    private static long MapAligned<T, TMap>(T* y, T* x, T* dy, long i, long to, TMap f)
        where T : unmanaged where TMap : struct, IMap<T>
    {
        int w = Vector256<T>.Count;
        for (; i <= to - w; i += w)
            f.Of(Vector256.Load(x + i), Vector256.Load(dy + i)).StoreAlignedNonTemporal(y + i);
        return i;
    }

    /// <summary>Whether planes of <paramref name="s"/> values can stream (<see cref="MapStreaming{T, TMap, TMaps}"/>): at least a line each.</summary>
    public static bool StreamsPlanes<T>(int s) where T : unmanaged => (long)s * sizeof(T) >= 64;

    // y = f(x, dy) over [from, to), shorter than a line, with plain stores that stay inside it.
    private static void MapPart<T, TMap>(T* y, T* x, T* dy, int from, int to, TMap f)
        where T : unmanaged where TMap : struct, IMap<T>
    {
        int w = Vector256<T>.Count, i = from;
        for (; i <= to - w; i += w)
            f.Of(Vector256.Load(x + i), Vector256.Load(dy + i)).Store(y + i);
        if (i < to)
            Lanes.StorePartial(f.Of(Lanes.LoadPartial(x + i, to - i), Lanes.LoadPartial(dy + i, to - i)), y + i, to - i);
    }

    /// <summary>Orders the non-temporal stores of <see cref="MapStreaming{T, TMap, TMaps}"/> before whatever the thread does next.</summary>
    public static void Fence()
    {
        if (System.Runtime.Intrinsics.X86.Sse.IsSupported)
            System.Runtime.Intrinsics.X86.Sse.StoreFence();
    }

    /// <summary>y = f(x, dy) over <paramref name="s"/> values.</summary>
    public static void Map<T, TMap>(T* y, T* x, T* dy, int s, TMap f)
        where T : unmanaged where TMap : struct, IMap<T>
    {
        int w = Vector256<T>.Count;
        if (s < w)
        {
            Lanes.StorePartial(f.Of(Lanes.LoadPartial(x, s), Lanes.LoadPartial(dy, s)), y, s);
            return;
        }
        int i = 0;
        for (; i <= s - w; i += w)
            f.Of(Vector256.Load(x + i), Vector256.Load(dy + i)).Store(y + i);
        if (i < s)
            f.Of(Vector256.Load(x + s - w), Vector256.Load(dy + s - w)).Store(y + s - w);
    }
}

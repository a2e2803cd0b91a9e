using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NormLab.Kernels;

/// <summary>
/// Bulk random floats for per-step noise, eight at a time from <see cref="LaneRng"/>: uniform, and standard normal by the
/// basic Box–Muller transform, z₁ = √(−2 ln u₁)·cos 2πu₂, z₂ = √(−2 ln u₁)·sin 2πu₂. The scalar polar method cost
/// several times the BatchNorm it perturbs, and TensorPrimitives' float Log and SinCos were not much faster here, so ln
/// and sin/cos are Cephes' single-precision polynomials (relative error ~1e-7), written once on <see cref="Vector256{T}"/>:
/// without AVX the same operations run in software and give the same bits. The values are fixed by the generator's
/// state, which advances by four words per call.
/// </summary>
public static class NoiseFill
{
    private static readonly int Width = Vector256<float>.Count;

    /// <summary>Fills <paramref name="destination"/> with values uniform in [0, 1) (23 random bits each).</summary>
    public static void Uniform(Rng rng, Span<float> destination)
    {
        var (s0, s1, s2, s3) = Seed(rng);
        int i = 0;
        for (; i + Width <= destination.Length; i += Width)
            (LaneRng.NextOneToTwo(ref s0, ref s1, ref s2, ref s3) - Vector256<float>.One).CopyTo(destination[i..]);
        Span<float> tail = stackalloc float[Width];
        (LaneRng.NextOneToTwo(ref s0, ref s1, ref s2, ref s3) - Vector256<float>.One).CopyTo(tail);
        tail[..(destination.Length - i)].CopyTo(destination[i..]);
    }

    /// <summary>Fills <paramref name="destination"/> with standard normal values.</summary>
    public static void Gaussian(Rng rng, Span<float> destination)
    {
        var (s0, s1, s2, s3) = Seed(rng);
        Span<float> tail = stackalloc float[2 * Width];
        for (int i = 0; i < destination.Length; i += 2 * Width)
        {
            var two = Vector256.Create(2f);
            var u1 = two - LaneRng.NextOneToTwo(ref s0, ref s1, ref s2, ref s3);                      // (0, 1]: ln u₁ is finite
            var u2 = LaneRng.NextOneToTwo(ref s0, ref s1, ref s2, ref s3) - Vector256<float>.One;    // [0, 1)
            var r = Vector256.Sqrt(Vector256.Create(-2f) * Log(u1));
            SinCosTurns(u2, out var sin, out var cos);
            bool whole = i + 2 * Width <= destination.Length;
            var target = whole ? destination[i..] : tail;
            (r * cos).CopyTo(target);
            (r * sin).CopyTo(target[Width..]);
            if (!whole)
                tail[..(destination.Length - i)].CopyTo(destination[i..]);
        }
    }

    private static (Vector256<ulong>, Vector256<ulong>, Vector256<ulong>, Vector256<ulong>) Seed(Rng rng)
    {
        var lanes = new LaneRng(rng);
        return (lanes.S0, lanes.S1, lanes.S2, lanes.S3);
    }

    // ln x for normal positive x: x = m·2^e with m in [√½, √2), ln x = e·ln 2 + ln m, ln(1 + f) by Cephes' logf polynomial.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Log(Vector256<float> x)
    {
        var bits = x.AsInt32();
        var e = ((bits >> 23) & Vector256.Create(0xFF)) - Vector256.Create(127);
        var m = (bits & Vector256.Create(0x007FFFFF) | Vector256.Create(0x3F800000)).AsSingle();   // m in [1, 2)
        var big = Vector256.GreaterThan(m, Vector256.Create(1.41421356f));
        m = Vector256.ConditionalSelect(big, m * Vector256.Create(0.5f), m);
        var exponent = Vector256.ConvertToSingle(e - big.AsInt32());                                  // big is −1 where set
        var f = m - Vector256<float>.One;
        var z = f * f;
        var p = Vector256.Create(7.0376836292e-2f);
        p = p * f + Vector256.Create(-1.1514610310e-1f);
        p = p * f + Vector256.Create(1.1676998740e-1f);
        p = p * f + Vector256.Create(-1.2420140846e-1f);
        p = p * f + Vector256.Create(1.4249322787e-1f);
        p = p * f + Vector256.Create(-1.6668057665e-1f);
        p = p * f + Vector256.Create(2.0000714765e-1f);
        p = p * f + Vector256.Create(-2.4999993993e-1f);
        p = p * f + Vector256.Create(3.3333331174e-1f);
        var y = p * f * z - Vector256.Create(0.5f) * z;
        // ln 2 in two parts, so that e·ln 2 adds no rounding error of its own.
        return f + y + exponent * Vector256.Create(-2.12194440e-4f) + exponent * Vector256.Create(0.693359375f);
    }

    // sin and cos of 2πu for u in [0, 1): the nearest quarter turn q, a = 2π(u − q/4) in [−π/4, π/4], Cephes' polynomials,
    // then rotate by q quarter turns.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SinCosTurns(Vector256<float> u, out Vector256<float> sin, out Vector256<float> cos)
    {
        var q = Vector256.ConvertToInt32(Vector256.Floor(u * Vector256.Create(4f) + Vector256.Create(0.5f)));
        var a = (u - Vector256.ConvertToSingle(q) * Vector256.Create(0.25f)) * Vector256.Create(6.28318530718f);
        var a2 = a * a;
        var s = ((Vector256.Create(-1.9515295891e-4f) * a2 + Vector256.Create(8.3321608736e-3f)) * a2 + Vector256.Create(-1.6666654611e-1f)) * a2 * a + a;
        var c = ((Vector256.Create(2.443315711809948e-5f) * a2 + Vector256.Create(-1.388731625493765e-3f)) * a2 + Vector256.Create(4.166664568298827e-2f)) * a2 * a2
            - Vector256.Create(0.5f) * a2 + Vector256<float>.One;
        var odd = Vector256.Equals(q & Vector256<int>.One, Vector256<int>.One).AsSingle();          // a quarter turn swaps sin and cos
        var sinHalf = Vector256.Equals(q & Vector256.Create(2), Vector256.Create(2)).AsSingle();     // quadrants 2, 3: sin < 0 side
        var cosHalf = Vector256.Equals((q + Vector256<int>.One) & Vector256.Create(2), Vector256.Create(2)).AsSingle(); // 1, 2
        var negate = Vector256.Create(-0f);
        sin = Vector256.ConditionalSelect(odd, c, s) ^ (sinHalf & negate);
        cos = Vector256.ConditionalSelect(odd, s, c) ^ (cosHalf & negate);
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NormLab.Kernels;

/// <summary>
/// Four xoshiro256** generators side by side in <see cref="Vector256{T}"/> lanes, for bulk noise: a scalar generator
/// keeps its state in memory between calls and managed ~3 ns per word here, a quarter of the vector rate.
/// Seeded from an <see cref="Rng"/> (one word per lane, expanded by SplitMix64), so that generator's state fixes the
/// stream. The multiplications by 5 and 9 are shifts and adds: AVX2 has no 64-bit multiply.
/// </summary>
internal struct LaneRng
{
    // Four registers' worth: callers copy the state into locals for their loop (a struct of four vectors stays in memory).
    public Vector256<ulong> S0, S1, S2, S3;

    public LaneRng(Rng rng)
    {
        Span<ulong> s = stackalloc ulong[16];
        for (int lane = 0; lane < 4; lane++)
        {
            ulong seed = rng.NextUInt64();
            for (int word = 0; word < 4; word++)
                s[word * 4 + lane] = Rng.SplitMix(ref seed);
        }
        S0 = Vector256.Create<ulong>(s[0..]);
        S1 = Vector256.Create<ulong>(s[4..]);
        S2 = Vector256.Create<ulong>(s[8..]);
        S3 = Vector256.Create<ulong>(s[12..]);
    }

    /// <summary>Eight uniform floats in [1, 2) (23 random bits each): one word per lane, split into its two halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> NextOneToTwo(ref Vector256<ulong> s0, ref Vector256<ulong> s1, ref Vector256<ulong> s2, ref Vector256<ulong> s3)
    {
        var times5 = (s1 << 2) + s1;
        var rotated = (times5 << 7) | (times5 >> 57);
        var result = (rotated << 3) + rotated;
        var t = s1 << 17;
        s2 ^= s0;
        s3 ^= s1;
        s1 ^= s2;
        s0 ^= s3;
        s2 ^= t;
        s3 = (s3 << 45) | (s3 >> 19);
        return ((result.AsUInt32() >> 9) | Vector256.Create(0x3F800000u)).AsSingle();
    }
}

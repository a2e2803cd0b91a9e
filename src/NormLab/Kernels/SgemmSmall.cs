using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NormLab.Kernels;

/// <summary>
/// Float products with B transposed, few columns and a long K, which the packed kernels of <see cref="Sgemm"/> waste: the
/// weight gradient of a 3×3 convolution over one input channel is 9 columns with K = one image's output plane (784), and
/// the packed path fills 16-wide tiles with 9 columns and packs a panel per 262 steps of K. As dot products of rows read
/// in place it took 17 µs instead of 26 (32×784×9, one thread); with K of 100 or 128 (a classifier's 10 outputs) the
/// packed path stayed faster, as it did for a short K (broadcast loops: 18 µs instead of 16 for 32×9×784).
/// </summary>
/// <remarks>
/// Each element of C is one sum in a fixed order that depends on K only, whichever rows a thread takes.
/// </remarks>
internal static unsafe class SgemmSmall
{
    /// <summary>Products with B transposed, at most this many columns and at least <see cref="MinDotDepth"/> steps of K are dot products.</summary>
    public const int MaxDotColumns = 12;

    public const int MinDotDepth = 512;

    /// <summary>
    /// C[i, j] += Σ_p A[i·rsA + p]·B[j·csB + p] for rows <c>[i0, i1)</c>: rows of A against rows of B, four rows of B at a
    /// time, eight values of each row per step (K ≥ 8; the last step ends at K, masked to the values not yet taken).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dots(float* c, int ldc, float* a, long rsA, float* b, long csB, int k, int n, int i0, int i1, bool overwrite = false)
    {
        const int w = 8;
        int tail = k % w;
        var keep = tail == 0 ? Vector256<float>.Zero : Lanes.Last<float>(tail);
        int i = i0;
        for (; i + 1 < i1; i += 2)
            for (int j0 = 0; j0 < n; j0 += 4)
                TwoRows(c + (long)i * ldc + j0, ldc, a + i * rsA, a + (i + 1) * rsA, b, csB, k, j0, Math.Min(4, n - j0), keep, overwrite);
        for (; i < i1; i++)
        {
            float* ai = a + i * rsA;
            for (int j0 = 0; j0 < n; j0 += 4)
            {
                int count = Math.Min(4, n - j0);
                // Fewer than four rows left: the missing ones repeat the last, and their sums are dropped.
                float* b0 = b + j0 * csB, b1 = b0 + Math.Min(1, count - 1) * csB, b2 = b0 + Math.Min(2, count - 1) * csB, b3 = b0 + (count - 1) * csB;
                Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
                int p = 0;
                for (; p <= k - w; p += w)
                {
                    var x = Vector256.Load(ai + p);
                    s0 = Vector256.FusedMultiplyAdd(x, Vector256.Load(b0 + p), s0);
                    s1 = Vector256.FusedMultiplyAdd(x, Vector256.Load(b1 + p), s1);
                    s2 = Vector256.FusedMultiplyAdd(x, Vector256.Load(b2 + p), s2);
                    s3 = Vector256.FusedMultiplyAdd(x, Vector256.Load(b3 + p), s3);
                }
                if (tail != 0)
                {
                    // The vector ending at K, with the lanes already taken zeroed on both sides (0·NaN would not be 0).
                    int at = k - w;
                    var x = Vector256.Load(ai + at) & keep;
                    s0 = Vector256.FusedMultiplyAdd(x, Vector256.Load(b0 + at) & keep, s0);
                    s1 = Vector256.FusedMultiplyAdd(x, Vector256.Load(b1 + at) & keep, s1);
                    s2 = Vector256.FusedMultiplyAdd(x, Vector256.Load(b2 + at) & keep, s2);
                    s3 = Vector256.FusedMultiplyAdd(x, Vector256.Load(b3 + at) & keep, s3);
                }
                Put(c + (long)i * ldc + j0, s0, s1, s2, s3, count, overwrite);
            }
        }
    }

    // Two rows of A against four rows of B: the same sums as above, eight chains of fused adds instead of four (four
    // chains wait on the add latency, and each step loaded five vectors for four products, not six for eight).
    // 32×784×9 at one thread: 12.6 → 8.2 µs.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TwoRows(float* c, int ldc, float* a0, float* a1, float* b, long csB, int k, int j0, int count, Vector256<float> keep,
        bool overwrite)
    {
        const int w = 8;
        float* b0 = b + j0 * csB, b1 = b0 + Math.Min(1, count - 1) * csB, b2 = b0 + Math.Min(2, count - 1) * csB, b3 = b0 + (count - 1) * csB;
        Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default, t0 = default, t1 = default, t2 = default, t3 = default;
        int p = 0;
        for (; p <= k - w; p += w)
        {
            var x = Vector256.Load(a0 + p);
            var y = Vector256.Load(a1 + p);
            var v0 = Vector256.Load(b0 + p);
            var v1 = Vector256.Load(b1 + p);
            s0 = Vector256.FusedMultiplyAdd(x, v0, s0);
            t0 = Vector256.FusedMultiplyAdd(y, v0, t0);
            s1 = Vector256.FusedMultiplyAdd(x, v1, s1);
            t1 = Vector256.FusedMultiplyAdd(y, v1, t1);
            var v2 = Vector256.Load(b2 + p);
            var v3 = Vector256.Load(b3 + p);
            s2 = Vector256.FusedMultiplyAdd(x, v2, s2);
            t2 = Vector256.FusedMultiplyAdd(y, v2, t2);
            s3 = Vector256.FusedMultiplyAdd(x, v3, s3);
            t3 = Vector256.FusedMultiplyAdd(y, v3, t3);
        }
        if (p < k)
        {
            int at = k - w;
            var x = Vector256.Load(a0 + at) & keep;
            var y = Vector256.Load(a1 + at) & keep;
            var v0 = Vector256.Load(b0 + at) & keep;
            var v1 = Vector256.Load(b1 + at) & keep;
            var v2 = Vector256.Load(b2 + at) & keep;
            var v3 = Vector256.Load(b3 + at) & keep;
            s0 = Vector256.FusedMultiplyAdd(x, v0, s0);
            t0 = Vector256.FusedMultiplyAdd(y, v0, t0);
            s1 = Vector256.FusedMultiplyAdd(x, v1, s1);
            t1 = Vector256.FusedMultiplyAdd(y, v1, t1);
            s2 = Vector256.FusedMultiplyAdd(x, v2, s2);
            t2 = Vector256.FusedMultiplyAdd(y, v2, t2);
            s3 = Vector256.FusedMultiplyAdd(x, v3, s3);
            t3 = Vector256.FusedMultiplyAdd(y, v3, t3);
        }
        Put(c, s0, s1, s2, s3, count, overwrite);
        Put(c + ldc, t0, t1, t2, t3, count, overwrite);
    }

    // C[0..count) += the sums (= when overwriting).
    private static void Put(float* c, Vector256<float> s0, Vector256<float> s1, Vector256<float> s2, Vector256<float> s3, int count, bool overwrite)
    {
        Put(c, Vector256.Sum(s0), overwrite);
        if (count > 1)
            Put(c + 1, Vector256.Sum(s1), overwrite);
        if (count > 2)
            Put(c + 2, Vector256.Sum(s2), overwrite);
        if (count > 3)
            Put(c + 3, Vector256.Sum(s3), overwrite);
    }

    private static void Put(float* c, float sum, bool overwrite) => *c = overwrite ? sum : *c + sum;
}

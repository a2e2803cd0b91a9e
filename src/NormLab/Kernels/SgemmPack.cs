using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static NormLab.Kernels.SgemmKernel;

namespace NormLab.Kernels;

/// <summary>
/// Copies blocks of the operands of <see cref="Sgemm"/> into the order its kernels read them, so that the inner loop walks
/// memory contiguously whatever the operand's layout. An operand is addressed by strides: element (row, col) of A at
/// <c>a[row·rs + col·cs]</c>, which covers a matrix and its transpose with one routine.
/// </summary>
/// <remarks>Panels are zero-padded to the kernel's width: padded rows and columns only produce values that are never
/// written back, and zeros keep them finite.</remarks>
internal static unsafe class SgemmPack
{
    /// <summary>
    /// Rows [0, mc) × k [0, kc) of A (already offset to the block's corner) into panels of <see cref="SgemmKernel.MR"/>
    /// rows: panel r holds, for each k, its MR values side by side. The kernels read full panels of A in place; this
    /// serves the last, partial one.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void A(float* dst, float* a, long rs, long cs, int mc, int kc)
    {
        for (int r = 0; r < mc; r += MR, dst += MR * kc)
        {
            int rows = Math.Min(MR, mc - r);
            float* src = a + r * rs;
            if (rows == MR && cs == 1)
            {
                // Row-major A (AB, ABt): six rows read side by side.
                float* s0 = src, s1 = src + rs, s2 = src + 2 * rs, s3 = src + 3 * rs, s4 = src + 4 * rs, s5 = src + 5 * rs;
                float* d = dst;
                for (int p = 0; p < kc; p++, d += MR)
                {
                    d[0] = s0[p];
                    d[1] = s1[p];
                    d[2] = s2[p];
                    d[3] = s3[p];
                    d[4] = s4[p];
                    d[5] = s5[p];
                }
                continue;
            }
            if (rows == MR && rs == 1)
            {
                // Transposed A (AtB): six consecutive values per step.
                for (int p = 0; p < kc; p++)
                {
                    float* s = src + p * cs, d = dst + p * MR;
                    Vector128.Store(Vector128.Load(s), d);
                    d[4] = s[4];
                    d[5] = s[5];
                }
                continue;
            }
            for (int p = 0; p < kc; p++)
            {
                float* d = dst + p * MR;
                float* s = src + p * cs;
                int q = 0;
                for (; q < rows; q++)
                    d[q] = s[q * rs];
                for (; q < MR; q++)
                    d[q] = 0;
            }
        }
    }

    /// <summary>Width of the B panel that starts <paramref name="left"/> columns before the end, for tiles
    /// <paramref name="nr"/> wide: half a tile (the one-vector kernel) for a last sliver of at most nr/2 columns.</summary>
    public static int PanelWidth(int left, int nr) => left <= nr / 2 ? nr / 2 : nr;

    /// <summary>
    /// k [0, kc) × columns [0, nc) of B (already offset to the block's corner) into panels of <see cref="PanelWidth"/>
    /// columns: panel j holds, for each k, its columns side by side.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void B(float* dst, float* b, long rs, long cs, int kc, int nc, int nr)
    {
        for (int j = 0; j < nc;)
        {
            int width = PanelWidth(nc - j, nr), cols = Math.Min(width, nc - j);
            float* src = b + j * cs;
            if (cols == width && cs == 1)
                for (int p = 0; p < kc; p++)
                    for (int v = 0; v < width; v += 8)
                        Vector256.Load(src + p * rs + v).Store(dst + p * width + v);
            else if (rs == 1)
                Transposed(dst, src, cs, kc, cols, width);
            else
                for (int p = 0; p < kc; p++)
                {
                    float* d = dst + p * width;
                    int q = 0;
                    for (; q < cols; q++)
                        d[q] = src[p * rs + q * cs];
                    for (; q < width; q++)
                        d[q] = 0;
                }
            dst += width * kc;
            j += width;
        }
    }

    // A transposed B (ABt: column j of B is a row of the stored matrix): 8 columns × 8 steps of k at a time are loaded as
    // 8 rows and transposed in registers, 8 loads and 8 stores per 64 values instead of one cache line per value.
    // Columns past the end of B (cols ≤ q < width) are zero.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Transposed(float* dst, float* src, long cs, int kc, int cols, int width)
    {
        int p8 = kc / 8 * 8;
        for (int v = 0; v < width; v += 8)
        {
            float* s = src + v * cs, d = dst + v;
            int live = Math.Clamp(cols - v, 0, 8);
            int p = 0;
            if (live == 8)
                for (; p < p8; p += 8)
                    Transpose8x8(s + p, cs, d + p * width, width);
            for (; p < kc; p++)
            {
                int q = 0;
                for (; q < live; q++)
                    d[p * width + q] = s[q * cs + p];
                for (; q < 8; q++)
                    d[p * width + q] = 0;
            }
        }
    }

    // d[q·ldd + r] = s[r·lds + q] for r, q < 8: unpack pairs, then quads, then swap 128-bit halves.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(float* s, long lds, float* d, int ldd)
    {
        var r0 = Vector256.Load(s);
        var r1 = Vector256.Load(s + lds);
        var r2 = Vector256.Load(s + 2 * lds);
        var r3 = Vector256.Load(s + 3 * lds);
        var r4 = Vector256.Load(s + 4 * lds);
        var r5 = Vector256.Load(s + 5 * lds);
        var r6 = Vector256.Load(s + 6 * lds);
        var r7 = Vector256.Load(s + 7 * lds);
        var t0 = Avx.UnpackLow(r0, r1);
        var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5);
        var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7);
        var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44);
        var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44);
        var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44);
        var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44);
        var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Permute2x128(u0, u4, 0x20).Store(d);
        Avx.Permute2x128(u1, u5, 0x20).Store(d + ldd);
        Avx.Permute2x128(u2, u6, 0x20).Store(d + 2 * ldd);
        Avx.Permute2x128(u3, u7, 0x20).Store(d + 3 * ldd);
        Avx.Permute2x128(u0, u4, 0x31).Store(d + 4 * ldd);
        Avx.Permute2x128(u1, u5, 0x31).Store(d + 5 * ldd);
        Avx.Permute2x128(u2, u6, 0x31).Store(d + 6 * ldd);
        Avx.Permute2x128(u3, u7, 0x31).Store(d + 7 * ldd);
    }
}

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
    /// rows: panel r holds, for each k, its MR values side by side.
    /// </summary>
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
            else if (cols == width && rs == 1 && Avx2.IsSupported && cs * 7 <= int.MaxValue)
                Gathered(dst, src, (int)cs, kc, width);
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

    // A transposed B (ABt: column j of B is a row of the stored matrix): each step of k gathers 8 columns at once, which
    // beats element-by-element copies that touch a new cache line per value.
    private static void Gathered(float* dst, float* src, int cs, int kc, int width)
    {
        var index = Vector256.Create(0, cs, 2 * cs, 3 * cs, 4 * cs, 5 * cs, 6 * cs, 7 * cs);
        for (int v = 0; v < width; v += 8)
        {
            float* s = src + (long)v * cs;
            float* d = dst + v;
            for (int p = 0; p < kc; p++)
                Avx2.GatherVector256(s + p, index, 4).Store(d + p * width);
        }
    }
}

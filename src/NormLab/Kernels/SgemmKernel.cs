using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NormLab.Kernels;

/// <summary>
/// The register-blocked inner loops of <see cref="Sgemm"/>: a tile of C += (packed A panel)·(packed B panel), 6 rows by
/// two vectors, in a zmm (6×32) and a ymm (6×16) flavour, each with a one-vector sibling for the last columns.
/// </summary>
/// <remarks>
/// <para>Six rows × two vectors keep 12 accumulators busy: per step of k, 2 vector loads of B and 6 broadcasts of A feed
/// 12 FMAs, enough independent chains to cover the FMA latency on two FMA pipes, and with 2 B vectors and a broadcast the
/// 16 ymm registers of AVX2 are just enough (32 zmm leave room).</para>
/// <para>A is read in place through two strides (row <c>ars</c>, step of k <c>aks</c>): row-major (AB, ABt), transposed
/// (AtB) and packed panels all broadcast one value per row and step, so only a partial panel needs copying.</para>
/// <para>Every element of C is computed the same way in every kernel: an accumulator starts at 0, takes one FMA per k in
/// increasing order, and is then added to C once (or stored, where the product overwrites C: see <see cref="Sgemm"/>). So the result of an element does not depend on which tile (full, edge,
/// one-vector) it falls in, which is what makes the product independent of how the work is split.</para>
/// </remarks>
internal static unsafe class SgemmKernel
{
    /// <summary>Rows of a tile (the A panel's width).</summary>
    public const int MR = 6;

    /// <summary>C[6, 32] += A·B over <paramref name="kc"/> steps: A(r, p) = a[r·ars + p·aks], <paramref name="b"/> holds 32
    /// values per step, <paramref name="c"/> has row stride <paramref name="ldc"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Tile6x32(int kc, float* a, nint ars, nint aks, float* b, float* c, int ldc, bool overwrite)
    {
        nint r2 = 2 * ars, r3 = 3 * ars, r4 = 4 * ars, r5 = 5 * ars;
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++, a += aks, b += 32)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var ai = Vector512.Create(a[0]);
            c00 = Vector512.FusedMultiplyAdd(ai, b0, c00);
            c01 = Vector512.FusedMultiplyAdd(ai, b1, c01);
            ai = Vector512.Create(a[ars]);
            c10 = Vector512.FusedMultiplyAdd(ai, b0, c10);
            c11 = Vector512.FusedMultiplyAdd(ai, b1, c11);
            ai = Vector512.Create(a[r2]);
            c20 = Vector512.FusedMultiplyAdd(ai, b0, c20);
            c21 = Vector512.FusedMultiplyAdd(ai, b1, c21);
            ai = Vector512.Create(a[r3]);
            c30 = Vector512.FusedMultiplyAdd(ai, b0, c30);
            c31 = Vector512.FusedMultiplyAdd(ai, b1, c31);
            ai = Vector512.Create(a[r4]);
            c40 = Vector512.FusedMultiplyAdd(ai, b0, c40);
            c41 = Vector512.FusedMultiplyAdd(ai, b1, c41);
            ai = Vector512.Create(a[r5]);
            c50 = Vector512.FusedMultiplyAdd(ai, b0, c50);
            c51 = Vector512.FusedMultiplyAdd(ai, b1, c51);
        }
        Put(c, c00, c01, overwrite);
        Put(c + ldc, c10, c11, overwrite);
        Put(c + 2 * ldc, c20, c21, overwrite);
        Put(c + 3 * ldc, c30, c31, overwrite);
        Put(c + 4 * ldc, c40, c41, overwrite);
        Put(c + 5 * ldc, c50, c51, overwrite);
    }

    /// <summary>C[6, 16] += A·B with one zmm per row: the last ≤ 16 columns, half the work of a padded 6×32 tile.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Tile6x16Zmm(int kc, float* a, nint ars, nint aks, float* b, float* c, int ldc, bool overwrite)
    {
        nint r2 = 2 * ars, r3 = 3 * ars, r4 = 4 * ars, r5 = 5 * ars;
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default;
        for (int p = 0; p < kc; p++, a += aks, b += 16)
        {
            var b0 = Vector512.Load(b);
            c0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[0]), b0, c0);
            c1 = Vector512.FusedMultiplyAdd(Vector512.Create(a[ars]), b0, c1);
            c2 = Vector512.FusedMultiplyAdd(Vector512.Create(a[r2]), b0, c2);
            c3 = Vector512.FusedMultiplyAdd(Vector512.Create(a[r3]), b0, c3);
            c4 = Vector512.FusedMultiplyAdd(Vector512.Create(a[r4]), b0, c4);
            c5 = Vector512.FusedMultiplyAdd(Vector512.Create(a[r5]), b0, c5);
        }
        Put(c, c0, overwrite);
        Put(c + ldc, c1, overwrite);
        Put(c + 2 * ldc, c2, overwrite);
        Put(c + 3 * ldc, c3, overwrite);
        Put(c + 4 * ldc, c4, overwrite);
        Put(c + 5 * ldc, c5, overwrite);
    }

    /// <summary>C[6, 16] += A·B with two ymm per row (AVX2 machines): as <see cref="Tile6x32"/> at half the width.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Tile6x16(int kc, float* a, nint ars, nint aks, float* b, float* c, int ldc, bool overwrite)
    {
        nint r2 = 2 * ars, r3 = 3 * ars, r4 = 4 * ars, r5 = 5 * ars;
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++, a += aks, b += 16)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var ai = Vector256.Create(a[0]);
            c00 = Vector256.FusedMultiplyAdd(ai, b0, c00);
            c01 = Vector256.FusedMultiplyAdd(ai, b1, c01);
            ai = Vector256.Create(a[ars]);
            c10 = Vector256.FusedMultiplyAdd(ai, b0, c10);
            c11 = Vector256.FusedMultiplyAdd(ai, b1, c11);
            ai = Vector256.Create(a[r2]);
            c20 = Vector256.FusedMultiplyAdd(ai, b0, c20);
            c21 = Vector256.FusedMultiplyAdd(ai, b1, c21);
            ai = Vector256.Create(a[r3]);
            c30 = Vector256.FusedMultiplyAdd(ai, b0, c30);
            c31 = Vector256.FusedMultiplyAdd(ai, b1, c31);
            ai = Vector256.Create(a[r4]);
            c40 = Vector256.FusedMultiplyAdd(ai, b0, c40);
            c41 = Vector256.FusedMultiplyAdd(ai, b1, c41);
            ai = Vector256.Create(a[r5]);
            c50 = Vector256.FusedMultiplyAdd(ai, b0, c50);
            c51 = Vector256.FusedMultiplyAdd(ai, b1, c51);
        }
        Put(c, c00, c01, overwrite);
        Put(c + ldc, c10, c11, overwrite);
        Put(c + 2 * ldc, c20, c21, overwrite);
        Put(c + 3 * ldc, c30, c31, overwrite);
        Put(c + 4 * ldc, c40, c41, overwrite);
        Put(c + 5 * ldc, c50, c51, overwrite);
    }

    /// <summary>C[6, 8] += A·B with one ymm per row: the last ≤ 8 columns on AVX2 machines.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Tile6x8(int kc, float* a, nint ars, nint aks, float* b, float* c, int ldc, bool overwrite)
    {
        nint r2 = 2 * ars, r3 = 3 * ars, r4 = 4 * ars, r5 = 5 * ars;
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default;
        for (int p = 0; p < kc; p++, a += aks, b += 8)
        {
            var b0 = Vector256.Load(b);
            c0 = Vector256.FusedMultiplyAdd(Vector256.Create(a[0]), b0, c0);
            c1 = Vector256.FusedMultiplyAdd(Vector256.Create(a[ars]), b0, c1);
            c2 = Vector256.FusedMultiplyAdd(Vector256.Create(a[r2]), b0, c2);
            c3 = Vector256.FusedMultiplyAdd(Vector256.Create(a[r3]), b0, c3);
            c4 = Vector256.FusedMultiplyAdd(Vector256.Create(a[r4]), b0, c4);
            c5 = Vector256.FusedMultiplyAdd(Vector256.Create(a[r5]), b0, c5);
        }
        Put(c, c0, overwrite);
        Put(c + ldc, c1, overwrite);
        Put(c + 2 * ldc, c2, overwrite);
        Put(c + 3 * ldc, c3, overwrite);
        Put(c + 4 * ldc, c4, overwrite);
        Put(c + 5 * ldc, c5, overwrite);
    }

    // C += v, or C = v when overwriting (C is not read). The same bits as adding to zeros, except that an element whose
    // products all underflow to −0 stays −0 where +0 + (−0) gave +0: equal values.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put(float* c, Vector512<float> v, bool overwrite) => (overwrite ? v : Vector512.Load(c) + v).Store(c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put(float* c, Vector256<float> v, bool overwrite) => (overwrite ? v : Vector256.Load(c) + v).Store(c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put(float* c, Vector512<float> v0, Vector512<float> v1, bool overwrite)
    {
        Put(c, v0, overwrite);
        Put(c + 16, v1, overwrite);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put(float* c, Vector256<float> v0, Vector256<float> v1, bool overwrite)
    {
        Put(c, v0, overwrite);
        Put(c + 8, v1, overwrite);
    }
}

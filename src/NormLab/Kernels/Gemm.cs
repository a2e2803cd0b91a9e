using System.Numerics;
using System.Numerics.Tensors;
using NormLab.Threading;

namespace NormLab.Kernels;

/// <summary>
/// Dense matrix products over row-major spans, in the three forms a layer's forward and backward need.
/// All accumulate into C (<c>C += ...</c>), or with <c>accumulate: false</c> overwrite it (<c>C = ...</c>, C never read:
/// the bits of clearing C and accumulating, without the pass that clears it).
/// </summary>
/// <remarks>
/// Generic over float (training) and double (gradient checks); the JIT specializes each. Float products run the packed
/// <see cref="Sgemm"/> where AVX-512 is available; double products (and float elsewhere) run the plain loops below, which
/// split the rows of C over the <see cref="Team"/>. Either way every element of C is computed by the same operations in
/// the same order whatever the split, so the result does not depend on the number of threads.
/// </remarks>
public static unsafe class Gemm
{
    // Below this many multiply-adds a parallel call costs more than it saves.
    private const long ParallelWork = 1 << 15;

    /// <summary>C[m,n] += Σ_k A[m,k]·B[k,n]  (A: M×K, B: K×N, C: M×N).</summary>
    public static void AB<T>(Span<T> c, ReadOnlySpan<T> a, ReadOnlySpan<T> b, int m, int k, int n, bool accumulate = true)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check(c.Length, (long)m * n, a.Length, (long)m * k, b.Length, (long)k * n);
        bool overwrite = Overwrites(c, m, k, n, accumulate);
        if (Packed<T>())
        {
            fixed (T* pc = c, pa = a, pb = b)
                Sgemm.Run((float*)pc, n, (float*)pa, k, 1, (float*)pb, n, 1, m, k, n, overwrite);
            return;
        }
        var args = new Args<T> { C = c, A = a, B = b, M = m, K = k, N = n };
        if ((long)m * k * n < ParallelWork)
            ABRows(ref args, 0, m);
        else
            Team.For(m, ref args, &ABRows);
    }

    /// <summary>C[m,n] += Σ_k A[m,k]·B[n,k]  (A: M×K, B: N×K, C: M×N) — a product with B transposed.</summary>
    public static void ABt<T>(Span<T> c, ReadOnlySpan<T> a, ReadOnlySpan<T> b, int m, int k, int n, bool accumulate = true)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check(c.Length, (long)m * n, a.Length, (long)m * k, b.Length, (long)n * k);
        bool overwrite = Overwrites(c, m, k, n, accumulate);
        if (Packed<T>())
        {
            fixed (T* pc = c, pa = a, pb = b)
                Sgemm.Run((float*)pc, n, (float*)pa, k, 1, (float*)pb, 1, k, m, k, n, overwrite);
            return;
        }
        var args = new Args<T> { C = c, A = a, B = b, M = m, K = k, N = n };
        if ((long)m * k * n < ParallelWork)
            ABtRows(ref args, 0, m);
        else
            Team.For(m, ref args, &ABtRows);
    }

    /// <summary>C[m,n] += Σ_k A[k,m]·B[k,n]  (A: K×M, B: K×N, C: M×N) — a product with A transposed.</summary>
    public static void AtB<T>(Span<T> c, ReadOnlySpan<T> a, ReadOnlySpan<T> b, int m, int k, int n, bool accumulate = true)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check(c.Length, (long)m * n, a.Length, (long)k * m, b.Length, (long)k * n);
        bool overwrite = Overwrites(c, m, k, n, accumulate);
        if (Packed<T>())
        {
            fixed (T* pc = c, pa = a, pb = b)
                Sgemm.Run((float*)pc, n, (float*)pa, 1, m, (float*)pb, n, 1, m, k, n, overwrite);
            return;
        }
        var args = new Args<T> { C = c, A = a, B = b, M = m, K = k, N = n };
        if ((long)m * k * n < ParallelWork)
            AtBRows(ref args, 0, m);
        else
            Team.For(m, ref args, &AtBRows);
    }

    private static bool Packed<T>() => typeof(T) == typeof(float) && Sgemm.IsSupported;

    // Whether the packed product writes C itself; where it cannot (no K, or the plain loops, which accumulate), C is
    // cleared here instead.
    private static bool Overwrites<T>(Span<T> c, int m, int k, int n, bool accumulate) where T : unmanaged
    {
        if (accumulate)
            return false;
        if (k > 0 && Packed<T>())
            return true;
        c.Slice(0, m * n).Clear();
        return false;
    }

    private static void ABRows<T>(ref Args<T> g, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int k = g.K, n = g.N;
        for (int i = first; i < end; i++)
        {
            var cRow = g.C.Slice(i * n, n);
            var aRow = g.A.Slice(i * k, k);
            for (int p = 0; p < k; p++)
                Axpy(cRow, aRow[p], g.B.Slice(p * n, n));
        }
    }

    private static void ABtRows<T>(ref Args<T> g, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int k = g.K, n = g.N;
        for (int i = first; i < end; i++)
        {
            var aRow = g.A.Slice(i * k, k);
            var cRow = g.C.Slice(i * n, n);
            for (int j = 0; j < n; j++)
                cRow[j] += TensorPrimitives.Dot(aRow, g.B.Slice(j * k, k));
        }
    }

    private static void AtBRows<T>(ref Args<T> g, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int m = g.M, n = g.N;
        for (int p = 0; p < g.K; p++)
        {
            var bRow = g.B.Slice(p * n, n);
            for (int i = first; i < end; i++)
                Axpy(g.C.Slice(i * n, n), g.A[p * m + i], bRow);
        }
    }

    /// <summary>y += a·x.</summary>
    public static void Axpy<T>(Span<T> y, T a, ReadOnlySpan<T> x) where T : unmanaged, INumber<T>
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && y.Length >= Vector<T>.Count)
        {
            var va = new Vector<T>(a);
            for (; i <= y.Length - Vector<T>.Count; i += Vector<T>.Count)
            {
                var vy = new Vector<T>(y.Slice(i));
                (vy + va * new Vector<T>(x.Slice(i))).CopyTo(y.Slice(i));
            }
        }
        for (; i < y.Length; i++)
            y[i] += a * x[i];
    }

    private ref struct Args<T> where T : unmanaged
    {
        public Span<T> C;
        public ReadOnlySpan<T> A, B;
        public int M, K, N;
    }

    private static void Check(int c, long cNeed, int a, long aNeed, int b, long bNeed)
    {
        if (c < cNeed || a < aNeed || b < bNeed)
            throw new ArgumentException($"Gemm: buffers too short (C {c}/{cNeed}, A {a}/{aNeed}, B {b}/{bNeed}).");
    }
}

using System.Numerics;
using System.Numerics.Tensors;

namespace NormLab.Kernels;

/// <summary>
/// Dense matrix products over row-major spans, in the three forms a layer's forward and backward need.
/// All accumulate into C (<c>C += ...</c>); callers clear C for a plain product.
/// </summary>
/// <remarks>Generic over float (training) and double (gradient checks); the JIT specializes each.</remarks>
public static class Gemm
{
    /// <summary>C[m,n] += Σ_k A[m,k]·B[k,n]  (A: M×K, B: K×N, C: M×N).</summary>
    public static void AB<T>(Span<T> c, ReadOnlySpan<T> a, ReadOnlySpan<T> b, int m, int k, int n)
        where T : unmanaged, INumber<T>
    {
        Check(c.Length, (long)m * n, a.Length, (long)m * k, b.Length, (long)k * n);
        for (int i = 0; i < m; i++)
        {
            var cRow = c.Slice(i * n, n);
            var aRow = a.Slice(i * k, k);
            for (int p = 0; p < k; p++)
            {
                Axpy(cRow, aRow[p], b.Slice(p * n, n));
            }
        }
    }

    /// <summary>C[m,n] += Σ_k A[m,k]·B[n,k]  (A: M×K, B: N×K, C: M×N) — a product with B transposed.</summary>
    public static void ABt<T>(Span<T> c, ReadOnlySpan<T> a, ReadOnlySpan<T> b, int m, int k, int n)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check(c.Length, (long)m * n, a.Length, (long)m * k, b.Length, (long)n * k);
        for (int i = 0; i < m; i++)
        {
            var aRow = a.Slice(i * k, k);
            var cRow = c.Slice(i * n, n);
            for (int j = 0; j < n; j++)
                cRow[j] += TensorPrimitives.Dot(aRow, b.Slice(j * k, k));
        }
    }

    /// <summary>C[m,n] += Σ_k A[k,m]·B[k,n]  (A: K×M, B: K×N, C: M×N) — a product with A transposed.</summary>
    public static void AtB<T>(Span<T> c, ReadOnlySpan<T> a, ReadOnlySpan<T> b, int m, int k, int n)
        where T : unmanaged, INumber<T>
    {
        Check(c.Length, (long)m * n, a.Length, (long)k * m, b.Length, (long)k * n);
        for (int p = 0; p < k; p++)
        {
            var aRow = a.Slice(p * m, m);
            var bRow = b.Slice(p * n, n);
            for (int i = 0; i < m; i++)
            {
                Axpy(c.Slice(i * n, n), aRow[i], bRow);
            }
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

    private static void Check(int c, long cNeed, int a, long aNeed, int b, long bNeed)
    {
        if (c < cNeed || a < aNeed || b < bNeed)
            throw new ArgumentException($"Gemm: buffers too short (C {c}/{cNeed}, A {a}/{aNeed}, B {b}/{bNeed}).");
    }
}

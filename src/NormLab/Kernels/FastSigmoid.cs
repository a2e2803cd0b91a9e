using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NormLab.Kernels;

/// <summary>
/// σ(x) = 1/(1 + e^−x) for float on 256-bit vectors, with e^x from Cephes' single-precision polynomial (about 1 ulp):
/// x = n·ln2 + r, |r| ≤ ln2/2, e^r by a degree-6 polynomial, 2^n from the exponent bits. TensorPrimitives.Sigmoid
/// evaluates its float exponential through double precision and took 2.6 ns a value here, as long as the GEMMs around it.
/// </summary>
internal static class FastSigmoid
{
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    public static unsafe void Apply(Span<float> y, ReadOnlySpan<float> x)
    {
        int length = x.Length;
        if (length < 8)
        {
            for (int i = 0; i < length; i++)
                y[i] = 1f / (1f + MathF.Exp(-x[i]));
            return;
        }
        fixed (float* px = x, py = y)
        {
            // The last vector overlaps the one before it when the length is not a multiple of 8: the values are recomputed
            // identically, so no scalar tail is needed.
            for (int i = 0; ; i += 8)
            {
                i = Math.Min(i, length - 8);
                Vector256.Store(Sigmoid(Vector256.Load(px + i)), py + i);
                if (i == length - 8)
                    break;
            }
        }
    }

    private static Vector256<float> Sigmoid(Vector256<float> x)
    {
        var e = Exp(Vector256.Negate(x));
        var s = Vector256.Create(1f) / (Vector256.Create(1f) + e);
        return Vector256.ConditionalSelect(Vector256.Equals(x, x), s, x); // NaN in, NaN out
    }

    // e^x for x clamped to [−88, 88] (σ is then 0 or 1 to float precision anyway).
    private static Vector256<float> Exp(Vector256<float> x)
    {
        x = Vector256.Min(Vector256.Max(x, Vector256.Create(-88f)), Vector256.Create(88f));
        var n = Vector256.Round(x * Vector256.Create(1.44269504088896341f));
        // r = x − n·ln2 in two steps (Cody–Waite), so r keeps its low bits.
        var r = Fma.MultiplyAddNegated(n, Vector256.Create(0.693359375f), x);
        r = Fma.MultiplyAddNegated(n, Vector256.Create(-2.12194440e-4f), r);
        var p = Vector256.Create(1.9875691500E-4f);
        p = Fma.MultiplyAdd(p, r, Vector256.Create(1.3981999507E-3f));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(8.3334519073E-3f));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(4.1665795894E-2f));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(1.6666665459E-1f));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(5.0000001201E-1f));
        p = Fma.MultiplyAdd(p, r * r, r + Vector256.Create(1f));
        var scale = Vector256.ShiftLeft(Vector256.ConvertToInt32(n) + Vector256.Create(127), 23).AsSingle();
        return p * scale;
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NormLab.Kernels;

// The ℓp-normalization formulas per element (LpNormKernels), beside BatchNorm's (BatchNormFormulas); c = (x − hi) − lo.

/// <summary>c = x − μ.</summary>
internal readonly struct CenteredValue<T>(Vector256<T> hi, Vector256<T> lo) : ITerm<T> where T : unmanaged
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<T> Of(Vector256<T> x) => (x - hi) - lo;
}

/// <summary>|x − μ|.</summary>
internal readonly struct AbsDeviation<T>(Vector256<T> hi, Vector256<T> lo) : ITerm<T> where T : unmanaged
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<T> Of(Vector256<T> x) => Vector256.Abs((x - hi) - lo);
}

/// <summary>sign(x − μ): 1, 0 or −1.</summary>
internal readonly struct SignOfDeviation<T>(Vector256<T> hi, Vector256<T> lo) : ITerm<T> where T : unmanaged
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<T> Of(Vector256<T> x)
    {
        var c = (x - hi) - lo;
        return (Vector256.GreaterThan(c, Vector256<T>.Zero) & Vector256<T>.One) - (Vector256.LessThan(c, Vector256<T>.Zero) & Vector256<T>.One);
    }
}

/// <summary>ℓ1's dx = scale·(dy − meanDy − k·sign(x − μ)), the mean of the signs folded into meanDy.</summary>
internal readonly struct InputGradientL1<T>(Vector256<T> hi, Vector256<T> lo, Vector256<T> scale, Vector256<T> meanDy, Vector256<T> k)
    : IMap<T> where T : unmanaged
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<T> Of(Vector256<T> x, Vector256<T> dy) => scale * (dy - meanDy - new SignOfDeviation<T>(hi, lo).Of(x) * k);
}

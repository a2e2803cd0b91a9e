using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NormLab.Kernels;

/// <summary>A per-element term of a reduction (Σ over a channel's values).</summary>
internal interface ITerm<T> where T : unmanaged
{
    Vector512<T> Of(Vector512<T> x);
}

/// <summary>A per-element output from x (and dy, for the backward pass).</summary>
internal interface IMap<T> where T : unmanaged
{
    Vector512<T> Of(Vector512<T> x, Vector512<T> dy);
}

/// <summary>
/// The BN formulas per element, on vectors of values of one channel (broadcast constants) or of one block of channels
/// (one constant per lane). The mean μ travels as hi + lo (<see cref="Centered.Split{T}"/>): x − hi is exact for x near
/// μ, so data far from zero keep their spread.
/// </summary>
internal static class BatchNormFormulas
{
    /// <summary>Constants of <see cref="Normalized{T}"/> for one channel, computed in double.</summary>
    public static (T Hi, T Alpha, T Shift) Affine<T>(double mean, double invStd, double gamma, double beta)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (hi, lo) = Centered.Split<T>(mean);
        double alpha = gamma * invStd;
        return (hi, T.CreateChecked(alpha), T.CreateChecked(beta - double.CreateChecked(lo) * alpha));
    }

    /// <summary>invStd = 1/√(var + eps) from the biased variance var = M2/count.</summary>
    public static double InvStd(double m2, double count, double eps) => 1.0 / Math.Sqrt(m2 / count + eps);

    /// <summary>Constants of <see cref="InputGradient{T}"/> for one channel: scale = γ·invStd, meanDy = Σdy/m, k = invStd²·Σdy·(x − μ)/m.</summary>
    public static (T Scale, T MeanDy, T K) Gradient<T>(double invStd, double gamma, double sumDy, double sumDyXc, double m)
        where T : unmanaged, IFloatingPointIeee754<T> =>
        (T.CreateChecked(gamma * invStd), T.CreateChecked(sumDy / m), T.CreateChecked(sumDyXc * invStd * invStd / m));
}

/// <summary>x − shift: summing deviations from a value near the data keeps their spread, not their offset.</summary>
internal readonly struct Deviation<T>(Vector512<T> shift) : ITerm<T> where T : unmanaged
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector512<T> Of(Vector512<T> x) => x - shift;
}

/// <summary>(x − μ)², with x − μ = (x − hi) − lo.</summary>
internal readonly struct SquaredDeviation<T>(Vector512<T> hi, Vector512<T> lo) : ITerm<T> where T : unmanaged
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector512<T> Of(Vector512<T> x)
    {
        var d = (x - hi) - lo;
        return d * d;
    }
}

/// <summary>
/// y = γ·x̂ + β with x̂ = (x − μ)·invStd, written y = (x − hi)·α + β' with α = γ·invStd and β' = β − lo·α: one rounding per
/// element, and the mean's low part folded into the shift (not into x, where it would be lost for data far from zero).
/// </summary>
internal readonly struct Normalized<T>(Vector512<T> hi, Vector512<T> alpha, Vector512<T> shift) : IMap<T> where T : unmanaged
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector512<T> Of(Vector512<T> x, Vector512<T> dy) => Lanes.Fma(x - hi, alpha, shift);
}

/// <summary>
/// dx = γ/(m·σ)·(m·dy − Σdy − x̂·Σ(dy·x̂)), written dx = scale·(dy − meanDy − (x − μ)·k) with scale = γ·invStd,
/// meanDy = Σdy/m and k = invStd²·Σ(dy·(x − μ))/m.
/// </summary>
internal readonly struct InputGradient<T>(Vector512<T> hi, Vector512<T> lo, Vector512<T> scale, Vector512<T> meanDy, Vector512<T> k)
    : IMap<T> where T : unmanaged
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector512<T> Of(Vector512<T> x, Vector512<T> dy) => scale * (dy - meanDy - ((x - hi) - lo) * k);
}

/// <summary>dx = dy·γ·invStd: the gradient of the affine map that BN is when its statistics are constants.</summary>
internal readonly struct ScaledGradient<T>(Vector512<T> scale) : IMap<T> where T : unmanaged
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector512<T> Of(Vector512<T> x, Vector512<T> dy) => dy * scale;
}

using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NormLab.Kernels;

/// <summary>A per-element term of a reduction (Σ over a channel's values).</summary>
internal interface ITerm<T> where T : unmanaged
{
    Vector256<T> Of(Vector256<T> x);
}

/// <summary>Built from one channel's constants of <see cref="Normalized{T}"/> (hi, α, β'): a normalize map, with or without
/// a fused activation, or the gate of a fused ReLU's backward.</summary>
internal interface IFromAffine<T, TSelf> where T : unmanaged where TSelf : struct, IFromAffine<T, TSelf>
{
    static abstract TSelf Create(T hi, T alpha, T shift);
}

/// <summary>A per-element output from x (and dy, for the backward pass).</summary>
internal interface IMap<T> where T : unmanaged
{
    Vector256<T> Of(Vector256<T> x, Vector256<T> dy);
}

/// <summary>The map of each plane of a run of planes (<see cref="Centered.MapStreaming{T, TMap, TMaps}"/>).</summary>
internal interface IPlaneMaps<TMap>
{
    TMap Plane(int k);
}

/// <summary>Plane k of a run maps with <c>maps[k]</c>.</summary>
internal readonly ref struct PlaneMaps<TMap>(ReadOnlySpan<TMap> maps) : IPlaneMaps<TMap>
{
    private readonly ReadOnlySpan<TMap> _maps = maps;

    public TMap Plane(int k) => _maps[k];
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
        return (hi, Lanes.FromDouble<T>(alpha), Lanes.FromDouble<T>(beta - Lanes.ToDouble(lo) * alpha));
    }

    /// <summary><see cref="Affine{T}(double, double, double, double)"/> lane by lane.</summary>
    public static (Vector256<T> Hi, Vector256<T> Alpha, Vector256<T> Shift) Affine<T>(DoubleLanes mean, DoubleLanes invStd,
        DoubleLanes gamma, DoubleLanes beta) where T : unmanaged
    {
        var (hi, lo) = Split<T>(mean);
        var alpha = gamma * invStd;
        return (hi, alpha.Narrow<T>(), (beta - DoubleLanes.Widen(lo) * alpha).Narrow<T>());
    }

    /// <summary><see cref="Centered.Split{T}"/> lane by lane.</summary>
    public static (Vector256<T> Hi, Vector256<T> Lo) Split<T>(DoubleLanes value) where T : unmanaged
    {
        var hi = value.Narrow<T>();
        return (hi, (value - DoubleLanes.Widen(hi)).Narrow<T>());
    }

    /// <summary><see cref="InvStd(double, double, double)"/> lane by lane.</summary>
    public static DoubleLanes InvStd(DoubleLanes m2, double count, double eps) =>
        DoubleLanes.Create(1.0) / (m2 / count + DoubleLanes.Create(eps)).Sqrt();

    /// <summary><see cref="Gradient{T}(double, double, double, double, double)"/> lane by lane.</summary>
    public static (Vector256<T> Scale, Vector256<T> MeanDy, Vector256<T> K) Gradient<T>(DoubleLanes invStd, DoubleLanes gamma,
        DoubleLanes sumDy, DoubleLanes sumDyXc, double m) where T : unmanaged =>
        ((gamma * invStd).Narrow<T>(), (sumDy / m).Narrow<T>(), (sumDyXc * invStd * invStd / m).Narrow<T>());

    /// <summary>invStd = 1/√(var + eps) from the biased variance var = M2/count.</summary>
    public static double InvStd(double m2, double count, double eps) => 1.0 / Math.Sqrt(m2 / count + eps);

    /// <summary>
    /// The one-pass statistics sum deviations d = x − shift around a shift taken from the data; M2 = Σd² − (Σd)²/m then
    /// magnifies the rounding of Σd² by Σd²/M2 = 1 + (mean − shift)²/variance. Above this (a shift about 2.6σ from the
    /// mean; 1 % of Gaussian samples) the kernels sum again around the mean.
    /// </summary>
    public const double MaxMagnification = 8;

    /// <summary>Mean and M2 of <paramref name="count"/> values from Σd and Σd² around <paramref name="shift"/>, and whether the
    /// difference magnified rounding beyond <see cref="MaxMagnification"/> (or the sums are not finite): sum again then.</summary>
    public static (double Mean, double M2, bool SumAgain) FromDeviations(double shift, double sum, double squares, double count)
    {
        double m2 = squares - sum * (sum / count);
        return (shift + sum / count, m2, !(m2 >= squares / MaxMagnification));
    }

    /// <summary>Constants of <see cref="InputGradient{T}"/> for one channel: scale = γ·invStd, meanDy = Σdy/m, k = invStd²·Σdy·(x − μ)/m.</summary>
    public static (T Scale, T MeanDy, T K) Gradient<T>(double invStd, double gamma, double sumDy, double sumDyXc, double m)
        where T : unmanaged, IFloatingPointIeee754<T> =>
        (Lanes.FromDouble<T>(gamma * invStd), Lanes.FromDouble<T>(sumDy / m), Lanes.FromDouble<T>(sumDyXc * invStd * invStd / m));
}

/// <summary>x − shift: summing deviations from a value near the data keeps their spread, not their offset.</summary>
internal readonly struct Deviation<T>(Vector256<T> shift) : ITerm<T> where T : unmanaged
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<T> Of(Vector256<T> x) => x - shift;
}

/// <summary>(x − μ)², with x − μ = (x − hi) − lo.</summary>
internal readonly struct SquaredDeviation<T>(Vector256<T> hi, Vector256<T> lo) : ITerm<T> where T : unmanaged
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<T> Of(Vector256<T> x)
    {
        var d = (x - hi) - lo;
        return d * d;
    }
}

/// <summary>
/// y = γ·x̂ + β with x̂ = (x − μ)·invStd, written y = (x − hi)·α + β' with α = γ·invStd and β' = β − lo·α: one rounding per
/// element, and the mean's low part folded into the shift (not into x, where it would be lost for data far from zero).
/// </summary>
internal readonly struct Normalized<T>(Vector256<T> hi, Vector256<T> alpha, Vector256<T> shift) : IMap<T>, IFromAffine<T, Normalized<T>>
    where T : unmanaged
{
    public static Normalized<T> Create(T hi, T alpha, T shift) => new(Vector256.Create(hi), Vector256.Create(alpha), Vector256.Create(shift));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<T> Of(Vector256<T> x, Vector256<T> dy) => Lanes.Fma(x - hi, alpha, shift);
}

/// <summary>
/// dx = γ/(m·σ)·(m·dy − Σdy − x̂·Σ(dy·x̂)), written dx = scale·(dy − meanDy − (x − μ)·k) with scale = γ·invStd,
/// meanDy = Σdy/m and k = invStd²·Σ(dy·(x − μ))/m.
/// </summary>
internal readonly struct InputGradient<T>(Vector256<T> hi, Vector256<T> lo, Vector256<T> scale, Vector256<T> meanDy, Vector256<T> k)
    : IMap<T> where T : unmanaged
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<T> Of(Vector256<T> x, Vector256<T> dy) => scale * (dy - meanDy - ((x - hi) - lo) * k);
}

/// <summary>dx = dy·γ·invStd: the gradient of the affine map that BN is when its statistics are constants.</summary>
internal readonly struct ScaledGradient<T>(Vector256<T> scale) : IMap<T> where T : unmanaged
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<T> Of(Vector256<T> x, Vector256<T> dy) => dy * scale;
}

/// <summary>
/// What a gradient pass sees of dy: all of it (<see cref="Open{T}"/>), or only where a ReLU fused after the layer passed its
/// input (<see cref="ReluGate{T}"/>). Created per channel from the normalize constants of <see cref="Normalized{T}"/>.
/// </summary>
internal interface IGate<T, TSelf> : IFromAffine<T, TSelf> where T : unmanaged where TSelf : struct, IGate<T, TSelf>
{
    Vector256<T> Of(Vector256<T> dy, Vector256<T> x);
}

/// <summary>dy as it is: the layer without a fused activation.</summary>
internal readonly struct Open<T> : IGate<T, Open<T>> where T : unmanaged
{
    public static Open<T> Create(T hi, T alpha, T shift) => default;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<T> Of(Vector256<T> dy, Vector256<T> x) => dy;
}

/// <summary>
/// dy where y = γ·x̂ + β &gt; 0, else 0: the backward of a ReLU fused after the layer. y is recomputed from x with the
/// forward's constants, by the same operations as <see cref="Normalized{T}"/>, so the gate opens exactly where the
/// forward's ReLU passed a positive value, and dy·[y &gt; 0] has the bits of <c>ReLU.Backward</c>.
/// </summary>
internal readonly struct ReluGate<T>(Vector256<T> hi, Vector256<T> alpha, Vector256<T> shift) : IGate<T, ReluGate<T>> where T : unmanaged
{
    public static ReluGate<T> Create(T hi, T alpha, T shift) => new(Vector256.Create(hi), Vector256.Create(alpha), Vector256.Create(shift));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<T> Of(Vector256<T> dy, Vector256<T> x) => dy & Vector256.GreaterThan(Lanes.Fma(x - hi, alpha, shift), Vector256<T>.Zero);
}

/// <summary>A gradient map fed through a <see cref="ReluGate{T}"/>.</summary>
internal readonly struct Gated<T, TMap>(ReluGate<T> gate, TMap map) : IMap<T> where T : unmanaged where TMap : struct, IMap<T>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<T> Of(Vector256<T> x, Vector256<T> dy) => map.Of(x, gate.Of(dy, x));
}

/// <summary>max(f(x), 0): a map followed by a fused ReLU, with the IEEE maximum of <c>ReLU.Forward</c> (NaN stays NaN, −0 becomes +0).</summary>
internal readonly struct Rectified<T, TMap>(TMap map) : IMap<T>, IFromAffine<T, Rectified<T, TMap>>
    where T : unmanaged where TMap : struct, IMap<T>, IFromAffine<T, TMap>
{
    public static Rectified<T, TMap> Create(T hi, T alpha, T shift) => new(TMap.Create(hi, alpha, shift));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector256<T> Of(Vector256<T> x, Vector256<T> dy) => Vector256.Max(map.Of(x, dy), Vector256<T>.Zero);
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NormLab.Kernels;

/// <summary>
/// Per-lane values in double of a vector of T (two halves for float): running sums of vectors (each added vector is
/// widened, so a sum over many planes or rows keeps double precision while the work inside a vector stays in T), and
/// the per-channel arithmetic on them, lane by lane, as it would run on scalars.
/// </summary>
internal struct DoubleLanes
{
    private Vector256<double> _low, _high;

    public static DoubleLanes Create(double value) => new() { _low = Vector256.Create(value), _high = Vector256.Create(value) };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static DoubleLanes Widen<T>(Vector256<T> v) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            var (low, high) = Vector256.Widen(v.As<T, float>());
            return new() { _low = low, _high = high };
        }
        return new() { _low = v.As<T, double>() };
    }

    /// <summary>The lanes rounded to T.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly Vector256<T> Narrow<T>() where T : unmanaged =>
        typeof(T) == typeof(float) ? Vector256.Narrow(_low, _high).As<float, T>() : _low.As<double, T>();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Add<T>(Vector256<T> v) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            var (low, high) = Vector256.Widen(v.As<T, float>());
            _low += low;
            _high += high;
        }
        else
        {
            _low += v.As<T, double>();
        }
    }

    /// <summary><paramref name="lanes"/> values from <paramref name="p"/>: 8 (float), 4 (double) or 1 (lane 0).</summary>
    public static unsafe DoubleLanes Load(double* p, int lanes) => lanes switch
    {
        8 => new() { _low = Vector256.Load(p), _high = Vector256.Load(p + 4) },
        4 => new() { _low = Vector256.Load(p) },
        _ => new() { _low = Vector256.CreateScalar(*p) },
    };

    /// <summary>Stores the first <paramref name="lanes"/> lanes (8, 4 or 1).</summary>
    public readonly unsafe void Store(double* p, int lanes)
    {
        if (lanes == 1)
        {
            *p = _low.ToScalar();
            return;
        }
        _low.Store(p);
        if (lanes == 8)
            _high.Store(p + 4);
    }

    /// <summary>Whether any of the first <paramref name="lanes"/> lanes (8, 4 or 1) is not ≥ its lane of
    /// <paramref name="bound"/> (NaN is not).</summary>
    public readonly bool AnyNotAtLeast(DoubleLanes bound, int lanes) =>
        (~Bits(Vector256.GreaterThanOrEqual(_low, bound._low), Vector256.GreaterThanOrEqual(_high, bound._high)) & LaneMask(lanes)) != 0;

    /// <summary>Whether any of the first <paramref name="lanes"/> lanes (8, 4 or 1) is infinite or NaN.</summary>
    public readonly bool AnyNonFinite(int lanes)
    {
        var infinity = Vector256.Create(double.PositiveInfinity);
        return (~Bits(Vector256.LessThan(Vector256.Abs(_low), infinity), Vector256.LessThan(Vector256.Abs(_high), infinity)) & LaneMask(lanes)) != 0;
    }

    private static uint Bits(Vector256<double> low, Vector256<double> high) => low.ExtractMostSignificantBits() | high.ExtractMostSignificantBits() << 4;

    private static uint LaneMask(int lanes) => lanes == 8 ? 0xFFu : lanes == 4 ? 0xFu : 1u;

    public static DoubleLanes operator +(DoubleLanes a, DoubleLanes b) => new() { _low = a._low + b._low, _high = a._high + b._high };

    public static DoubleLanes operator -(DoubleLanes a, DoubleLanes b) => new() { _low = a._low - b._low, _high = a._high - b._high };

    public static DoubleLanes operator *(DoubleLanes a, DoubleLanes b) => new() { _low = a._low * b._low, _high = a._high * b._high };

    public static DoubleLanes operator /(DoubleLanes a, DoubleLanes b) => new() { _low = a._low / b._low, _high = a._high / b._high };

    public static DoubleLanes operator /(DoubleLanes a, double b) => new() { _low = a._low / b, _high = a._high / b };

    public readonly DoubleLanes Sqrt() => new() { _low = Vector256.Sqrt(_low), _high = Vector256.Sqrt(_high) };

    /// <summary>The sum of all lanes, in a fixed order.</summary>
    public readonly double Total => Vector256.Sum(_low) + Vector256.Sum(_high);
}

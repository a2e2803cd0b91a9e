using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NormLab.Kernels;

/// <summary>
/// The vector plumbing under the BN kernels: 256-bit vectors of T, partial vectors, tail masks, fused multiply-add.
/// 256 bits because every x64 machine this runs on accelerates them (AVX2; 512-bit
/// vectors are emulated, slowly, where AVX-512 is missing) and the loops are bound by memory, not by arithmetic.
/// Outputs use ordinary stores here; the BN maps of outputs past the cache stream whole lines (<see cref="Centered.MapStreaming{T, TMap, TMaps}"/>).
/// </summary>
internal static unsafe class Lanes
{
    /// <summary>Keeps the last <paramref name="count"/> lanes, zeroes the others.</summary>
    public static Vector256<T> Last<T>(int count) where T : unmanaged, IFloatingPointIeee754<T> =>
        Vector256.GreaterThanOrEqual(Vector256<T>.Indices, Vector256.Create(T.CreateTruncating(Vector256<T>.Count - count)));

    /// <summary>A vector of <paramref name="width"/> values from <paramref name="p"/> (a whole vector, or one value in lane 0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> Load<T>(T* p, int width) where T : unmanaged =>
        width == Vector256<T>.Count ? Vector256.Load(p) : Vector256.CreateScalar(*p);

    /// <summary>Stores the first <paramref name="width"/> lanes (a whole vector, or lane 0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store<T>(Vector256<T> v, T* p, int width) where T : unmanaged
    {
        if (width == Vector256<T>.Count)
            v.Store(p);
        else
            *p = v.ToScalar();
    }

    /// <summary>a·b + c rounded once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> Fma<T>(Vector256<T> a, Vector256<T> b, Vector256<T> c) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
            return Vector256.FusedMultiplyAdd(a.As<T, float>(), b.As<T, float>(), c.As<T, float>()).As<float, T>();
        if (typeof(T) == typeof(double))
            return Vector256.FusedMultiplyAdd(a.As<T, double>(), b.As<T, double>(), c.As<T, double>()).As<double, T>();
        return a * b + c;
    }

    /// <summary>(T)value, without the generic conversion path (which does not inline).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T FromDouble<T>(double value) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float))
            return (T)(object)(float)value;
        if (typeof(T) == typeof(double))
            return (T)(object)value;
        return T.CreateChecked(value);
    }

    /// <summary>(double)value, without the generic conversion path.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double ToDouble<T>(T value) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float))
            return (float)(object)value;
        if (typeof(T) == typeof(double))
            return (double)(object)value;
        return double.CreateChecked(value);
    }

    /// <summary>Copies fewer than a vector of values into lane order, the other lanes zero.</summary>
    public static Vector256<T> LoadPartial<T>(T* p, int count) where T : unmanaged
    {
        var v = Vector256<T>.Zero;
        T* lanes = (T*)&v;
        for (int i = 0; i < count; i++)
            lanes[i] = p[i];
        return v;
    }

    /// <summary>Stores the first <paramref name="count"/> lanes.</summary>
    public static void StorePartial<T>(Vector256<T> v, T* p, int count) where T : unmanaged
    {
        T* lanes = (T*)&v;
        for (int i = 0; i < count; i++)
            p[i] = lanes[i];
    }
}

using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NormLab.Kernels;

/// <summary>
/// The vector plumbing under the BN kernels: 512-bit vectors of T (<see cref="Vector{T}"/> is only 256 bits wide here),
/// partial vectors, tail masks, fused multiply-add, and stores that may bypass the cache.
/// </summary>
internal static unsafe class Lanes
{
    /// <summary>Outputs at least this large are written with non-temporal stores: they cannot stay in the 32 MiB L3 anyway,
    /// and streaming them keeps the inputs cached and skips the read-for-ownership. Below it, cached stores are 1.5–2× faster.</summary>
    public const long StreamingBytes = 32L << 20;

    public static bool Streams<T>(long count) where T : unmanaged =>
        Vector512.IsHardwareAccelerated && count * sizeof(T) >= StreamingBytes;

    public static int Count<T>() => Vector512<T>.Count;

    /// <summary>Keeps the last <paramref name="count"/> lanes, zeroes the others.</summary>
    public static Vector512<T> Last<T>(int count) where T : unmanaged, IFloatingPointIeee754<T> =>
        Vector512.GreaterThanOrEqual(Vector512<T>.Indices, Vector512.Create(T.CreateTruncating(Vector512<T>.Count - count)));

    /// <summary>A vector of <paramref name="width"/> values from <paramref name="p"/> (a whole vector, or one value in lane 0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> Load<T>(T* p, int width) where T : unmanaged =>
        width == Vector512<T>.Count ? Vector512.Load(p) : Vector512.CreateScalar(*p);

    /// <summary>Stores the first <paramref name="width"/> lanes (a whole vector, or lane 0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store<T>(Vector512<T> v, T* p, int width) where T : unmanaged
    {
        if (width == Vector512<T>.Count)
            v.Store(p);
        else
            *p = v.ToScalar();
    }

    /// <summary>Stores a vector; <paramref name="stream"/> means non-temporal, and then <paramref name="p"/> is 64-byte aligned.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store<T>(Vector512<T> v, T* p, bool stream) where T : unmanaged
    {
        if (stream)
            v.StoreAlignedNonTemporal(p);
        else
            v.Store(p);
    }

    /// <summary>Elements before <paramref name="p"/> reaches a 64-byte boundary.</summary>
    public static int ToAlignment<T>(T* p) where T : unmanaged => (int)((64 - ((nuint)p & 63)) & 63) / sizeof(T);

    /// <summary>Orders streaming stores before the team reports the call done.</summary>
    public static void FenceStreams(bool stream)
    {
        if (stream && Sse.IsSupported)
            Sse.StoreFence();
    }

    /// <summary>a·b + c rounded once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> Fma<T>(Vector512<T> a, Vector512<T> b, Vector512<T> c) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
            return Vector512.FusedMultiplyAdd(a.As<T, float>(), b.As<T, float>(), c.As<T, float>()).As<float, T>();
        if (typeof(T) == typeof(double))
            return Vector512.FusedMultiplyAdd(a.As<T, double>(), b.As<T, double>(), c.As<T, double>()).As<double, T>();
        return a * b + c;
    }

    /// <summary>Copies fewer than a vector of values into lane order, the other lanes zero.</summary>
    public static Vector512<T> LoadPartial<T>(T* p, int count) where T : unmanaged
    {
        var v = Vector512<T>.Zero;
        T* lanes = (T*)&v;
        for (int i = 0; i < count; i++)
            lanes[i] = p[i];
        return v;
    }

    /// <summary>Stores the first <paramref name="count"/> lanes.</summary>
    public static void StorePartial<T>(Vector512<T> v, T* p, int count) where T : unmanaged
    {
        T* lanes = (T*)&v;
        for (int i = 0; i < count; i++)
            p[i] = lanes[i];
    }
}

/// <summary>
/// Per-lane running sums in double of vectors of T: each added vector is widened, so a sum over many vectors (planes,
/// rows) keeps double precision while the work inside a vector stays in T. The order of additions is the caller's.
/// </summary>
internal struct DoubleLanes
{
    private Vector512<double> _low, _high;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Add<T>(Vector512<T> v) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            var (low, high) = Vector512.Widen(v.As<T, float>());
            _low += low;
            _high += high;
        }
        else
        {
            _low += v.As<T, double>();
        }
    }

    /// <summary>Lane-wise a + b.</summary>
    public static DoubleLanes operator +(DoubleLanes a, DoubleLanes b) => new() { _low = a._low + b._low, _high = a._high + b._high };

    /// <summary>The sum of all lanes, in a fixed order.</summary>
    public readonly double Total => Vector512.Sum(_low) + Vector512.Sum(_high);

    /// <summary>Lane j of the sum goes to <paramref name="lanes"/>[j], for as many lanes as T has.</summary>
    public readonly void CopyTo(Span<double> lanes)
    {
        _low.CopyTo(lanes);
        if (lanes.Length > Vector512<double>.Count)
            _high.CopyTo(lanes.Slice(Vector512<double>.Count));
    }
}

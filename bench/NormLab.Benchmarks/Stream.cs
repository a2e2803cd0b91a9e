using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using NormLab.Threading;

namespace NormLab.Benchmarks;

/// <summary>
/// The machine's roofline: STREAM-like copy and triad over arrays far larger than the 32 MiB L3 (with ordinary and with
/// non-temporal stores), and the fp32 FMA peak with operands in registers. Run on the same thread team as the kernels.
/// 256-bit vectors: the widest this machine's virtual CPU exposes (AVX2 + FMA; no AVX-512), and as wide as memory needs.
/// </summary>
public static unsafe class Stream
{
    private const long Length = 1L << 25; // 32 Mi floats = 128 MiB per array
    private const int Blocks = 4096;

    public static Workload[] Workloads() =>
    [
        new("stream/copy", () => Run(&Copy), Bytes: 2 * 4.0 * Length),
        new("stream/copy-nontemporal", () => Run(&CopyNonTemporal), Bytes: 2 * 4.0 * Length),
        new("stream/triad", () => Run(&Triad), Bytes: 3 * 4.0 * Length),
        new("stream/fma-peak", () => Run(&Fma), Flops: FmaFlops),
    ];

    private struct Arrays
    {
        public float* A, B, C;
    }

    private static Arrays _arrays;

    private static Action Run(delegate*<ref Arrays, int, int, void> body)
    {
        if (_arrays.A == null)
        {
            _arrays.A = Alloc();
            _arrays.B = Alloc();
            _arrays.C = Alloc();
        }
        return () =>
        {
            var args = _arrays;
            Team.For(Blocks, ref args, body);
        };
    }

    private static float* Alloc()
    {
        var p = (float*)NativeMemory.AlignedAlloc((nuint)(Length * 4), 64);
        new Span<float>(p, (int)Length).Fill(1f); // touch every page now, not inside a timed call
        return p;
    }

    private static (long Begin, long End) Range(int first, int end) => (Length / Blocks * first, Length / Blocks * end);

    private static void Copy(ref Arrays a, int first, int end)
    {
        var (b, e) = Range(first, end);
        for (long i = b; i < e; i += 8)
            Vector256.Store(Vector256.Load(a.A + i), a.B + i);
    }

    private static void CopyNonTemporal(ref Arrays a, int first, int end)
    {
        var (b, e) = Range(first, end);
        if (!Avx.IsSupported)
        {
            Copy(ref a, first, end);
            return;
        }
        for (long i = b; i < e; i += 8)
            Avx.StoreAlignedNonTemporal(a.B + i, Vector256.Load(a.A + i));
        Sse.StoreFence();
    }

    private static void Triad(ref Arrays a, int first, int end)
    {
        var (b, e) = Range(first, end);
        var s = Vector256.Create(3f);
        for (long i = b; i < e; i += 8)
            Vector256.Store(Vector256.FusedMultiplyAdd(Vector256.Load(a.C + i), s, Vector256.Load(a.B + i)), a.A + i);
    }

    private const int FmaIterations = 1 << 20;

    // Each block runs FmaIterations steps of 12 independent 8-lane FMAs (two FMA pipes × 4 cycles latency need ≥ 8 in
    // flight); Blocks / 64 blocks per call.
    private const double FmaFlops = 2.0 * 12 * 8 * FmaIterations * (Blocks / 64);

    private static void Fma(ref Arrays a, int first, int end)
    {
        for (int block = first; block < end; block++)
        {
            if (block % 64 != 0)
                continue;
            var x = Vector256.Create(0.999f);
            var y = Vector256.Create(1e-7f);
            Vector256<float> r0 = y, r1 = y, r2 = y, r3 = y, r4 = y, r5 = y, r6 = y, r7 = y, r8 = y, r9 = y, r10 = y, r11 = y;
            for (int i = 0; i < FmaIterations; i++)
            {
                r0 = Vector256.FusedMultiplyAdd(r0, x, y); r1 = Vector256.FusedMultiplyAdd(r1, x, y);
                r2 = Vector256.FusedMultiplyAdd(r2, x, y); r3 = Vector256.FusedMultiplyAdd(r3, x, y);
                r4 = Vector256.FusedMultiplyAdd(r4, x, y); r5 = Vector256.FusedMultiplyAdd(r5, x, y);
                r6 = Vector256.FusedMultiplyAdd(r6, x, y); r7 = Vector256.FusedMultiplyAdd(r7, x, y);
                r8 = Vector256.FusedMultiplyAdd(r8, x, y); r9 = Vector256.FusedMultiplyAdd(r9, x, y);
                r10 = Vector256.FusedMultiplyAdd(r10, x, y); r11 = Vector256.FusedMultiplyAdd(r11, x, y);
            }
            var sum = r0 + r1 + r2 + r3 + r4 + r5 + r6 + r7 + r8 + r9 + r10 + r11;
            a.A[block] = Vector256.Sum(sum); // keep the result alive
        }
    }
}

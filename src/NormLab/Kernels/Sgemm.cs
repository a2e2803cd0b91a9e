using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using NormLab.Threading;
using static NormLab.Kernels.SgemmKernel;

namespace NormLab.Kernels;

/// <summary>
/// Packed, cache-blocked float GEMM: <c>C += A·B</c> with A (M×K) and B (K×N) given by strides, so one routine serves
/// <see cref="Gemm.AB{T}"/>, <see cref="Gemm.ABt{T}"/> and <see cref="Gemm.AtB{T}"/>.
/// </summary>
/// <remarks>
/// <para>Blocking (after Goto and van de Geijn): for each block of NC columns and each block of K, a kc×NC block of B is
/// packed once and swept by every MC×kc block of A (a row-major A is read in place: the kernels take it through
/// strides); the kernel keeps one kc×16 (ymm) or kc×32 (zmm) panel of B in L1 while the A block streams from L2. The K block is at most <see cref="KcMax"/> and as even as possible, so a convolution's K = 288 stays
/// in one block.</para>
/// <para>Determinism: K is never split across threads and its blocking depends only on K; threads take whole MR-row or
/// tile-wide column chunks of C. Every element of C is then the same sum in the same order (see <see cref="SgemmKernel"/>)
/// for any <see cref="Team.Size"/>, inline or parallel.</para>
/// <para>Every method on the path is compiled fully optimized at once (AggressiveOptimization): with tiered compilation
/// the first calls of each product would run tier-0 packing loops, slower than the products they feed.</para>
/// <para>No allocation per call: each thread packs into its own pinned buffer, grown when a larger block first needs it.</para>
/// </remarks>
internal static unsafe class Sgemm
{
    /// <summary>Whether the packed kernels run here (AVX2 with FMA, or better); otherwise <see cref="Gemm"/> keeps its loops.</summary>
    public static bool IsSupported => Vector256.IsHardwareAccelerated && Fma.IsSupported && Avx2.IsSupported;

    /// <summary>Whether tiles are 6×32 zmm (AVX-512) rather than 6×16 ymm.</summary>
    public static readonly bool Wide = Vector512.IsHardwareAccelerated;

    private const int KcMax = 320;
    private const int MC = 144; // a multiple of MR: at most 144×320 floats = 180 KB of A per B block, in L2
    private const int NC = 512; // a multiple of both tile widths
    private const long ParallelWork = 1 << 17; // multiply-adds under which a parallel call costs more than it saves

    [ThreadStatic] private static float[]? _buffer;

    /// <summary>C[i·ldc + j] += Σ_p A(i, p)·B(p, j) with A(i, p) = a[i·rsA + p·csA] and B(p, j) = b[p·rsB + j·csB].</summary>
    /// <remarks>With <paramref name="overwrite"/>, C = A·B instead: C is never read (k must be positive).</remarks>
    public static void Run(float* c, int ldc, float* a, long rsA, long csA, float* b, long rsB, long csB, int m, int k, int n,
        bool overwrite = false)
    {
        var g = new Args { C = c, Ldc = ldc, A = a, RsA = rsA, CsA = csA, B = b, RsB = rsB, CsB = csB, M = m, K = k, N = n, Overwrite = overwrite };
        if (m > 0 && n > 0 && k >= SgemmSmall.MinDotDepth && n <= SgemmSmall.MaxDotColumns && csA == 1 && rsB == 1)
            Small(ref g, &DotRows);
        else
            Run(c, ldc, a, rsA, csA, b, rsB, csB, m, k, n, Wide, overwrite);
    }

    // The dot products of SgemmSmall, in chunks of four rows of C over the team when there is enough work.
    private static void Small(ref Args g, delegate*<ref Args, int, int, void> rows)
    {
        int chunks = (g.M + 3) / 4;
        if ((long)g.M * g.K * g.N < ParallelWork)
            rows(ref g, 0, chunks);
        else
            Team.For(chunks, ref g, rows);
    }

    private static void DotRows(ref Args g, int first, int end) =>
        SgemmSmall.Dots(g.C, g.Ldc, g.A, g.RsA, g.B, g.CsB, g.K, g.N, 4 * first, Math.Min(g.M, 4 * end), g.Overwrite);

    /// <summary>As above with the tile width chosen: tests run the zmm kernels on AVX2 machines this way, where .NET
    /// emulates Vector512 with two halves (slowly, but with the same fused arithmetic).</summary>
    internal static void Run(float* c, int ldc, float* a, long rsA, long csA, float* b, long rsB, long csB, int m, int k, int n,
        bool wide, bool overwrite = false)
    {
        if (m <= 0 || n <= 0 || k <= 0)
            return;
        int nr = wide ? 32 : 16;
        int rowChunks = (m + MR - 1) / MR, colChunks = (n + nr - 1) / nr;
        var g = new Args
        {
            C = c, Ldc = ldc, A = a, RsA = rsA, CsA = csA, B = b, RsB = rsB, CsB = csB, M = m, K = k, N = n, Nr = nr, Overwrite = overwrite,
            SplitRows = SplitRowsCheaper(rowChunks, colChunks, k, nr, csA != 1, csB != 1),
        };
        int chunks = g.SplitRows ? rowChunks : colChunks;
        if ((long)m * k * n < ParallelWork)
            Chunks(ref g, 0, chunks);
        else
            Team.For(chunks, ref g, &Chunks);
    }

    // Multiply-adds that packing one value costs, in the kernel's time: a transposed operand goes through 8×8 register
    // transposes, a row-major B panel is a straight copy.
    private const int TransposedPackCost = 8, CopyPackCost = 2;

    // Whether giving each thread rows of C costs its slowest thread less than giving it columns. Either way a thread
    // computes its share of C over all of K; with rows each packs all of B (and its rows of a transposed A), with columns
    // its share of B (and all of a transposed A). For the convolutions' and MLP's products this picks what the old rule
    // (more row chunks than column chunks) did, except where B is transposed and wide: 128×3136×128 then runs 7 % faster
    // by columns, as each thread transposes half of B instead of all of it.
    internal static bool SplitRowsCheaper(int rowChunks, int colChunks, int k, int nr, bool packA, bool transposedB)
    {
        int t = Math.Max(1, Team.Size), bCost = transposedB ? TransposedPackCost : CopyPackCost;
        long mPad = (long)rowChunks * MR, nPad = (long)colChunks * nr;
        long rowsShare = (rowChunks + t - 1) / t * MR, colsShare = (colChunks + t - 1) / t * nr;
        long byRows = rowsShare * nPad * k + bCost * nPad * k + (packA ? TransposedPackCost * rowsShare * k : 0);
        long byCols = mPad * colsShare * k + bCost * colsShare * k + (packA ? TransposedPackCost * mPad * k : 0);
        return byRows <= byCols;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Chunks(ref Args g, int begin, int end)
    {
        if (g.SplitRows)
            Block(in g, begin * MR, Math.Min(end * MR, g.M), 0, g.N);
        else
            Block(in g, 0, g.M, begin * g.Nr, Math.Min(end * g.Nr, g.N));
    }

    /// <summary>Rows [i0, i1) × columns [j0, j1) of C, all of K.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block(in Args g, int i0, int i1, int j0, int j1)
    {
        int kBlocks = (g.K + KcMax - 1) / KcMax, kcb = (g.K + kBlocks - 1) / kBlocks;
        int bSize = Math.Min(NC, (j1 - j0 + 15) / 16 * 16) * kcb;
        int aSize = Math.Min(MC, (i1 - i0 + MR - 1) / MR * MR) * kcb;
        float* bp = Buffer(bSize + aSize), ap = bp + bSize;
        float* edgeC = stackalloc float[MR * 32];
        for (int jc = j0; jc < j1; jc += NC)
        {
            int nc = Math.Min(NC, j1 - jc);
            for (int pc = 0; pc < g.K; pc += kcb)
            {
                int kc = Math.Min(kcb, g.K - pc);
                SgemmPack.B(bp, g.B + pc * g.RsB + jc * g.CsB, g.RsB, g.CsB, kc, nc, g.Nr);
                for (int ic = i0; ic < i1; ic += MC)
                {
                    var block = new Panels
                    {
                        A = g.A + ic * g.RsA + pc * g.CsA, Ars = (nint)g.RsA, Aks = (nint)g.CsA, Packed = ap, EdgeC = edgeC,
                        B = bp, C = g.C + (long)ic * g.Ldc + jc, Ldc = g.Ldc, Mc = Math.Min(MC, i1 - ic), Nc = nc, Kc = kc, Nr = g.Nr,
                        Overwrite = g.Overwrite && pc == 0, // the first block of K writes C, the others add to it
                    };
                    Macro(in block);
                }
            }
        }
    }

    // One block of A against one packed block of B: each B panel stays in L1 while the panels of A stream past it.
    // A row-major A is read in place (six rows side by side cost no more to broadcast from than a packed panel); a
    // transposed A (AtB) would touch a new cache line per step of k, so it is packed, once per block. A last partial
    // panel is always packed, zero-padded, so that no kernel reads past the end of A.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Macro(in Panels q)
    {
        int kc = q.Kc, inPlace = q.Aks == 1 ? q.Mc / MR * MR : 0;
        if (inPlace < q.Mc)
            SgemmPack.A(q.Packed + inPlace * kc, q.A + inPlace * q.Ars, q.Ars, q.Aks, q.Mc - inPlace, kc);
        for (int j = 0; j < q.Nc;)
        {
            int width = SgemmPack.PanelWidth(q.Nc - j, q.Nr), cols = Math.Min(width, q.Nc - j);
            float* bPanel = q.B + j * kc;
            for (int i = 0; i < q.Mc; i += MR)
            {
                bool direct = i < inPlace;
                float* aPanel = direct ? q.A + i * q.Ars : q.Packed + i * kc;
                nint ars = direct ? q.Ars : 1, aks = direct ? q.Aks : MR;
                float* cTile = q.C + (long)i * q.Ldc + j;
                if (i + MR <= q.Mc && cols == width)
                    Tile(width, q.Nr, kc, aPanel, ars, aks, bPanel, cTile, q.Ldc, q.Overwrite);
                else
                    EdgeTile(width, q.Nr, kc, aPanel, ars, aks, bPanel, cTile, q.Ldc, Math.Min(MR, q.Mc - i), cols, q.EdgeC, q.Overwrite);
            }
            j += width;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Tile(int width, int nr, int kc, float* a, nint ars, nint aks, float* b, float* c, int ldc, bool overwrite)
    {
        switch (width)
        {
            case 32: Tile6x32(kc, a, ars, aks, b, c, ldc, overwrite); break;
            case 16 when nr == 32: Tile6x16Zmm(kc, a, ars, aks, b, c, ldc, overwrite); break;
            case 16: Tile6x16(kc, a, ars, aks, b, c, ldc, overwrite); break;
            default: Tile6x8(kc, a, ars, aks, b, c, ldc, overwrite); break;
        }
    }

    // A tile that overhangs C: run the kernel on a copy of the part inside, then copy that part back. The kernel adds
    // its sums to the copy exactly as it would to C, so edge elements get the same bits as interior ones.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void EdgeTile(int width, int nr, int kc, float* a, nint ars, nint aks, float* b, float* c, int ldc, int rows, int cols,
        float* edge, bool overwrite)
    {
        if (!overwrite)
        {
            new Span<float>(edge, MR * width).Clear();
            for (int r = 0; r < rows; r++)
                new ReadOnlySpan<float>(c + (long)r * ldc, cols).CopyTo(new Span<float>(edge + r * width, cols));
        }
        Tile(width, nr, kc, a, ars, aks, b, edge, width, overwrite);
        for (int r = 0; r < rows; r++)
            new ReadOnlySpan<float>(edge + r * width, cols).CopyTo(new Span<float>(c + (long)r * ldc, cols));
    }

    // This thread's packing buffer, 64-byte aligned (a cache line and a zmm load), grown on first need.
    private static float* Buffer(int floats)
    {
        var buffer = _buffer;
        if (buffer is null || buffer.Length < floats + 16)
            _buffer = buffer = GC.AllocateUninitializedArray<float>(Math.Max(floats + 16, buffer?.Length * 2 ?? 0), pinned: true);
        float* p = (float*)Unsafe.AsPointer(ref buffer[0]);
        return (float*)(((nint)p + 63) & ~(nint)63);
    }

    // One A block against one packed B block, as Macro sweeps it.
    private struct Panels
    {
        public float* A, Packed, EdgeC, B, C;
        public nint Ars, Aks;
        public int Ldc, Mc, Nc, Kc, Nr;
        public bool Overwrite;
    }

    private struct Args
    {
        public float* C, A, B;
        public long RsA, CsA, RsB, CsB;
        public int Ldc, M, K, N, Nr;
        public bool SplitRows, Overwrite;
    }
}

using System.Numerics;
using System.Runtime.Intrinsics;

namespace NormLab.Kernels;

/// <summary>
/// The [n, c] kernels for tall batches: the sums walk fixed blocks of rows (each block all of its rows' channels, so the
/// threads stream disjoint stretches of memory), into per-(block, channel) partials that the caller adds up in block
/// order, and the maps walk the rows in memory order. Splitting the channels instead (the chunk kernels) gives each
/// thread a strided half of every row, and with rows of a page or more apart the second pass re-reads from memory.
/// </summary>
/// <remarks>
/// Deviations are taken around one shift per channel for the whole batch, so the blocks' partial sums add up as one sum would;
/// the blocks depend on n only, so the results do not depend on the number of threads.
/// </remarks>
internal static unsafe partial class BatchNormRows
{
    /// <summary>At most this many blocks of rows: enough to share among threads, few enough that adding them up costs nothing.</summary>
    private const int MaxRowBlocks = 16;

    /// <summary>Whether to walk blocks of rows: batches of 2 MiB or more, where a thread's strided share of the channels no
    /// longer fits in its L2 between passes, and of at least 64 rows, so that blocks hold several runs each.</summary>
    public static bool ByRowBlocks<T>(int n, int c) where T : unmanaged => n >= 64 && (long)n * c * sizeof(T) >= MinRowBlocksBytes;

    private const long MinRowBlocksBytes = 2L << 20;

    /// <summary>Each channel's shift for the one-pass sums, as <see cref="Shift{T}"/> computes it for a unit: the mean of the
    /// first <see cref="ShiftRows"/> rows, added in order.</summary>
    public static void Shifts<T>(Span<T> shifts, ReadOnlySpan<T> x, int n, int c) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int rows = Math.Min(n, ShiftRows);
        x.Slice(0, c).CopyTo(shifts);
        for (int i = 1; i < rows; i++)
            System.Numerics.Tensors.TensorPrimitives.Add(shifts, x.Slice(i * c, c), shifts);
        System.Numerics.Tensors.TensorPrimitives.Divide(shifts, T.CreateTruncating(rows), shifts);
    }

    /// <summary>Rows per block: a whole number of runs (see <see cref="RowRun"/>).</summary>
    public static int RowsPerBlock(int n) => ((n + MaxRowBlocks - 1) / MaxRowBlocks + RowRun - 1) / RowRun * RowRun;

    public static int RowBlocks(int n) => (n + RowsPerBlock(n) - 1) / RowsPerBlock(n);

    /// <summary>Σ(x − shift) into <see cref="BatchNormArgs{T}.PartialA"/> and Σ(x − shift)² into <see cref="BatchNormArgs{T}.PartialB"/>
    /// at b·c for the blocks b of <c>[first, end)</c>, with the shifts of <see cref="BatchNormArgs{T}.Hi"/>.</summary>
    public static void DeviationsByRowBlockRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T> =>
        EachBlockChunk(ref a, first, end, &DeviationsOfBlock<T>);

    /// <summary>Σ(x − mean)² into <see cref="BatchNormArgs{T}.PartialA"/> at b·c for the blocks b of <c>[first, end)</c>.</summary>
    public static void CenteredSquaresByRowBlockRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T> =>
        EachBlockChunk(ref a, first, end, &CenteredSquaresOfBlock<T>);

    /// <summary>Σdy into <see cref="BatchNormArgs{T}.PartialA"/> and Σdy·(x − μ) into <see cref="BatchNormArgs{T}.PartialB"/>
    /// at b·c for the blocks b of <c>[first, end)</c>, with μ = <see cref="BatchNormArgs{T}.Hi"/> + <see cref="BatchNormArgs{T}.Lo"/>.</summary>
    public static void GradientSumsByRowBlockRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T> =>
        EachBlockChunk(ref a, first, end, &GradientSumsOfBlock<T>);

    // body(a, scratch, b, offset of the block's first row, its rows, chunk) for each chunk of units of each block b of
    // [first, end): a block's rows are walked once per chunk, from L2 after the first.
    private static void EachBlockChunk<T>(ref BatchNormArgs<T> a, int first, int end,
        delegate*<ref BatchNormArgs<T>, Scratch<T>, int, long, int, Chunk<T>, void> body) where T : unmanaged, IFloatingPointIeee754<T>
    {
        byte* buffer = stackalloc byte[Scratch<T>.Bytes];
        var scratch = new Scratch<T>(buffer);
        int per = RowsPerBlock(a.N), units = Units<T>(a.C);
        for (int b = first; b < end; b++)
            for (int u0 = 0; u0 < units; u0 += ChunkUnits)
                body(ref a, scratch, b, (long)b * per * a.C, Math.Min(per, a.N - b * per), Chunk<T>.Of(u0, Math.Min(units, u0 + ChunkUnits), a.C));
    }

    private static void DeviationsOfBlock<T>(ref BatchNormArgs<T> a, Scratch<T> scratch, int b, long offset, int rows, Chunk<T> chunk)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int j = 0; j < chunk.Count; j++)
            scratch.Hi[j] = chunk.Load(a.Hi, j);
        Deviations(a.X + offset, rows, a.C, chunk, scratch.Hi, scratch.SumDy, scratch.SumDyXc);
        StorePartials(ref a, b, chunk, scratch.SumDy, scratch.SumDyXc);
    }

    private static void CenteredSquaresOfBlock<T>(ref BatchNormArgs<T> a, Scratch<T> scratch, int b, long offset, int rows, Chunk<T> chunk)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var squares = (SquaredDeviation<T>*)scratch.Terms;
        for (int j = 0; j < chunk.Count; j++)
        {
            var (hi, lo) = BatchNormFormulas.Split<T>(chunk.Load(a.Mean, j));
            squares[j] = new SquaredDeviation<T>(hi, lo);
        }
        Sum(a.X + offset, rows, a.C, chunk, squares, scratch.Sums);
        for (int j = 0; j < chunk.Count; j++)
            chunk.Store(scratch.Sums[j], a.PartialA + (long)b * a.C, j);
    }

    private static void GradientSumsOfBlock<T>(ref BatchNormArgs<T> a, Scratch<T> scratch, int b, long offset, int rows, Chunk<T> chunk)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int j = 0; j < chunk.Count; j++)
        {
            scratch.Hi[j] = chunk.Load(a.Hi, j);
            scratch.Lo[j] = chunk.Load(a.Lo, j);
        }
        SumGradients(a.X + offset, a.DY + offset, rows, a.C, chunk, scratch.Hi, scratch.Lo, scratch.SumDy, scratch.SumDyXc);
        StorePartials(ref a, b, chunk, scratch.SumDy, scratch.SumDyXc);
    }

    // Block b's two sums of each unit of the chunk into PartialA and PartialB.
    private static void StorePartials<T>(ref BatchNormArgs<T> a, int b, Chunk<T> chunk, DoubleLanes* sumA, DoubleLanes* sumB)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int j = 0; j < chunk.Count; j++)
        {
            chunk.Store(sumA[j], a.PartialA + (long)b * a.C, j);
            chunk.Store(sumB[j], a.PartialB + (long)b * a.C, j);
        }
    }

    /// <summary>dx = scale·(dy − meanDy − ((x − hi) − lo)·k) over rows <c>[first, end)</c>, in memory order, with the per-channel
    /// constants of <see cref="BatchNormArgs{T}.Hi"/>, <see cref="BatchNormArgs{T}.Lo"/>, <see cref="BatchNormArgs{T}.Scale"/>,
    /// <see cref="BatchNormArgs{T}.MeanDy"/> and <see cref="BatchNormArgs{T}.K"/>.</summary>
    public static void InputGradientByRowRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T> =>
        MapRows<T, InputGradient<T>, GradientMaps<T>>(a.Y, a.X, a.DY, a.C, first, end, new GradientMaps<T>(a.Hi, a.Lo, a.Scale, a.MeanDy, a.K));
}

using System.Numerics;
using System.Runtime.Intrinsics;

namespace NormLab.Kernels;

/// <summary>
/// BN kernels for the layout [n, c] (s = 1): n rows of c contiguous values, one per channel. Vectors run across channels:
/// unit u is the block of channels [u·w, u·w + w) (w = lanes of a vector) while whole blocks fit, then, for leftover
/// channels, one tail block [c − w, c) that overlaps the block before it. Each lane's arithmetic is the same in either
/// block, so the overlapped channels get the same bits twice (only dγ and dβ, which accumulate, take the tail's new lanes
/// alone). Fewer than w channels are one unit each, in lane 0. The units depend on c only, never on the thread split.
/// </summary>
/// <remarks>
/// Every pass walks the rows in memory order over a chunk of up to <see cref="ChunkUnits"/> units (a contiguous stretch
/// of each row), with one accumulator per unit: walking one block down the rows instead would stride by a whole row
/// per vector, which the prefetchers do not follow across pages. Each unit sums its rows in order, each row's value
/// widened to double, so every channel's statistics are double sums, in an order that does not depend on the chunking
/// or the thread split.
/// </remarks>
// The chunk kernels carve 26 KiB of stack per call into accumulators that they clear themselves; zeroing it first cost
// about a tenth of a 60×100 forward pass.
[System.Runtime.CompilerServices.SkipLocalsInit]
internal static unsafe partial class BatchNormRows
{
    /// <summary>Units per chunk: 64 blocks of 8 floats are 2 KiB of a row, and their accumulators 4 KiB of L1.</summary>
    private const int ChunkUnits = 64;

    /// <summary>The number of units of c channels.</summary>
    public static int Units<T>(int c) where T : unmanaged => c < Vector256<T>.Count ? c : (c + Vector256<T>.Count - 1) / Vector256<T>.Count;

    public static void MomentsRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        byte* buffer = stackalloc byte[Scratch<T>.Bytes];
        var scratch = new Scratch<T>(buffer);
        for (int u0 = first; u0 < end; u0 += ChunkUnits)
            Moments(ref a, Chunk<T>.Of(u0, Math.Min(end, u0 + ChunkUnits), a.C), scratch);
    }

    /// <summary>Statistics, then y = γ·x̂ + β, chunk by chunk.</summary>
    public static void ForwardTrainingRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        byte* buffer = stackalloc byte[Scratch<T>.Bytes];
        var scratch = new Scratch<T>(buffer);
        var maps = stackalloc Normalized<T>[ChunkUnits];
        for (int u0 = first; u0 < end; u0 += ChunkUnits)
        {
            var chunk = Chunk<T>.Of(u0, Math.Min(end, u0 + ChunkUnits), a.C);
            Moments(ref a, chunk, scratch);
            for (int j = 0; j < chunk.Count; j++)
            {
                var invStd = BatchNormFormulas.InvStd(chunk.Load(a.M2, j), a.N, a.Eps);
                chunk.Store(invStd, a.InvStd, j);
                var (hi, alpha, shift) = BatchNormFormulas.Affine<T>(chunk.Load(a.Mean, j), invStd, chunk.Gamma(ref a, j), chunk.Beta(ref a, j));
                maps[j] = new Normalized<T>(hi, alpha, shift);
            }
            Map(a.Y, a.X, a.X, a.N, a.C, chunk, maps);
        }
    }

    /// <summary>y = γ·x̂ + β over rows <c>[first, end)</c>, in memory order, with the constants of <see cref="BatchNormArgs{T}.Hi"/>.</summary>
    public static void NormalizeRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T> =>
        MapRows<T, Normalized<T>, NormalizeMaps<T>>(a.Y, a.X, a.X, a.C, first, end, new NormalizeMaps<T>(a.Hi, a.Alpha, a.Shift));

    /// <summary>
    /// y = f_ch(x, dy) over rows <c>[first, end)</c> of c channels, in memory order, two rows (half the range apart, so
    /// that each stays one sequential stream) per pass over the per-channel constants: on a batch in cache their loads
    /// bound the loop, and shared by two rows a vector of output costs two and a half loads instead of four (normalize).
    /// Leftover channels go as one vector ending at c, over the block before (the same values again), or, for fewer
    /// channels than a vector, one at a time.
    /// </summary>
    private static void MapRows<T, TMap, TMaps>(T* y, T* x, T* dy, int c, int first, int end, TMaps maps)
        where T : unmanaged, IFloatingPointIeee754<T> where TMap : struct, IMap<T> where TMaps : struct, IRowMaps<T, TMap>
    {
        int w = Vector256<T>.Count, whole = c / w * w, half = (end - first) / 2;
        long apart = (long)half * c;
        for (int i = first; i < first + half; i++)
        {
            long row = (long)i * c;
            for (int ch = 0; ch < whole; ch += w)
            {
                var f = maps.Vector(ch);
                long p = row + ch, q = p + apart;
                var (x0, dy0, x1, dy1) = (Vector256.Load(x + p), Vector256.Load(dy + p), Vector256.Load(x + q), Vector256.Load(dy + q));
                f.Of(x0, dy0).Store(y + p);
                f.Of(x1, dy1).Store(y + q);
            }
            MapRowTail<T, TMap, TMaps>(y + row, x + row, dy + row, c, whole, maps);
            MapRowTail<T, TMap, TMaps>(y + row + apart, x + row + apart, dy + row + apart, c, whole, maps);
        }
        if ((end - first) % 2 != 0)
        {
            long row = (long)(end - 1) * c;
            for (int ch = 0; ch < whole; ch += w)
                maps.Vector(ch).Of(Vector256.Load(x + row + ch), Vector256.Load(dy + row + ch)).Store(y + row + ch);
            MapRowTail<T, TMap, TMaps>(y + row, x + row, dy + row, c, whole, maps);
        }
    }

    private static void MapRowTail<T, TMap, TMaps>(T* y, T* x, T* dy, int c, int whole, TMaps maps)
        where T : unmanaged, IFloatingPointIeee754<T> where TMap : struct, IMap<T> where TMaps : struct, IRowMaps<T, TMap>
    {
        int w = Vector256<T>.Count;
        if (whole == c)
            return;
        if (c >= w)
        {
            maps.Vector(c - w).Of(Vector256.Load(x + c - w), Vector256.Load(dy + c - w)).Store(y + c - w);
            return;
        }
        for (int ch = 0; ch < c; ch++)
            y[ch] = maps.Scalar(ch).Of(Vector256.CreateScalar(x[ch]), Vector256.CreateScalar(dy[ch])).ToScalar();
    }

    /// <summary>The per-channel maps of a row, from per-channel arrays: a vector of channels from ch on, or channel ch in lane 0.</summary>
    private interface IRowMaps<T, TMap> where T : unmanaged where TMap : IMap<T>
    {
        TMap Vector(int ch);
        TMap Scalar(int ch);
    }

    private readonly struct NormalizeMaps<T>(T* hi, T* alpha, T* shift) : IRowMaps<T, Normalized<T>> where T : unmanaged
    {
        public Normalized<T> Vector(int ch) => new(Vector256.Load(hi + ch), Vector256.Load(alpha + ch), Vector256.Load(shift + ch));
        public Normalized<T> Scalar(int ch) => new(Vector256.CreateScalar(hi[ch]), Vector256.CreateScalar(alpha[ch]), Vector256.CreateScalar(shift[ch]));
    }

    private readonly struct GradientMaps<T>(T* hi, T* lo, T* scale, T* meanDy, T* k) : IRowMaps<T, InputGradient<T>> where T : unmanaged
    {
        public InputGradient<T> Vector(int ch) => new(Vector256.Load(hi + ch), Vector256.Load(lo + ch), Vector256.Load(scale + ch),
            Vector256.Load(meanDy + ch), Vector256.Load(k + ch));
        public InputGradient<T> Scalar(int ch) => new(Vector256.CreateScalar(hi[ch]), Vector256.CreateScalar(lo[ch]), Vector256.CreateScalar(scale[ch]),
            Vector256.CreateScalar(meanDy[ch]), Vector256.CreateScalar(k[ch]));
    }

    /// <summary>One pass for Σdy and Σdy·(x − μ), one for dx; see <see cref="InputGradient{T}"/>.</summary>
    public static void BackwardBatchStatsRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        byte* buffer = stackalloc byte[Scratch<T>.Bytes];
        var scratch = new Scratch<T>(buffer);
        var maps = stackalloc InputGradient<T>[ChunkUnits];
        for (int u0 = first; u0 < end; u0 += ChunkUnits)
        {
            var chunk = Chunk<T>.Of(u0, Math.Min(end, u0 + ChunkUnits), a.C);
            GradientSums(ref a, chunk, scratch);
            for (int j = 0; j < chunk.Count; j++)
            {
                var (scale, meanDy, k) = BatchNormFormulas.Gradient<T>(chunk.Load(a.InvStd, j), chunk.Gamma(ref a, j),
                    scratch.SumDy[j], scratch.SumDyXc[j], a.N);
                maps[j] = new InputGradient<T>(scratch.Hi[j], scratch.Lo[j], scale, meanDy, k);
            }
            Map(a.Y, a.X, a.DY, a.N, a.C, chunk, maps);
        }
    }

    /// <summary>Σdy and Σdy·(x − μ) into <see cref="BatchNormArgs{T}.SumDy"/>/<see cref="BatchNormArgs{T}.SumDyXc"/>, and the parameter gradients.</summary>
    public static void GradientSumsRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        byte* buffer = stackalloc byte[Scratch<T>.Bytes];
        var scratch = new Scratch<T>(buffer);
        for (int u0 = first; u0 < end; u0 += ChunkUnits)
        {
            var chunk = Chunk<T>.Of(u0, Math.Min(end, u0 + ChunkUnits), a.C);
            GradientSums(ref a, chunk, scratch);
            for (int j = 0; j < chunk.Count; j++)
            {
                chunk.Store(scratch.SumDy[j], a.SumDy, j);
                chunk.Store(scratch.SumDyXc[j], a.SumDyXc, j);
            }
        }
    }

    /// <summary>dx from the sums in <see cref="BatchNormArgs{T}.SumDy"/>/<see cref="BatchNormArgs{T}.SumDyXc"/> over <see cref="BatchNormArgs{T}.Count"/> values.</summary>
    public static void InputGradientRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var maps = stackalloc InputGradient<T>[ChunkUnits];
        for (int u0 = first; u0 < end; u0 += ChunkUnits)
        {
            var chunk = Chunk<T>.Of(u0, Math.Min(end, u0 + ChunkUnits), a.C);
            for (int j = 0; j < chunk.Count; j++)
            {
                var (hi, lo) = BatchNormFormulas.Split<T>(chunk.Load(a.Mean, j));
                var (scale, meanDy, k) = BatchNormFormulas.Gradient<T>(chunk.Load(a.InvStd, j), chunk.Gamma(ref a, j),
                    chunk.Load(a.SumDy, j), chunk.Load(a.SumDyXc, j), a.Count);
                maps[j] = new InputGradient<T>(hi, lo, scale, meanDy, k);
            }
            Map(a.Y, a.X, a.DY, a.N, a.C, chunk, maps);
        }
    }

    /// <summary>dx = dy·γ·invStd, and the parameter gradients.</summary>
    public static void BackwardFixedStatsRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        byte* buffer = stackalloc byte[Scratch<T>.Bytes];
        var scratch = new Scratch<T>(buffer);
        var maps = stackalloc ScaledGradient<T>[ChunkUnits];
        for (int u0 = first; u0 < end; u0 += ChunkUnits)
        {
            var chunk = Chunk<T>.Of(u0, Math.Min(end, u0 + ChunkUnits), a.C);
            if (a.DGamma != null || a.DBeta != null)
                GradientSums(ref a, chunk, scratch);
            for (int j = 0; j < chunk.Count; j++)
                maps[j] = new ScaledGradient<T>((chunk.Gamma(ref a, j) * chunk.Load(a.InvStd, j)).Narrow<T>());
            Map(a.Y, a.X, a.DY, a.N, a.C, chunk, maps);
        }
    }

    // Mean and M2 of a chunk's channels in one pass around a shift per channel (Shift), lane by lane as
    // BatchNormFormulas.FromDeviations computes them; a chunk with a channel whose shift lies far from its mean is summed
    // again around the means. A channel whose runs of squares overflow T (values near
    // 1e19 in float) is summed again in double (WideMoments).
    private static void Moments<T>(ref BatchNormArgs<T> a, Chunk<T> chunk, Scratch<T> scratch) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int j = 0; j < chunk.Count; j++)
            scratch.Hi[j] = Shift(a.X, a.N, a.C, chunk, j);
        Deviations(a.X, a.N, a.C, chunk, scratch.Hi, scratch.SumDy, scratch.SumDyXc);
        bool centerAgain = false, wide = false;
        for (int j = 0; j < chunk.Count; j++)
        {
            // Lane by lane, with the checks below as masks: a loop over a unit's channels cost a third of a 60×100 pass.
            DoubleLanes sum = scratch.SumDy[j], squares = scratch.SumDyXc[j];
            DoubleLanes mean = DoubleLanes.Widen(scratch.Hi[j]) + sum / a.N, m2 = squares - sum * (sum / a.N);
            chunk.Store(mean, a.Mean, j);
            chunk.Store(m2, a.M2, j);
            centerAgain |= m2.AnyNotAtLeast(squares / BatchNormFormulas.MaxMagnification, chunk.Width(j));
            wide |= mean.AnyNonFinite(chunk.Width(j)) || m2.AnyNonFinite(chunk.Width(j));
        }
        if (centerAgain)
        {
            var squares = (SquaredDeviation<T>*)scratch.Terms;
            for (int j = 0; j < chunk.Count; j++)
            {
                var (hi, lo) = BatchNormFormulas.Split<T>(chunk.Load(a.Mean, j));
                squares[j] = new SquaredDeviation<T>(hi, lo);
            }
            Sum(a.X, a.N, a.C, chunk, squares, scratch.Sums);
            for (int j = 0; j < chunk.Count; j++)
            {
                chunk.Store(scratch.Sums[j], a.M2, j);
                wide |= scratch.Sums[j].AnyNonFinite(chunk.Width(j));
            }
        }
        if (!wide)
            return;
        for (int j = 0; j < chunk.Count; j++)
            for (int lane = 0; lane < chunk.Width(j); lane++)
            {
                int ch = chunk.Channel(j, lane);
                if (WideMoments.Needed(a.Mean[ch], a.M2[ch]))
                    (a.Mean[ch], a.M2[ch]) = WideMoments.Of(a.X + ch, a.N, 1, a.C);
            }
    }

    /// <summary>Rows averaged to center the one-pass sums on: the mean of 8 values lies about σ/3 from the channel's, so the
    /// second pass of <see cref="Moments{T}"/> is all but never needed (around a single row it is, for 1 % of channels).</summary>
    internal const int ShiftRows = 8;

    // Unit j's shift: the mean of the first ShiftRows rows, summed in order in T (Shifts gives the same bits for all channels at once).
    private static Vector256<T> Shift<T>(T* x, int n, int c, Chunk<T> chunk, int j) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int rows = Math.Min(n, ShiftRows);
        var sum = Vector256<T>.Zero;
        for (int i = 0; i < rows; i++)
            sum += chunk.Load(x + (long)i * c, j);
        return sum / Vector256.Create(T.CreateTruncating(rows));
    }

    // Rows summed in T, in registers, before one widening add into the double accumulators: a read-modify-write of the
    // accumulator per row cost more than the arithmetic. Runs start at multiples of RowRun, whatever the thread split.
    // Eight rows: with rows a multiple of 4 KiB apart, a run's lines share one L1 set, and more than its 12 ways thrash.
    private const int RowRun = 8;

    // Σ(x − shift) into sums[j] and Σ(x − shift)² into squares[j] for unit j of the chunk, over the rows in order, two
    // blocks at a time (a cache line of each row).
    private static void Deviations<T>(T* x, int n, int c, Chunk<T> chunk, Vector256<T>* shifts, DoubleLanes* sums, DoubleLanes* squares)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int j = 0; j < chunk.Count; j++)
            sums[j] = squares[j] = default;
        int w = Vector256<T>.Count;
        for (int i0 = 0; i0 < n; i0 += RowRun)
        {
            int rows = Math.Min(RowRun, n - i0);
            T* first = x + (long)i0 * c;
            int j = 0;
            for (; j + 1 < chunk.RegularBlocks; j += 2)
            {
                T* p = first + chunk.FirstBlockChannel + j * w;
                Vector256<T> shift0 = shifts[j], shift1 = shifts[j + 1], s0 = default, s1 = default, q0 = default, q1 = default;
                for (int i = 0; i < rows; i++, p += c)
                {
                    var d0 = Vector256.Load(p) - shift0;
                    var d1 = Vector256.Load(p + w) - shift1;
                    s0 += d0;
                    s1 += d1;
                    q0 = Lanes.Fma(d0, d0, q0);
                    q1 = Lanes.Fma(d1, d1, q1);
                }
                sums[j].Add(s0);
                sums[j + 1].Add(s1);
                squares[j].Add(q0);
                squares[j + 1].Add(q1);
            }
            for (; j < chunk.Count; j++)
            {
                bool block = j < chunk.Blocks;
                T* p = first + chunk.Channel(j, 0);
                Vector256<T> shift = shifts[j], s0 = default, q0 = default;
                for (int i = 0; i < rows; i++, p += c)
                {
                    var d = (block ? Vector256.Load(p) : Vector256.CreateScalar(*p)) - shift;
                    s0 += d;
                    q0 = Lanes.Fma(d, d, q0);
                }
                sums[j].Add(s0);
                squares[j].Add(q0);
            }
        }
    }

    // sums[j] = Σ over the rows, in order (in runs of RowRun), of terms[j](x) for unit j of the chunk.
    private static void Sum<T, TTerm>(T* x, int n, int c, Chunk<T> chunk, TTerm* terms, DoubleLanes* sums)
        where T : unmanaged, IFloatingPointIeee754<T> where TTerm : unmanaged, ITerm<T>
    {
        for (int j = 0; j < chunk.Count; j++)
            sums[j] = default;
        int w = Vector256<T>.Count;
        for (int i0 = 0; i0 < n; i0 += RowRun)
        {
            int rows = Math.Min(RowRun, n - i0);
            T* first = x + (long)i0 * c;
            for (int j = 0; j < chunk.Blocks; j++)
            {
                T* p = first + chunk.Channel(j, 0);
                var run = Vector256<T>.Zero;
                for (int i = 0; i < rows; i++, p += c)
                    run += terms[j].Of(Vector256.Load(p));
                sums[j].Add(run);
            }
            for (int j = chunk.Blocks; j < chunk.Count; j++)
            {
                T* p = first + chunk.FirstSingleChannel + (j - chunk.Blocks);
                var run = Vector256<T>.Zero;
                for (int i = 0; i < rows; i++, p += c)
                    run += terms[j].Of(Vector256.CreateScalar(*p));
                sums[j].Add(run);
            }
        }
    }

    // Σdy and Σdy·(x − μ) of a chunk's units into scratch.SumDy/SumDyXc, μ into scratch.Hi/Lo; accumulates dβ and dγ.
    private static void GradientSums<T>(ref BatchNormArgs<T> a, Chunk<T> chunk, Scratch<T> scratch) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int j = 0; j < chunk.Count; j++)
            (scratch.Hi[j], scratch.Lo[j]) = BatchNormFormulas.Split<T>(chunk.Load(a.Mean, j));
        SumGradients(a.X, a.DY, a.N, a.C, chunk, scratch.Hi, scratch.Lo, scratch.SumDy, scratch.SumDyXc);
        for (int j = 0; j < chunk.Count; j++)
        {
            // dβ += Σdy, dγ += Σdy·x̂ = invStd·Σdy·(x − μ), rounded to T before the addition as in the plane layout; a tail
            // block adds its new lanes only (the block before it has added the others).
            var dBeta = scratch.SumDy[j].Narrow<T>();
            var dGamma = (scratch.SumDyXc[j] * chunk.Load(a.InvStd, j)).Narrow<T>();
            if (j < chunk.Blocks)
            {
                // A block's lanes in one vector (channel by channel it cost a tenth of a 60×100 backward); lanes that
                // are not new keep their bits.
                int at = chunk.Channel(j, 0);
                var fresh = Lanes.Last<T>(Vector256<T>.Count - chunk.FirstNewLane(j));
                if (a.DBeta != null)
                    AddLanes(a.DBeta + at, dBeta, fresh);
                if (a.DGamma != null)
                    AddLanes(a.DGamma + at, dGamma, fresh);
                continue;
            }
            int single = chunk.Channel(j, 0);
            if (a.DBeta != null)
                a.DBeta[single] += dBeta.ToScalar();
            if (a.DGamma != null)
                a.DGamma[single] += dGamma.ToScalar();
        }
    }

    private static void AddLanes<T>(T* p, Vector256<T> v, Vector256<T> lanes) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var old = Vector256.Load(p);
        Vector256.ConditionalSelect(lanes, old + v, old).Store(p);
    }

    // Σdy into sumDy[j] and Σdy·((x − hi[j]) − lo[j]) into sumDyXc[j] for unit j of the chunk, over the rows in order, two
    // blocks at a time (as in Deviations).
    private static void SumGradients<T>(T* xs, T* dys, int n, int c, Chunk<T> chunk, Vector256<T>* hi, Vector256<T>* lo,
        DoubleLanes* sumDy, DoubleLanes* sumDyXc) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int j = 0; j < chunk.Count; j++)
            sumDy[j] = sumDyXc[j] = default;
        int w = Vector256<T>.Count;
        for (int i0 = 0; i0 < n; i0 += RowRun)
        {
            int rows = Math.Min(RowRun, n - i0);
            long first = (long)i0 * c;
            int j = 0;
            for (; j + 1 < chunk.RegularBlocks; j += 2)
            {
                long at = first + chunk.FirstBlockChannel + j * w;
                T* x = xs + at, dy = dys + at;
                Vector256<T> hi0 = hi[j], lo0 = lo[j], hi1 = hi[j + 1], lo1 = lo[j + 1];
                Vector256<T> g0 = default, g1 = default, p0 = default, p1 = default;
                for (int i = 0; i < rows; i++, x += c, dy += c)
                {
                    var dy0 = Vector256.Load(dy);
                    var dy1 = Vector256.Load(dy + w);
                    g0 += dy0;
                    g1 += dy1;
                    p0 = Lanes.Fma(dy0, (Vector256.Load(x) - hi0) - lo0, p0);
                    p1 = Lanes.Fma(dy1, (Vector256.Load(x + w) - hi1) - lo1, p1);
                }
                sumDy[j].Add(g0);
                sumDy[j + 1].Add(g1);
                sumDyXc[j].Add(p0);
                sumDyXc[j + 1].Add(p1);
            }
            for (; j < chunk.Count; j++)
            {
                bool block = j < chunk.Blocks;
                long at = first + chunk.Channel(j, 0);
                T* x = xs + at, dy = dys + at;
                Vector256<T> hi0 = hi[j], lo0 = lo[j], g0 = default, p0 = default;
                for (int i = 0; i < rows; i++, x += c, dy += c)
                {
                    var dy0 = block ? Vector256.Load(dy) : Vector256.CreateScalar(*dy);
                    var x0 = block ? Vector256.Load(x) : Vector256.CreateScalar(*x);
                    g0 += dy0;
                    p0 = Lanes.Fma(dy0, (x0 - hi0) - lo0, p0);
                }
                sumDy[j].Add(g0);
                sumDyXc[j].Add(p0);
            }
        }
    }

    // y = maps[j](x, dy) for unit j of the chunk, two rows at a time (half the batch apart, so that each stays one
    // sequential stream), which halves the loads of the maps' constants.
    private static void Map<T, TMap>(T* y, T* x, T* dy, int n, int c, Chunk<T> chunk, TMap* maps)
        where T : unmanaged, IFloatingPointIeee754<T> where TMap : unmanaged, IMap<T>
    {
        int half = n / 2;
        long apart = (long)half * c;
        for (int i = 0; i < half; i++)
        {
            long row = (long)i * c;
            for (int j = 0; j < chunk.Blocks; j++)
            {
                long p = row + chunk.Channel(j, 0), q = p + apart;
                var (x0, dy0, x1, dy1) = (Vector256.Load(x + p), Vector256.Load(dy + p), Vector256.Load(x + q), Vector256.Load(dy + q));
                maps[j].Of(x0, dy0).Store(y + p);
                maps[j].Of(x1, dy1).Store(y + q);
            }
            MapSingles(y + row, x + row, dy + row, chunk, maps);
            MapSingles(y + row + apart, x + row + apart, dy + row + apart, chunk, maps);
        }
        if (n % 2 != 0)
        {
            long row = (long)(n - 1) * c;
            for (int j = 0; j < chunk.Blocks; j++)
            {
                long p = row + chunk.Channel(j, 0);
                maps[j].Of(Vector256.Load(x + p), Vector256.Load(dy + p)).Store(y + p);
            }
            MapSingles(y + row, x + row, dy + row, chunk, maps);
        }
    }

    // The chunk's single channels (c < w) of one row.
    private static void MapSingles<T, TMap>(T* y, T* x, T* dy, Chunk<T> chunk, TMap* maps)
        where T : unmanaged, IFloatingPointIeee754<T> where TMap : unmanaged, IMap<T>
    {
        for (int j = chunk.Blocks, at = chunk.FirstSingleChannel; j < chunk.Count; j++, at++)
            y[at] = maps[j].Of(Vector256.CreateScalar(x[at]), Vector256.CreateScalar(dy[at])).ToScalar();
    }

    /// <summary>Units [u0, u1): <see cref="Blocks"/> blocks from channel <see cref="FirstBlockChannel"/>, the last of them
    /// the tail block [c − w, c) when the chunk ends the channels and c is no multiple of w; or, for c &lt; w, single
    /// channels from <see cref="FirstSingleChannel"/>. Unit j of the chunk is its j-th.</summary>
    private readonly struct Chunk<T> where T : unmanaged
    {
        public int FirstBlockChannel { get; init; }
        public int Blocks { get; init; }
        /// <summary>The blocks at FirstBlockChannel + j·w: all of them but a tail block.</summary>
        public int RegularBlocks { get; init; }
        public int FirstSingleChannel { get; init; }
        public int Count { get; init; }
        private int TailStart { get; init; }

        public static Chunk<T> Of(int u0, int u1, int c)
        {
            int w = Vector256<T>.Count;
            if (c < w)
                return new Chunk<T> { FirstSingleChannel = u0, Count = u1 - u0 };
            bool tail = u1 == Units<T>(c) && c % w != 0;
            return new Chunk<T>
            {
                FirstBlockChannel = u0 * w, Blocks = u1 - u0, RegularBlocks = u1 - u0 - (tail ? 1 : 0), Count = u1 - u0, TailStart = c - w,
            };
        }

        public int Width(int j) => j < Blocks ? Vector256<T>.Count : 1;

        public int Channel(int j, int lane) =>
            j < RegularBlocks ? FirstBlockChannel + j * Vector256<T>.Count + lane
            : j < Blocks ? TailStart + lane
            : FirstSingleChannel + j - Blocks;

        /// <summary>The first lane of unit j that no other unit holds: past the overlap for a tail block, else 0.</summary>
        public int FirstNewLane(int j) => j >= RegularBlocks && j < Blocks ? FirstBlockChannel + j * Vector256<T>.Count - TailStart : 0;

        public DoubleLanes Gamma<TT>(ref BatchNormArgs<TT> a, int j) where TT : unmanaged, IFloatingPointIeee754<TT> =>
            a.Gamma == null ? DoubleLanes.Create(1.0) : DoubleLanes.Widen(Lanes.Load(a.Gamma + Channel(j, 0), Width(j)));

        public DoubleLanes Beta<TT>(ref BatchNormArgs<TT> a, int j) where TT : unmanaged, IFloatingPointIeee754<TT> =>
            a.Beta == null ? DoubleLanes.Create(0.0) : DoubleLanes.Widen(Lanes.Load(a.Beta + Channel(j, 0), Width(j)));

        /// <summary>Unit j's values of a per-channel array (or of row 0), lane 0 only for a single channel.</summary>
        public Vector256<T> Load(T* p, int j) => Lanes.Load(p + Channel(j, 0), Width(j));

        public void Store(Vector256<T> v, T* p, int j) => Lanes.Store(v, p + Channel(j, 0), Width(j));

        public DoubleLanes Load(double* p, int j) => DoubleLanes.Load(p + Channel(j, 0), Width(j));

        public void Store(DoubleLanes v, double* p, int j) => v.Store(p + Channel(j, 0), Width(j));

    }

    /// <summary>Per-thread working memory for chunks, carved out of one stack buffer: per-unit accumulators, terms and means.</summary>
    private readonly struct Scratch<T> where T : unmanaged
    {
        public const int Bytes = ChunkUnits * (4 * 64 + 2 * 32);
        public readonly DoubleLanes* Sums, SumDy, SumDyXc;
        public readonly byte* Terms;
        public readonly Vector256<T>* Hi, Lo;

        public Scratch(byte* p)
        {
            Sums = (DoubleLanes*)p;
            SumDy = Sums + ChunkUnits;
            SumDyXc = SumDy + ChunkUnits;
            Terms = (byte*)(SumDyXc + ChunkUnits); // up to 64 bytes a term
            Hi = (Vector256<T>*)(Terms + ChunkUnits * 64);
            Lo = Hi + ChunkUnits;
        }
    }
}

using System.Numerics;
using System.Runtime.Intrinsics;

namespace NormLab.Kernels;

/// <summary>
/// BN training sums for the layout [n, c, s] with s &gt; 1, walking memory in order: the batch is cut into fixed blocks of
/// whole samples, each block is summed plane after plane into per-(block, channel) partials, and the caller merges the
/// partials block after block.
/// </summary>
/// <remarks>
/// <para>Why not channel by channel (<see cref="BatchNormPlanes"/>): a channel's planes lie a whole sample apart, so every
/// plane starts on a new page and the hardware prefetchers start over; with planes of a few KiB that stalls more than
/// the arithmetic costs, and a channel of a large batch no longer fits in L2 for its second and third pass anyway. In
/// order, the sums stream, and so does the pass after them (same split: each thread re-reads what it summed, from its
/// own cache where that fits).</para>
/// <para>The blocks depend on n only and the partials merge in block order, so the results do not depend on the number of
/// threads.</para>
/// </remarks>
internal static unsafe class BatchNormBlocks
{
    /// <summary>At most this many blocks: enough to share among threads, few enough that their merges cost nothing.</summary>
    private const int MaxBlocks = 16;

    /// <summary>
    /// Whether the in-order walk pays: planes shorter than a 4 KiB page, where a walk of one channel would jump to a new
    /// page every plane, but long enough that a plane's fixed cost (two horizontal sums, one merge) is small; a batch of
    /// at least two samples to split; and a batch that fits in the last-level cache with room to spare, so that the pass
    /// after the sums finds it there. Past that, a second in-order pass finds nothing in cache, while the channel-group
    /// walk of <see cref="BatchNormPlanes"/> keeps each group in cache between its passes (128×256×14×14, 26 MB: forward
    /// and backward about 10% faster that way; on batches that fit, the two walks measured alike or in-order ahead).
    /// </summary>
    public static bool Applies<T>(int n, int c, int s) where T : unmanaged =>
        n >= 2 && s >= MinPlane && (long)s * sizeof(T) < 4096 && (long)n * c * s * sizeof(T) <= MaxBatchBytes;

    /// <summary>Half the 32 MiB last-level cache: the backward reads x and dy.</summary>
    private const long MaxBatchBytes = 16L << 20;

    /// <summary>Planes shorter than this stay with the channel walk (8×8 planes: the merges would cost as much as the sums).</summary>
    private const int MinPlane = 128;

    public static int SamplesPerBlock(int n) => (n + MaxBlocks - 1) / MaxBlocks;

    public static int Blocks(int n) => (n + SamplesPerBlock(n) - 1) / SamplesPerBlock(n);

    /// <summary>
    /// Mean and M2 of every channel over each block b of <c>[first, end)</c>, into <see cref="BatchNormArgs{T}.PartialA"/>
    /// and <see cref="BatchNormArgs{T}.PartialB"/> at b·c: each plane in two passes while it is in L1 (around its first
    /// value, then around its mean), merged into the block's running statistics sample after sample (Chan et al.).
    /// </summary>
    public static void MomentsRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = a.N, c = a.C, s = a.S, per = SamplesPerBlock(n);
        for (int b = first; b < end; b++)
        {
            double* mean = a.PartialA + (long)b * c, m2 = a.PartialB + (long)b * c;
            int i0 = b * per, i1 = Math.Min(n, i0 + per);
            T* plane = a.X + (long)i0 * c * s;
            for (int ch = 0; ch < c; ch++, plane += s)
                (mean[ch], m2[ch]) = PlaneMoments(plane, s);
            for (int i = i0 + 1; i < i1; i++)
            {
                // Every plane holds s values, so the merge weights depend on the sample only.
                double k = i - i0, toMean = 1 / (k + 1), toM2 = s * k / (k + 1);
                for (int ch = 0; ch < c; ch++, plane += s)
                {
                    var (pm, pm2) = PlaneMoments(plane, s);
                    double delta = pm - mean[ch];
                    mean[ch] += delta * toMean;
                    m2[ch] += pm2 + delta * delta * toM2;
                }
            }
        }
    }

    /// <summary>The channels' mean and M2 from the blocks' partials, merged in block order (block after block, for a walk
    /// in memory order).</summary>
    public static void MergeMoments(double* mean, double* m2, double* partialMean, double* partialM2, int n, int c, int s)
    {
        int per = SamplesPerBlock(n), blocks = Blocks(n);
        new ReadOnlySpan<double>(partialMean, c).CopyTo(new Span<double>(mean, c));
        new ReadOnlySpan<double>(partialM2, c).CopyTo(new Span<double>(m2, c));
        for (int b = 1; b < blocks; b++)
        {
            double countA = (double)b * per * s, countB = (double)(Math.Min(n, (b + 1) * per) - b * per) * s, count = countA + countB;
            double toMean = countB / count, toM2 = countA * countB / count;
            double* blockMean = partialMean + (long)b * c, blockM2 = partialM2 + (long)b * c;
            for (int ch = 0; ch < c; ch++)
            {
                double delta = blockMean[ch] - mean[ch];
                mean[ch] += delta * toMean;
                m2[ch] += blockM2[ch] + delta * delta * toM2;
            }
        }
    }

    /// <summary>
    /// Σdy and Σdy·(x − μ) of every channel over each block b of <c>[first, end)</c>, into <see cref="BatchNormArgs{T}.PartialA"/>
    /// and <see cref="BatchNormArgs{T}.PartialB"/> at b·c, with μ = <see cref="BatchNormArgs{T}.Hi"/> + <see cref="BatchNormArgs{T}.Lo"/>.
    /// </summary>
    public static void GradientSumsRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (a.Relu)
            GradientSumsRange<T, ReluGate<T>>(ref a, first, end);
        else
            GradientSumsRange<T, Open<T>>(ref a, first, end);
    }

    private static void GradientSumsRange<T, TGate>(ref BatchNormArgs<T> a, int first, int end)
        where T : unmanaged, IFloatingPointIeee754<T> where TGate : struct, IGate<T, TGate>
    {
        int n = a.N, c = a.C, s = a.S, per = SamplesPerBlock(n);
        T* scratch = stackalloc T[a.Argmax == null ? 0 : s];
        for (int b = first; b < end; b++)
        {
            double* sumDy = a.PartialA + (long)b * c, sumDyXc = a.PartialB + (long)b * c;
            new Span<double>(sumDy, c).Clear();
            new Span<double>(sumDyXc, c).Clear();
            int i0 = b * per, i1 = Math.Min(n, i0 + per);
            long at = (long)i0 * c * s;
            for (int i = i0; i < i1; i++)
                for (int ch = 0; ch < c; ch++, at += s)
                {
                    var (dy, dyXc) = Centered.SumGradients(a.GradientOf(i * c + ch, at, scratch), a.X + at, s, Vector256.Create(a.Hi[ch]),
                        Vector256.Create(a.Lo[ch]), TGate.Create(a.Hi[ch], a.Alpha[ch], a.Shift[ch]));
                    sumDy[ch] += DoubleLanes.Widen(dy).Total;
                    sumDyXc[ch] += DoubleLanes.Widen(dyXc).Total;
                }
        }
    }

    /// <summary>dx = γ·invStd·(dy − Σdy/m − (x − μ)·k) over planes <c>[first, end)</c> of the n·c, in memory order, with the
    /// per-channel constants of <see cref="BatchNormArgs{T}.Hi"/>, <see cref="BatchNormArgs{T}.Lo"/>, <see cref="BatchNormArgs{T}.Scale"/>,
    /// <see cref="BatchNormArgs{T}.MeanDy"/> and <see cref="BatchNormArgs{T}.K"/>.</summary>
    public static void InputGradientRange<T>(ref BatchNormArgs<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int c = a.C, s = a.S;
        T* scratch = stackalloc T[a.Argmax == null ? 0 : s];
        for (int plane = first, ch = first % c; plane < end; plane++, ch = ch + 1 == c ? 0 : ch + 1)
        {
            var gradient = new InputGradient<T>(Vector256.Create(a.Hi[ch]), Vector256.Create(a.Lo[ch]), Vector256.Create(a.Scale[ch]),
                Vector256.Create(a.MeanDy[ch]), Vector256.Create(a.K[ch]));
            long at = (long)plane * s;
            T* dy = a.GradientOf(plane, at, scratch);
            if (a.Relu)
                Centered.Map(a.Y + at, a.X + at, dy, s,
                    new Gated<T, InputGradient<T>>(ReluGate<T>.Create(a.Hi[ch], a.Alpha[ch], a.Shift[ch]), gradient));
            else
                Centered.Map(a.Y + at, a.X + at, dy, s, gradient);
        }
    }

    // One plane's mean and M2 in one pass around its first value, again around its mean where that lost bits
    // (BatchNormFormulas.FromDeviations), and in double where the float sums overflow.
    private static (double Mean, double M2) PlaneMoments<T>(T* x, int s) where T : unmanaged, IFloatingPointIeee754<T>
    {
        T shift = *x;
        var (sum, squares) = Centered.Deviations(x, s, Vector256.Create(shift));
        var (mean, m2, sumAgain) = BatchNormFormulas.FromDeviations(Lanes.ToDouble(shift), DoubleLanes.Widen(sum).Total,
            DoubleLanes.Widen(squares).Total, s);
        if (sumAgain)
        {
            var (hi, lo) = Centered.Split<T>(mean);
            m2 = DoubleLanes.Widen(Centered.Sum(x, s, new SquaredDeviation<T>(Vector256.Create(hi), Vector256.Create(lo)))).Total;
        }
        return WideMoments.Needed(mean, m2) ? WideMoments.Of(x, 1, s, s) : (mean, m2);
    }
}

using System.Buffers;
using System.Numerics;
using System.Runtime.Intrinsics;
using NormLab.Threading;

namespace NormLab.Kernels;

/// <summary>
/// Batch-normalization kernels over a tensor viewed as [n, c, s]: n batch rows, c channels, s values per channel per row
/// (s = H·W for images, L for sequences, 1 for [N, C]). Statistics are per channel over m = n·s values.
/// The kernels are pure: the modules decide which statistics to use and how to update running ones.
/// </summary>
/// <remarks>
/// Two layouts, two walks: s &gt; 1 goes plane by plane (<see cref="BatchNormPlanes"/>), s = 1 vector by vector across
/// channels (<see cref="BatchNormRows"/>). Work is split over the <see cref="Team"/> by channel (or by fixed block of
/// channels), or in eval by plane or row; each channel's sums run in the same order whatever the split, so the results
/// do not depend on the number of threads.
/// </remarks>
/// <remarks>
/// Per-channel statistics travel as double (mean, M2, 1/σ) so that the normalization of data far from zero stays exact;
/// see <see cref="Centered"/>. Outputs must not overlap inputs.
/// </remarks>
/// <remarks>
/// The plane walks also run a ReLU fused after the layer (internal overloads with <c>relu</c>, used by
/// <see cref="BatchNorm.ForwardRelu"/>): the maps clamp y at 0 and the gradient passes gate dy by y &gt; 0
/// (<see cref="ReluGate{T}"/>), with the same bits as the two layers one after the other.
/// </remarks>
public static unsafe class BatchNormKernels
{
    // Below this many values a parallel call (about 0.6 µs) costs more than it saves.
    private const long ParallelWork = 1 << 14;

    /// <summary>
    /// Per-channel mean and M2 = Σ(x − mean)² of a batch slice, in two passes (no E[x²] − E[x]² cancellation): around
    /// the channel's first value, then around the mean. The count per channel is n·s. Any slice of rows of a batch is a
    /// valid input, so ghost batches and cross-process merges (count, mean, M2) reuse it.
    /// </summary>
    public static void Moments<T>(ReadOnlySpan<T> x, int n, int c, int s, Span<double> mean, Span<double> m2)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckSizes(x.Length, n, c, s, mean.Length, m2.Length);
        mean.Slice(0, c).Clear();
        m2.Slice(0, c).Clear();
        if ((long)n * s == 0)
            return;
        if (InOrder<T>(n, c, s))
        {
            InOrderMoments(x, n, c, s, mean, m2);
            return;
        }
        fixed (T* px = x)
        fixed (double* pMean = mean, pM2 = m2)
        {
            var args = new BatchNormArgs<T> { X = px, Mean = pMean, M2 = pM2, N = n, C = c, S = s };
            ByChannel(ref args, &BatchNormPlanes.MomentsRange<T>, &BatchNormRows.MomentsRange<T>);
        }
    }

    // Whether the training kernels walk memory in order over fixed blocks of samples (BatchNormBlocks) or of rows
    // (BatchNormRows.Blocks) rather than channel by channel; a choice by shape only, never by thread count.
    private static bool InOrder<T>(int n, int c, int s) where T : unmanaged =>
        s > 1 ? BatchNormBlocks.Applies<T>(n, c, s) : BatchNormRows.ByRowBlocks<T>(n, c);

    // Moments walking memory in order: partials per block over the team, merged here in block order.
    private static void InOrderMoments<T>(ReadOnlySpan<T> x, int n, int c, int s, Span<double> mean, Span<double> m2)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int blocks = s > 1 ? BatchNormBlocks.Blocks(n) : BatchNormRows.RowBlocks(n);
        double[] partials = ArrayPool<double>.Shared.Rent(2 * blocks * c);
        T[]? shifts = s == 1 ? ArrayPool<T>.Shared.Rent(c) : null; // one per channel for the row blocks
        fixed (T* px = x, pShifts = shifts)
        fixed (double* pMean = mean, pM2 = m2, pPartials = partials)
        {
            var args = new BatchNormArgs<T>
            {
                X = px, Mean = pMean, M2 = pM2, PartialA = pPartials, PartialB = pPartials + blocks * c, Hi = pShifts, N = n, C = c, S = s,
            };
            if (s > 1)
            {
                Run(ref args, blocks, &BatchNormBlocks.MomentsRange<T>);
                BatchNormBlocks.MergeMoments(pMean, pM2, args.PartialA, args.PartialB, n, c, s);
            }
            else
            {
                RowBlockMoments(ref args, blocks);
            }
        }
        if (shifts is not null)
            ArrayPool<T>.Shared.Return(shifts);
        ArrayPool<double>.Shared.Return(partials);
    }

    // [n, c] moments from the row blocks' sums of deviations around each channel's shift, summed again around the means
    // when a shift lies far from its mean (BatchNormFormulas.FromDeviations), and in double where floats overflow.
    private static void RowBlockMoments<T>(ref BatchNormArgs<T> a, int blocks) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = a.N, c = a.C;
        BatchNormRows.Shifts(new Span<T>(a.Hi, c), new ReadOnlySpan<T>(a.X, Math.Min(n, BatchNormRows.ShiftRows) * c), n, c);
        Run(ref a, blocks, &BatchNormRows.DeviationsByRowBlockRange<T>);
        AddBlocks(a.Mean, a.PartialA, blocks, c); // Σd for now
        AddBlocks(a.M2, a.PartialB, blocks, c);   // Σd² for now
        bool centerAgain = false;
        for (int ch = 0; ch < c; ch++)
        {
            (a.Mean[ch], a.M2[ch], bool sumAgain) = BatchNormFormulas.FromDeviations(Lanes.ToDouble(a.Hi[ch]), a.Mean[ch], a.M2[ch], n);
            centerAgain |= sumAgain;
        }
        if (centerAgain)
        {
            Run(ref a, blocks, &BatchNormRows.CenteredSquaresByRowBlockRange<T>);
            AddBlocks(a.M2, a.PartialA, blocks, c);
        }
        for (int ch = 0; ch < c; ch++)
            if (WideMoments.Needed(a.Mean[ch], a.M2[ch]))
                (a.Mean[ch], a.M2[ch]) = WideMoments.Of(a.X + ch, n, 1, c);
    }

    // sum[ch] = Σ over the blocks, in order, of partial[b·c + ch]; block after block, since a walk down the blocks per
    // channel would stride by c doubles, and with c a multiple of 512 every load would land in one L1 set.
    private static void AddBlocks(double* sum, double* partial, int blocks, int c)
    {
        new Span<double>(sum, c).Clear();
        for (int b = 0; b < blocks; b++)
            System.Numerics.Tensors.TensorPrimitives.Add(new ReadOnlySpan<double>(sum, c), new ReadOnlySpan<double>(partial + (long)b * c, c),
                new Span<double>(sum, c));
    }

    /// <summary>
    /// The training forward pass in one call: per channel the statistics of <see cref="Moments{T}"/>, invStd =
    /// 1/√(M2/m + eps), and y = γ·(x − mean)·invStd + β while the channel is still in cache.
    /// Empty <paramref name="gamma"/>/<paramref name="beta"/> mean γ = 1, β = 0. Requires n·s &gt; 0.
    /// </summary>
    public static void ForwardTraining<T>(Span<T> y, ReadOnlySpan<T> x, ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta, double eps,
        int n, int c, int s, Span<double> mean, Span<double> m2, Span<double> invStd)
        where T : unmanaged, IFloatingPointIeee754<T> =>
        ForwardTraining(y, x, gamma, beta, eps, n, c, s, mean, m2, invStd, relu: false);

    /// <summary><see cref="ForwardTraining{T}(Span{T}, ReadOnlySpan{T}, ReadOnlySpan{T}, ReadOnlySpan{T}, double, int, int, int, Span{double}, Span{double}, Span{double})"/>,
    /// followed by y = max(y, 0) in the same pass when <paramref name="relu"/> (planes only, s &gt; 1).</summary>
    internal static void ForwardTraining<T>(Span<T> y, ReadOnlySpan<T> x, ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta, double eps,
        int n, int c, int s, Span<double> mean, Span<double> m2, Span<double> invStd, bool relu)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckRelu(relu, s);
        CheckSizes(x.Length, n, c, s, mean.Length, m2.Length);
        CheckSizes(y.Length, n, c, s, invStd.Length, invStd.Length);
        CheckOutput(y, x);
        if ((long)n * s == 0)
            throw new ArgumentException("BatchNorm kernel: training statistics need at least one value per channel.");
        if (InOrder<T>(n, c, s) || SplitsRows<T>(n, c, s))
        {
            // The statistics (in order, or by chunks of channels), then the normalize pass in memory order.
            Moments(x, n, c, s, mean, m2);
            InvStd(invStd.Slice(0, c), m2, (double)n * s, eps);
            Normalize(y, x, mean, invStd, gamma, beta, n, c, s, relu);
            return;
        }
        fixed (T* py = y, px = x, pGamma = gamma, pBeta = beta)
        fixed (double* pMean = mean, pM2 = m2, pInvStd = invStd)
        {
            var args = new BatchNormArgs<T>
            {
                Y = py, X = px, Gamma = pGamma, Beta = pBeta, Mean = pMean, M2 = pM2, InvStd = pInvStd, N = n, C = c, S = s, Eps = eps,
                Streaming = Streams<T>(y.Length, s), Relu = relu,
            };
            ByChannel(ref args, &BatchNormPlanes.ForwardTrainingRange<T>, &BatchNormRows.ForwardTrainingRange<T>);
        }
    }

    /// <summary>invStd = 1/√(var + eps) per channel, from the biased variance var = M2/count.</summary>
    public static void InvStd(Span<double> invStd, ReadOnlySpan<double> m2, double count, double eps)
    {
        for (int ch = 0; ch < invStd.Length; ch++)
            invStd[ch] = BatchNormFormulas.InvStd(m2[ch], count, eps);
    }

    /// <summary>
    /// running = (1 − factor)·running + factor·batch, with the unbiased batch variance M2/(count − 1) (PyTorch's convention).
    /// </summary>
    public static void UpdateRunning(Span<float> runningMean, Span<float> runningVar, ReadOnlySpan<double> mean, ReadOnlySpan<double> m2,
        double count, double factor)
    {
        // Eight channels at a time in double, the same operations as the scalar loop: one by one it was a sixth of a 60×100
        // forward.
        int c = runningMean.Length, ch = 0;
        double keep = 1 - factor, unbias = count - 1;
        if (Vector256.IsHardwareAccelerated)
        {
            var (vKeep, vFactor, vUnbias) = (Vector256.Create(keep), Vector256.Create(factor), Vector256.Create(unbias));
            for (; ch <= c - 8; ch += 8)
            {
                var (rmLo, rmHi) = Vector256.Widen(Vector256.Create<float>(runningMean.Slice(ch, 8)));
                var (rvLo, rvHi) = Vector256.Widen(Vector256.Create<float>(runningVar.Slice(ch, 8)));
                var (meanLo, meanHi) = (Vector256.Create<double>(mean.Slice(ch, 4)), Vector256.Create<double>(mean.Slice(ch + 4, 4)));
                var (m2Lo, m2Hi) = (Vector256.Create<double>(m2.Slice(ch, 4)), Vector256.Create<double>(m2.Slice(ch + 4, 4)));
                Vector256.Narrow(vKeep * rmLo + vFactor * meanLo, vKeep * rmHi + vFactor * meanHi).CopyTo(runningMean.Slice(ch, 8));
                Vector256.Narrow(vKeep * rvLo + vFactor * (m2Lo / vUnbias), vKeep * rvHi + vFactor * (m2Hi / vUnbias)).CopyTo(runningVar.Slice(ch, 8));
            }
        }
        for (; ch < c; ch++)
        {
            double unbiasedVar = m2[ch] / unbias;
            runningMean[ch] = (float)(keep * runningMean[ch] + factor * mean[ch]);
            runningVar[ch] = (float)(keep * runningVar[ch] + factor * unbiasedVar);
        }
    }

    /// <summary>
    /// y = γ·x̂ + β with x̂ = (x − mean)·invStd, per channel. Empty <paramref name="gamma"/>/<paramref name="beta"/> mean γ = 1, β = 0.
    /// Walks memory in order (no reduction to keep a channel together for).
    /// </summary>
    public static void Normalize<T>(Span<T> y, ReadOnlySpan<T> x, ReadOnlySpan<double> mean, ReadOnlySpan<double> invStd,
        ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta, int n, int c, int s)
        where T : unmanaged, IFloatingPointIeee754<T> => Normalize(y, x, mean, invStd, gamma, beta, n, c, s, relu: false);

    /// <summary><see cref="Normalize{T}(Span{T}, ReadOnlySpan{T}, ReadOnlySpan{double}, ReadOnlySpan{double}, ReadOnlySpan{T}, ReadOnlySpan{T}, int, int, int)"/>,
    /// followed by y = max(y, 0) in the same pass when <paramref name="relu"/> (planes only, s &gt; 1).</summary>
    internal static void Normalize<T>(Span<T> y, ReadOnlySpan<T> x, ReadOnlySpan<double> mean, ReadOnlySpan<double> invStd,
        ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta, int n, int c, int s, bool relu)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckRelu(relu, s);
        CheckSizes(x.Length, n, c, s, mean.Length, invStd.Length);
        CheckSizes(y.Length, n, c, s, c, c);
        CheckOutput(y, x);
        // The per-channel constants, once per call rather than once per plane or row.
        T[]? rented = c > 512 ? ArrayPool<T>.Shared.Rent(3 * c) : null;
        Span<T> constants = rented is not null ? rented : stackalloc T[3 * c];
        fixed (T* py = y, px = x, pk = constants, pGamma = gamma, pBeta = beta)
        fixed (double* pMean = mean, pInvStd = invStd)
        {
            var args = new BatchNormArgs<T>
            {
                Y = py, X = px, Gamma = pGamma, Beta = pBeta, Mean = pMean, InvStd = pInvStd, Hi = pk, Alpha = pk + c, Shift = pk + 2 * c,
                N = n, C = c, S = s, Relu = relu,
            };
            AffineConstants(ref args);
            args.Streaming = Streams<T>(y.Length, s);
            if (s == 1)
                Run(ref args, n, &BatchNormRows.NormalizeRange<T>);
            else
                Run(ref args, n * c, &BatchNormPlanes.NormalizeRange<T>);
        }
        if (rented is not null)
            ArrayPool<T>.Shared.Return(rented);
    }

    /// <summary>
    /// <see cref="Normalize{T}(Span{T}, ReadOnlySpan{T}, ReadOnlySpan{double}, ReadOnlySpan{double}, ReadOnlySpan{T}, ReadOnlySpan{T}, int, int, int)"/>
    /// with a fused ReLU, then a 2×2 max pooling with stride 2, in one pass (<see cref="BatchNormPool"/>): [n, c, h, w] →
    /// <paramref name="pooled"/> [n, c, h/2, w/2] and <paramref name="argmax"/>, each window's index in its plane, as
    /// <see cref="Pooling.MaxForward{T}"/> gives them on the rectified output. Planes where <see cref="BatchNormPool.Applies"/>.
    /// </summary>
    internal static void NormalizeReluPool(Span<float> pooled, Span<int> argmax, ReadOnlySpan<float> x, ReadOnlySpan<double> mean,
        ReadOnlySpan<double> invStd, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta, int n, int c, int height, int width)
    {
        int s = height * width;
        if (!BatchNormPool.Applies(height, width))
            throw new ArgumentException($"BatchNorm kernel: {height}×{width} planes do not pool 2×2 in the normalize pass (even sides, at least 8 wide).");
        CheckSizes(x.Length, n, c, s, mean.Length, invStd.Length);
        if (pooled.Length != x.Length / 4 || argmax.Length != pooled.Length)
            throw new ArgumentException($"BatchNorm kernel: {pooled.Length} pooled values and {argmax.Length} indices for {x.Length} inputs (want a quarter).");
        float[]? rented = c > 512 ? ArrayPool<float>.Shared.Rent(3 * c) : null;
        Span<float> constants = rented is not null ? rented : stackalloc float[3 * c];
        fixed (float* py = pooled, px = x, pk = constants, pGamma = gamma, pBeta = beta)
        fixed (int* pArgmax = argmax)
        fixed (double* pMean = mean, pInvStd = invStd)
        {
            var args = new BatchNormArgs<float>
            {
                Y = py, X = px, Gamma = pGamma, Beta = pBeta, Mean = pMean, InvStd = pInvStd, Hi = pk, Alpha = pk + c, Shift = pk + 2 * c,
                N = n, C = c, S = s, Argmax = pArgmax, Width = width,
            };
            AffineConstants(ref args);
            Run(ref args, n * c, &BatchNormPool.PlanesRange);
        }
        if (rented is not null)
            ArrayPool<float>.Shared.Return(rented);
    }

    /// <summary>
    /// Backward of the training forward pass (statistics from this batch):
    /// <code>
    /// dβ += Σ dy          dγ += Σ dy·x̂
    /// dx  = γ/(m·σ)·(m·dy − Σdy − x̂·Σ(dy·x̂))      σ = 1/invStd
    /// </code>
    /// Written as dx = γ·invStd·(dy − Σdy/m − (x − mean)·k) with k = invStd²·Σ(dy·(x − mean))/m.
    /// Empty <paramref name="dGamma"/>/<paramref name="dBeta"/> skip those gradients.
    /// </summary>
    public static void BackwardBatchStats<T>(Span<T> dx, Span<T> dGamma, Span<T> dBeta, ReadOnlySpan<T> dy, ReadOnlySpan<T> x,
        ReadOnlySpan<double> mean, ReadOnlySpan<double> invStd, ReadOnlySpan<T> gamma, int n, int c, int s)
        where T : unmanaged, IFloatingPointIeee754<T> =>
        BackwardBatchStats(dx, dGamma, dBeta, dy, x, mean, invStd, gamma, default, n, c, s, relu: false);

    /// <summary>
    /// <see cref="BackwardBatchStats{T}(Span{T}, Span{T}, Span{T}, ReadOnlySpan{T}, ReadOnlySpan{T}, ReadOnlySpan{double}, ReadOnlySpan{double}, ReadOnlySpan{T}, int, int, int)"/>
    /// of the layer followed by a ReLU when <paramref name="relu"/>: dy is the gradient of max(y, 0) and counts only where
    /// y = γ·x̂ + β, recomputed from x with <paramref name="beta"/>, is positive (planes only, s &gt; 1).
    /// </summary>
    internal static void BackwardBatchStats<T>(Span<T> dx, Span<T> dGamma, Span<T> dBeta, ReadOnlySpan<T> dy, ReadOnlySpan<T> x,
        ReadOnlySpan<double> mean, ReadOnlySpan<double> invStd, ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta, int n, int c, int s, bool relu)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckRelu(relu, s);
        if (InOrder<T>(n, c, s) || SplitsRows<T>(n, c, s))
            InOrderBackward(dx, dGamma, dBeta, dy, x, mean, invStd, gamma, beta, n, c, s, relu);
        else
            Backward(dx, dGamma, dBeta, dy, x, mean, invStd, gamma, beta, n, c, s, relu,
                &BatchNormPlanes.BackwardBatchStatsRange<T>, &BatchNormRows.BackwardBatchStatsRange<T>);
    }

    /// <summary>
    /// The backward of <see cref="NormalizeReluPool"/> in training mode: <see cref="BackwardBatchStats{T}(Span{T}, Span{T}, Span{T}, ReadOnlySpan{T}, ReadOnlySpan{T}, ReadOnlySpan{double}, ReadOnlySpan{double}, ReadOnlySpan{T}, int, int, int)"/>
    /// with a fused ReLU, given the gradient of the pooled output. Each window's gradient goes to its argmax as the
    /// pooling's backward sends it, one plane at a time into a scratch plane, so the full-size gradient of the ReLU's
    /// output is never written: the same bits as the pooling's backward followed by the pair's. Batches of the in-order
    /// walk only (<see cref="PoolsBackward"/>).
    /// </summary>
    internal static void BackwardReluPool(Span<float> dx, Span<float> dGamma, Span<float> dBeta, ReadOnlySpan<float> pooledDy, ReadOnlySpan<int> argmax,
        ReadOnlySpan<float> x, ReadOnlySpan<double> mean, ReadOnlySpan<double> invStd, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta,
        int n, int c, int height, int width)
    {
        if (!PoolsBackward(n, c, height, width))
            throw new ArgumentException($"BatchNorm kernel: a {n}×{c}×{height}×{width} batch does not take the pooled backward.");
        if (pooledDy.Length != x.Length / 4 || argmax.Length != pooledDy.Length)
            throw new ArgumentException($"BatchNorm kernel: {pooledDy.Length} pooled gradients and {argmax.Length} indices for {x.Length} inputs (want a quarter).");
        InOrderBackward(dx, dGamma, dBeta, pooledDy, x, mean, invStd, gamma, beta, n, c, height * width, relu: true, argmax, width);
    }

    /// <summary>Whether <see cref="BackwardReluPool"/> takes a batch: planes the pooling pass takes, walked in order, and
    /// short enough for a scratch plane on the stack.</summary>
    internal static bool PoolsBackward(int n, int c, int height, int width) =>
        BatchNormPool.Applies(height, width) && BatchNormBlocks.Applies<float>(n, c, height * width);

    // BackwardBatchStats walking memory in order: the sums per block over the team, added here in block order (or, for
    // SplitsRows, by chunks of channels), then dx plane by plane or row by row. With argmax, dy is the gradient of a
    // fused 2×2 max pooling's output (BackwardReluPool).
    private static void InOrderBackward<T>(Span<T> dx, Span<T> dGamma, Span<T> dBeta, ReadOnlySpan<T> dy, ReadOnlySpan<T> x,
        ReadOnlySpan<double> mean, ReadOnlySpan<double> invStd, ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta, int n, int c, int s, bool relu,
        ReadOnlySpan<int> argmax = default, int width = 0)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckBackward(dx, argmax.IsEmpty ? dy : x, x, mean, invStd, n, c, s); // a pooled dy was checked by BackwardReluPool
        bool chunkSums = !InOrder<T>(n, c, s); // SplitsRows: the sums by chunks of channels
        int blocks = chunkSums ? 0 : s > 1 ? BatchNormBlocks.Blocks(n) : BatchNormRows.RowBlocks(n);
        double[] partials = ArrayPool<double>.Shared.Rent(2 * blocks * c + 2 * c);
        T[] constants = ArrayPool<T>.Shared.Rent(7 * c);
        fixed (T* pdx = dx, pdy = dy, px = x, pGamma = gamma, pBeta = beta, pdGamma = dGamma, pdBeta = dBeta, pk = constants)
        fixed (double* pMean = mean, pInvStd = invStd, pPartials = partials)
        fixed (int* pArgmax = argmax)
        {
            var args = new BatchNormArgs<T>
            {
                Y = pdx, DY = pdy, X = px, Gamma = pGamma, Beta = pBeta, DGamma = pdGamma, DBeta = pdBeta, Mean = pMean, InvStd = pInvStd,
                PartialA = pPartials, PartialB = pPartials + blocks * c, SumDy = pPartials + 2 * blocks * c, SumDyXc = pPartials + 2 * blocks * c + c,
                Hi = pk, Lo = pk + c, Scale = pk + 2 * c, MeanDy = pk + 3 * c, K = pk + 4 * c, Alpha = pk + 5 * c, Shift = pk + 6 * c,
                N = n, C = c, S = s, Relu = relu, Argmax = argmax.IsEmpty ? null : pArgmax, Width = width,
            };
            for (int ch = 0; ch < c; ch++)
                (args.Hi[ch], args.Lo[ch]) = Centered.Split<T>(mean[ch]);
            if (relu)
                for (int ch = 0; ch < c; ch++)
                    (_, args.Alpha[ch], args.Shift[ch]) = BatchNormFormulas.Affine<T>(mean[ch], invStd[ch], args.GammaOf(ch), args.BetaOf(ch));
            if (chunkSums)
            {
                // The parameter gradients are added below, once, from the sums.
                var sums = args with { DGamma = null, DBeta = null };
                Run(ref sums, BatchNormRows.Units<T>(c), &BatchNormRows.GradientSumsRange<T>);
            }
            else
            {
                Run(ref args, blocks, s > 1 ? &BatchNormBlocks.GradientSumsRange<T> : &BatchNormRows.GradientSumsByRowBlockRange<T>);
                AddBlocks(args.SumDy, args.PartialA, blocks, c);
                AddBlocks(args.SumDyXc, args.PartialB, blocks, c);
            }
            double m = (double)n * s;
            for (int ch = 0; ch < c; ch++)
            {
                args.AccumulateParameterGradients(ch, args.SumDy[ch], args.SumDyXc[ch]);
                (args.Scale[ch], args.MeanDy[ch], args.K[ch]) = BatchNormFormulas.Gradient<T>(invStd[ch], args.GammaOf(ch), args.SumDy[ch], args.SumDyXc[ch], m);
            }
            if (s > 1)
                Run(ref args, n * c, &BatchNormBlocks.InputGradientRange<T>);
            else
                Run(ref args, n, &BatchNormRows.InputGradientByRowRange<T>);
        }
        ArrayPool<T>.Shared.Return(constants);
        ArrayPool<double>.Shared.Return(partials);
    }

    /// <summary>
    /// Backward of <see cref="Normalize{T}(Span{T}, ReadOnlySpan{T}, ReadOnlySpan{double}, ReadOnlySpan{double}, ReadOnlySpan{T}, ReadOnlySpan{T}, int, int, int)"/> when the statistics are constants (eval mode, frozen statistics): the layer is
    /// the affine map y = γ·invStd·(x − mean) + β, so dx = dy·γ·invStd, dγ += Σ dy·x̂, dβ += Σ dy.
    /// </summary>
    public static void BackwardFixedStats<T>(Span<T> dx, Span<T> dGamma, Span<T> dBeta, ReadOnlySpan<T> dy, ReadOnlySpan<T> x,
        ReadOnlySpan<double> mean, ReadOnlySpan<double> invStd, ReadOnlySpan<T> gamma, int n, int c, int s)
        where T : unmanaged, IFloatingPointIeee754<T> =>
        BackwardFixedStats(dx, dGamma, dBeta, dy, x, mean, invStd, gamma, default, n, c, s, relu: false);

    /// <summary>
    /// <see cref="BackwardFixedStats{T}(Span{T}, Span{T}, Span{T}, ReadOnlySpan{T}, ReadOnlySpan{T}, ReadOnlySpan{double}, ReadOnlySpan{double}, ReadOnlySpan{T}, int, int, int)"/>
    /// with a fused ReLU after the layer, as in <see cref="BackwardBatchStats{T}(Span{T}, Span{T}, Span{T}, ReadOnlySpan{T}, ReadOnlySpan{T}, ReadOnlySpan{double}, ReadOnlySpan{double}, ReadOnlySpan{T}, ReadOnlySpan{T}, int, int, int, bool)"/>.
    /// </summary>
    internal static void BackwardFixedStats<T>(Span<T> dx, Span<T> dGamma, Span<T> dBeta, ReadOnlySpan<T> dy, ReadOnlySpan<T> x,
        ReadOnlySpan<double> mean, ReadOnlySpan<double> invStd, ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta, int n, int c, int s, bool relu)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckRelu(relu, s);
        Backward(dx, dGamma, dBeta, dy, x, mean, invStd, gamma, beta, n, c, s, relu,
            &BatchNormPlanes.BackwardFixedStatsRange<T>, &BatchNormRows.BackwardFixedStatsRange<T>);
    }

    /// <summary>
    /// The first half of <see cref="BackwardBatchStats{T}(Span{T}, Span{T}, Span{T}, ReadOnlySpan{T}, ReadOnlySpan{T}, ReadOnlySpan{double}, ReadOnlySpan{double}, ReadOnlySpan{T}, int, int, int)"/>: per channel Σdy and Σdy·(x − mean) of this slice, and the
    /// parameter gradients dβ += Σdy, dγ += invStd·Σdy·(x − mean). Split from the second half (<see cref="InputGradientFromSums{T}"/>)
    /// so that the sums of a batch spread over processes can be added up in between (SyncBatchNorm). An empty slice gives zeros.
    /// </summary>
    public static void GradientSums<T>(Span<T> dGamma, Span<T> dBeta, ReadOnlySpan<T> dy, ReadOnlySpan<T> x, ReadOnlySpan<double> mean,
        ReadOnlySpan<double> invStd, int n, int c, int s, Span<double> sumDy, Span<double> sumDyXc)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckSizes(x.Length, n, c, s, mean.Length, invStd.Length);
        CheckSizes(dy.Length, n, c, s, sumDy.Length, sumDyXc.Length);
        sumDy.Slice(0, c).Clear();
        sumDyXc.Slice(0, c).Clear();
        if ((long)n * s == 0)
            return;
        fixed (T* pdy = dy, px = x, pdGamma = dGamma, pdBeta = dBeta)
        fixed (double* pMean = mean, pInvStd = invStd, pSumDy = sumDy, pSumDyXc = sumDyXc)
        {
            var args = new BatchNormArgs<T>
            {
                DY = pdy, X = px, DGamma = pdGamma, DBeta = pdBeta, Mean = pMean, InvStd = pInvStd, SumDy = pSumDy, SumDyXc = pSumDyXc,
                N = n, C = c, S = s,
            };
            ByChannel(ref args, &BatchNormPlanes.GradientSumsRange<T>, &BatchNormRows.GradientSumsRange<T>);
        }
    }

    /// <summary>
    /// The second half of <see cref="BackwardBatchStats{T}(Span{T}, Span{T}, Span{T}, ReadOnlySpan{T}, ReadOnlySpan{T}, ReadOnlySpan{double}, ReadOnlySpan{double}, ReadOnlySpan{T}, int, int, int)"/>: dx = γ·invStd·(dy − Σdy/m − (x − mean)·invStd²·Σdy·(x − mean)/m)
    /// with the sums and the count m of the whole batch, of which this slice may be a part.
    /// </summary>
    public static void InputGradientFromSums<T>(Span<T> dx, ReadOnlySpan<T> dy, ReadOnlySpan<T> x, ReadOnlySpan<double> mean, ReadOnlySpan<double> invStd,
        ReadOnlySpan<T> gamma, ReadOnlySpan<double> sumDy, ReadOnlySpan<double> sumDyXc, double count, int n, int c, int s)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckSizes(x.Length, n, c, s, mean.Length, invStd.Length);
        CheckSizes(dy.Length, n, c, s, sumDy.Length, sumDyXc.Length);
        CheckSizes(dx.Length, n, c, s, c, c);
        CheckOutput(dx, x);
        CheckOutput(dx, dy);
        if ((long)n * s == 0)
            return;
        fixed (T* pdx = dx, pdy = dy, px = x, pGamma = gamma)
        fixed (double* pMean = mean, pInvStd = invStd, pSumDy = sumDy, pSumDyXc = sumDyXc)
        {
            var args = new BatchNormArgs<T>
            {
                Y = pdx, DY = pdy, X = px, Gamma = pGamma, Mean = pMean, InvStd = pInvStd, SumDy = pSumDy, SumDyXc = pSumDyXc, Count = count,
                N = n, C = c, S = s,
            };
            ByChannel(ref args, &BatchNormPlanes.InputGradientRange<T>, &BatchNormRows.InputGradientRange<T>);
        }
    }

    private static void Backward<T>(Span<T> dx, Span<T> dGamma, Span<T> dBeta, ReadOnlySpan<T> dy, ReadOnlySpan<T> x,
        ReadOnlySpan<double> mean, ReadOnlySpan<double> invStd, ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta, int n, int c, int s, bool relu,
        delegate*<ref BatchNormArgs<T>, int, int, void> planes, delegate*<ref BatchNormArgs<T>, int, int, void> rows)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckBackward(dx, dy, x, mean, invStd, n, c, s);
        if ((long)n * s == 0)
            return;
        fixed (T* pdx = dx, pdy = dy, px = x, pGamma = gamma, pBeta = beta, pdGamma = dGamma, pdBeta = dBeta)
        fixed (double* pMean = mean, pInvStd = invStd)
        {
            var args = new BatchNormArgs<T>
            {
                Y = pdx, DY = pdy, X = px, Gamma = pGamma, Beta = pBeta, DGamma = pdGamma, DBeta = pdBeta, Mean = pMean, InvStd = pInvStd,
                N = n, C = c, S = s, Streaming = Streams<T>(dx.Length, s), Relu = relu,
            };
            ByChannel(ref args, planes, rows);
        }
    }

    // Hi, Alpha, Shift of every channel from Mean, InvStd, Gamma, Beta: a vector of channels at a time, then one by one.
    private static void AffineConstants<T>(ref BatchNormArgs<T> a) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector256<T>.Count, ch = 0;
        for (; ch <= a.C - w; ch += w)
        {
            var gamma = a.Gamma == null ? DoubleLanes.Create(1.0) : DoubleLanes.Widen(Vector256.Load(a.Gamma + ch));
            var beta = a.Beta == null ? DoubleLanes.Create(0.0) : DoubleLanes.Widen(Vector256.Load(a.Beta + ch));
            var (hi, alpha, shift) = BatchNormFormulas.Affine<T>(DoubleLanes.Load(a.Mean + ch, w), DoubleLanes.Load(a.InvStd + ch, w), gamma, beta);
            hi.Store(a.Hi + ch);
            alpha.Store(a.Alpha + ch);
            shift.Store(a.Shift + ch);
        }
        for (; ch < a.C; ch++)
            (a.Hi[ch], a.Alpha[ch], a.Shift[ch]) = BatchNormFormulas.Affine<T>(a.Mean[ch], a.InvStd[ch], a.GammaOf(ch), a.BetaOf(ch));
    }

    // Channels (s > 1) or fixed blocks of channels (s = 1) over the team.
    private static void ByChannel<T>(ref BatchNormArgs<T> args, delegate*<ref BatchNormArgs<T>, int, int, void> planes,
        delegate*<ref BatchNormArgs<T>, int, int, void> rows) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (args.S == 1)
            Run(ref args, BatchNormRows.Units<T>(args.C), rows);
        else
            Run(ref args, args.C, planes);
    }

    private static void Run<T>(ref BatchNormArgs<T> args, int count, delegate*<ref BatchNormArgs<T>, int, int, void> range)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if ((long)args.N * args.C * args.S < ParallelWork)
            range(ref args, 0, count);
        else
            Team.For(count, ref args, range);
    }

    /// <summary>Outputs of at least this many bytes are written with non-temporal stores: with the input they fill the 32 MiB
    /// last-level cache, so a plain store's read of its line costs memory traffic and evicts the input, and the output
    /// would not be in cache for the next layer anyway. Measured at 2 threads on 256×64×32×32 (64 MiB): eval 4.4 ms
    /// instead of 4.9, training forward 7.2 instead of 8.2, with the backward 17.5 instead of 19.5; on 128×256×14×14
    /// (25.7 MB): eval 1.35–1.47 ms instead of 1.57–1.77, training forward 1.8–2.3 instead of 2.65–2.7, with the backward
    /// 5.0–5.5 instead of 6.1–6.7 (best of three runs each).</summary>
    private const long StreamingBytes = 16L << 20;

    // [n, c] batches of an L2 or more (and less than the row blocks take): statistics by chunks of channels, as for
    // smaller batches, but the maps after them by rows, in memory order. A thread's chunk (its channels over every row)
    // no longer stays in its L2 between the sums and the map, and then a map in memory order runs faster: 256×1024 (1 MiB)
    // at 2 threads, forward 0.058 → 0.051 ms and with the backward 0.16 → 0.12 ms; at 512 KiB it measured a little slower.
    private static bool SplitsRows<T>(int n, int c, int s) where T : unmanaged => s == 1 && (long)n * c * sizeof(T) >= SplitRowsBytes;

    private const long SplitRowsBytes = 1L << 20;

    // Runs of planes stream whole (Centered.MapStreaming), so only planes shorter than a line are left out.
    private static bool Streams<T>(int length, int s) where T : unmanaged =>
        Centered.StreamsPlanes<T>(s) && (long)length * sizeof(T) >= StreamingBytes;

    private static void CheckBackward<T>(Span<T> dx, ReadOnlySpan<T> dy, ReadOnlySpan<T> x, ReadOnlySpan<double> mean, ReadOnlySpan<double> invStd,
        int n, int c, int s)
    {
        CheckSizes(x.Length, n, c, s, mean.Length, invStd.Length);
        CheckSizes(dy.Length, n, c, s, c, c);
        CheckSizes(dx.Length, n, c, s, c, c);
        CheckOutput(dx, x);
        CheckOutput(dx, dy);
    }

    // The fused ReLU is written for the plane walks; [n, c] batches ([N, C] BatchNorm1d) run the ReLU as a layer of its own.
    private static void CheckRelu(bool relu, int s)
    {
        if (relu && s == 1)
            throw new ArgumentException("BatchNorm kernel: a fused ReLU needs planes (s > 1).");
    }

    private static void CheckSizes(int length, int n, int c, int s, int stats1, int stats2)
    {
        if ((long)n * c * s != length)
            throw new ArgumentException($"BatchNorm kernel: {length} values do not form [n={n}, c={c}, s={s}].");
        if (stats1 < c || stats2 < c)
            throw new ArgumentException($"BatchNorm kernel: per-channel buffers of {Math.Min(stats1, stats2)} values for {c} channels.");
    }

    private static void CheckOutput<T>(Span<T> output, ReadOnlySpan<T> input)
    {
        if (output.Overlaps(input))
            throw new ArgumentException("BatchNorm kernel: the output overlaps an input (the kernels do not work in place).");
    }
}

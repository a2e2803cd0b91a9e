using NormLab.Distributed;
using NormLab.Kernels;

namespace NormLab;

/// <summary>
/// Batch normalization of a batch split across processes (PyTorch's <c>torch.nn.SyncBatchNorm</c>): in training each rank
/// normalizes its part with the statistics of the whole batch, so the ranks' outputs, input gradients and running
/// statistics are those of <see cref="BatchNorm"/> on all the parts concatenated in rank order.
/// <list type="bullet">
/// <item>Forward: one all-gather of each rank's (count, mean, M2) per channel, merged in rank order in double with Chan et
/// al.'s pairwise formula (sums and sums of squares in float lose data offset from zero). Every rank merges the same
/// values in the same order, so all get the same bits, and all update the running statistics alike, with the whole
/// batch's unbiased variance.</item>
/// <item>Backward: one all-reduce of (Σdy, Σdy·(x − μ)) per channel. dγ and dβ are this rank's share (they add up over the
/// ranks to BatchNorm's), to be summed with the other gradients as data-parallel training does.</item>
/// <item>Eval mode and frozen statistics need no communication. Eval without running statistics normalizes with this
/// rank's batch, as in PyTorch. With one rank the layer is BatchNorm.</item>
/// <item>Parts of any size, one sample or none included, as long as the whole batch has more than one value per channel
/// (otherwise BatchNorm's error, on every rank).</item>
/// </list>
/// Every rank must run the layer's training forward and backward passes together. Input [N, C, *]; parameters, buffers
/// and their names are BatchNorm's.
/// </summary>
public sealed class SyncBatchNorm : BatchNorm
{
    private readonly double[] _local;
    private readonly double[] _sums;
    private double[] _gathered = [];
    private double _count;
    private bool _synchronized;

    /// <summary>Creates the layer (γ = 1, β = 0, running mean 0, running variance 1).</summary>
    /// <param name="numFeatures">C, the number of channels.</param>
    /// <param name="eps">Added to the variance under the square root.</param>
    /// <param name="momentum">Weight of the new batch statistic in the running average; null for a cumulative average.</param>
    /// <param name="affine">Whether the layer has learnable γ and β.</param>
    /// <param name="trackRunningStats">Whether the layer keeps running statistics for eval mode.</param>
    /// <param name="communicator">The ranks that share batches (PyTorch's <c>process_group</c>); null for <see cref="SingleProcess"/>.</param>
    public SyncBatchNorm(int numFeatures, double eps = 1e-5, double? momentum = 0.1, bool affine = true, bool trackRunningStats = true,
        ICommunicator? communicator = null)
        : base(numFeatures, eps, momentum, affine, trackRunningStats)
    {
        Communicator = communicator ?? SingleProcess.Instance;
        _local = new double[1 + 2 * numFeatures];
        _sums = new double[2 * numFeatures];
    }

    private SyncBatchNorm(BatchNorm source, ICommunicator communicator)
        : base(source)
    {
        Communicator = communicator;
        _local = new double[1 + 2 * NumFeatures];
        _sums = new double[2 * NumFeatures];
    }

    /// <summary>The ranks whose batches this layer's statistics are over.</summary>
    public ICommunicator Communicator { get; }

    /// <summary>
    /// PyTorch's <c>convert_sync_batchnorm</c>: returns <paramref name="module"/> with every BatchNorm (SyncBatchNorm
    /// included) replaced by a SyncBatchNorm over <paramref name="communicator"/> that shares its parameters and running
    /// statistics and keeps its settings, mode and batch counter. Containers (<see cref="Sequential"/>,
    /// <see cref="Residual"/>) with a replaced layer are rebuilt; every other module is the same object. A BatchNorm
    /// wrapped inside another layer (<see cref="NoisyBatchNorm"/>) stays as it is.
    /// </summary>
    public static Module ConvertSyncBatchNorm(Module module, ICommunicator communicator)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(communicator);
        Module converted = module switch
        {
            BatchNorm bn => new SyncBatchNorm(bn, communicator) { NeedsInputGradient = bn.NeedsInputGradient },
            Sequential s => ConvertSequence(s, communicator),
            Residual r => ConvertResidual(r, communicator),
            _ => module,
        };
        if (converted != module)
        {
            converted.ForwardHook = module.ForwardHook;
            if (converted.Training != module.Training)
                converted.Train(module.Training);
        }
        return converted;
    }

    /// <inheritdoc/>
    protected override (int N, int C, int S) Layout(Tensor x)
    {
        if (x.Rank < 2)
            throw new ArgumentException($"SyncBatchNorm: expected at least 2D input [N, C, *], got {x.Rank}D input of shape {x.ShapeString}.");
        CheckChannels(x);
        int s = 1;
        for (int d = 2; d < x.Rank; d++)
            s *= x.Dim(d); // no overflow: the tensor's length is an int
        return (x.Dim(0), x.Dim(1), s);
    }

    /// <inheritdoc/>
    private protected override long NormalizeWithBatchStatistics(Tensor y, Tensor x, int n, int c, int s, Span<double> mean, Span<double> m2,
        Span<double> invStd)
    {
        _synchronized = Training && Communicator.Size > 1;
        if (!_synchronized)
            return base.NormalizeWithBatchStatistics(y, x, n, c, s, mean, m2, invStd);
        BatchNormKernels.Moments<float>(x.Span, n, c, s, mean, m2);
        long m = Merge((long)n * s, mean, m2);
        _count = m;
        if (m == 1)
            throw new ArgumentException(
                $"{GetType().Name}: expected more than 1 value per channel when training, got input of shape {x.ShapeString} on rank {Communicator.Rank} " +
                $"and 1 value per channel over all {Communicator.Size} ranks.");
        if (m == 0)
            return 0;
        BatchNormKernels.InvStd(invStd, m2, m, Eps);
        BatchNormKernels.Normalize<float>(y.Span, x.Span, mean, invStd, Gamma, Beta, n, c, s);
        return m;
    }

    /// <inheritdoc/>
    private protected override void BackwardWithBatchStatistics(Span<float> dx, Span<float> dGamma, Span<float> dBeta, ReadOnlySpan<float> dy,
        ReadOnlySpan<float> x, ReadOnlySpan<double> mean, ReadOnlySpan<double> invStd, int n, int c, int s)
    {
        if (!_synchronized)
        {
            base.BackwardWithBatchStatistics(dx, dGamma, dBeta, dy, x, mean, invStd, n, c, s);
            return;
        }
        var sumDy = _sums.AsSpan(0, c);
        var sumDyXc = _sums.AsSpan(c, c);
        BatchNormKernels.GradientSums<float>(dGamma, dBeta, dy, x, mean, invStd, n, c, s, sumDy, sumDyXc);
        Communicator.AllReduceSum(_sums);
        BatchNormKernels.InputGradientFromSums<float>(dx, dy, x, mean, invStd, Gamma, sumDy, sumDyXc, _count, n, c, s);
    }

    /// <summary>
    /// Replaces this rank's (mean, M2) over <paramref name="count"/> values per channel by those of the whole batch and
    /// returns its count. Chan et al.: merging (n_a, μ_a, M2_a) with (n_b, μ_b, M2_b), δ = μ_b − μ_a, gives
    /// μ = μ_a + δ·n_b/n and M2 = M2_a + M2_b + δ²·n_a·n_b/n, n = n_a + n_b.
    /// </summary>
    private long Merge(long count, Span<double> mean, Span<double> m2)
    {
        int c = NumFeatures, width = 1 + 2 * c, size = Communicator.Size;
        _local[0] = count;
        mean.CopyTo(_local.AsSpan(1, c));
        m2.CopyTo(_local.AsSpan(1 + c, c));
        NormParameters.Grow(ref _gathered, size * width);
        var gathered = _gathered.AsSpan(0, size * width);
        Communicator.AllGather(_local, gathered);
        mean.Clear();
        m2.Clear();
        double total = 0;
        for (int r = 0; r < size; r++)
        {
            var part = gathered.Slice(r * width, width);
            double nA = total, nB = part[0];
            if (nB == 0)
                continue;
            total = nA + nB;
            for (int ch = 0; ch < c; ch++)
            {
                double delta = part[1 + ch] - mean[ch];
                mean[ch] += delta * (nB / total);
                m2[ch] += part[1 + c + ch] + delta * delta * (nA * nB / total);
            }
        }
        return (long)total;
    }

    private static Module ConvertSequence(Sequential s, ICommunicator communicator)
    {
        var layers = s.Layers.Select(layer => ConvertSyncBatchNorm(layer, communicator)).ToArray();
        return layers.SequenceEqual(s.Layers) ? s : new Sequential(layers) { NeedsInputGradient = s.NeedsInputGradient };
    }

    private static Module ConvertResidual(Residual r, ICommunicator communicator)
    {
        var body = ConvertSyncBatchNorm(r.Body, communicator);
        var shortcut = r.Shortcut is null ? null : ConvertSyncBatchNorm(r.Shortcut, communicator);
        return body == r.Body && shortcut == r.Shortcut ? r : new Residual(body, shortcut) { NeedsInputGradient = r.NeedsInputGradient };
    }
}

using NormLab.Kernels;

namespace NormLab;

/// <summary>
/// Ghost batch normalization (Hoffer, Hubara &amp; Soudry 2017): each batch is cut into virtual ("ghost") batches of
/// <see cref="VirtualBatchSize"/> samples (the last may be smaller), each normalized with its own statistics, and the
/// running statistics are updated once per virtual batch, in order, as the authors' code does by running the chunks one
/// after another. With one virtual batch per batch it is BatchNorm. Same parameters, buffers and semantics as
/// <see cref="BatchNorm"/> otherwise; input [N, C] or [N, C, H, W].
/// </summary>
public sealed class GhostBatchNorm : Module, IBatchCounter
{
    private double[] _mean = [], _m2 = [], _invStd = [];
    private Tensor? _input, _output, _inputGrad;
    private bool _usedBatch;
    private (int N, int C, int S) _layout;

    /// <summary>Creates the layer.</summary>
    public GhostBatchNorm(int numFeatures, int virtualBatchSize, double eps = 1e-5, double? momentum = 0.1)
    {
        if (numFeatures <= 0 || virtualBatchSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(virtualBatchSize),
                $"GhostBatchNorm: numFeatures and virtualBatchSize must be positive, got {numFeatures} and {virtualBatchSize}.");
        if (!(eps >= 0) || momentum is { } mo && !(mo is >= 0 and <= 1))
            throw new ArgumentOutOfRangeException(nameof(eps), $"GhostBatchNorm: need eps ≥ 0 and momentum in [0, 1] or null, got eps = {eps}, momentum = {momentum?.ToString() ?? "null"}.");
        NumFeatures = numFeatures;
        VirtualBatchSize = virtualBatchSize;
        Eps = eps;
        Momentum = momentum;
        Weight = NormParameters.Scale(numFeatures);
        Bias = NormParameters.Shift(numFeatures);
        RunningMean = new Tensor(numFeatures);
        RunningVar = NormParameters.Ones(numFeatures);
    }

    /// <summary>C.</summary>
    public int NumFeatures { get; }

    /// <summary>Samples per virtual batch.</summary>
    public int VirtualBatchSize { get; }

    /// <summary>Added to the variance under the square root.</summary>
    public double Eps { get; }

    /// <summary>Weight of each virtual batch's statistics in the running ones; null for the cumulative average.</summary>
    public double? Momentum { get; set; }

    /// <summary>γ.</summary>
    public Parameter Weight { get; }

    /// <summary>β.</summary>
    public Parameter Bias { get; }

    /// <summary>The running mean.</summary>
    public Tensor RunningMean { get; }

    /// <summary>The running (unbiased) variance.</summary>
    public Tensor RunningVar { get; }

    /// <summary>Virtual batches seen in training.</summary>
    public long NumBatchesTracked { get; set; }

    /// <inheritdoc/>
    public bool TracksBatches => true;

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        if (x.Rank is not (2 or 4) || x.Dim(1) != NumFeatures)
            throw new ArgumentException($"{this}: expected input [N, {NumFeatures}] or [N, {NumFeatures}, H, W], got shape {x.ShapeString}.");
        int n = x.Dim(0), c = NumFeatures, s = x.Rank == 4 ? x.Dim(2) * x.Dim(3) : 1;
        _layout = (n, c, s);
        _input = x;
        var y = Tensor.Ensure(ref _output, x.Shape);
        _usedBatch = Training;
        int chunks = Training ? (n + VirtualBatchSize - 1) / VirtualBatchSize : 1;
        NormParameters.Grow(ref _mean, chunks * c);
        NormParameters.Grow(ref _m2, chunks * c);
        NormParameters.Grow(ref _invStd, chunks * c);
        if (!Training)
        {
            for (int ch = 0; ch < c; ch++)
                (_mean[ch], _invStd[ch]) = (RunningMean.Span[ch], 1 / Math.Sqrt(RunningVar.Span[ch] + Eps));
            BatchNormKernels.Normalize<float>(y.Span, x.Span, _mean.AsSpan(0, c), _invStd.AsSpan(0, c), Weight.Value.Span, Bias.Value.Span, n, c, s);
            return y;
        }
        for (int k = 0; k < chunks; k++)
        {
            var (first, rows) = Chunk(k, n);
            if ((long)rows * s == 1)
                throw new ArgumentException(
                    $"{this}: virtual batch {k} of input {x.ShapeString} has one value per channel; batch normalization needs more (choose a batch size that leaves no single-sample virtual batch).");
            var xs = x.Span.Slice(first * c * s, rows * c * s);
            var mean = _mean.AsSpan(k * c, c);
            var m2 = _m2.AsSpan(k * c, c);
            var invStd = _invStd.AsSpan(k * c, c);
            BatchNormKernels.Moments<float>(xs, rows, c, s, mean, m2);
            BatchNormKernels.InvStd(invStd, m2, (double)rows * s, Eps);
            NumBatchesTracked++;
            BatchNormKernels.UpdateRunning(RunningMean.Span, RunningVar.Span, mean, m2, (double)rows * s, Momentum ?? 1.0 / NumBatchesTracked);
            BatchNormKernels.Normalize<float>(y.Span.Slice(first * c * s, rows * c * s), xs, mean, invStd, Weight.Value.Span, Bias.Value.Span, rows, c, s);
        }
        return y;
    }

    /// <inheritdoc/>
    protected override Tensor BackwardCore(Tensor dy)
    {
        ShapeCheck.Gradient(dy, _output, "GhostBatchNorm");
        var x = _input!;
        var dx = Tensor.Ensure(ref _inputGrad, x.Shape);
        var (n, c, s) = _layout;
        if (!_usedBatch)
        {
            BatchNormKernels.BackwardFixedStats<float>(dx.Span, Weight.Grad.Span, Bias.Grad.Span, dy.Span, x.Span, _mean.AsSpan(0, c),
                _invStd.AsSpan(0, c), Weight.Value.Span, n, c, s);
            return dx;
        }
        int chunks = (n + VirtualBatchSize - 1) / VirtualBatchSize;
        for (int k = 0; k < chunks; k++)
        {
            var (first, rows) = Chunk(k, n);
            int at = first * c * s, len = rows * c * s;
            BatchNormKernels.BackwardBatchStats<float>(dx.Span.Slice(at, len), Weight.Grad.Span, Bias.Grad.Span, dy.Span.Slice(at, len),
                x.Span.Slice(at, len), _mean.AsSpan(k * c, c), _invStd.AsSpan(k * c, c), Weight.Value.Span, rows, c, s);
        }
        return dx;
    }

    private (int First, int Rows) Chunk(int k, int n) => (k * VirtualBatchSize, Math.Min(VirtualBatchSize, n - k * VirtualBatchSize));

    /// <inheritdoc/>
    protected override IEnumerable<Parameter> LocalParameters()
    {
        yield return Weight;
        yield return Bias;
    }

    /// <inheritdoc/>
    protected override IEnumerable<(string Name, Tensor Value)> LocalBuffers()
    {
        yield return ("running_mean", RunningMean);
        yield return ("running_var", RunningVar);
    }

    /// <inheritdoc/>
    public override string ToString() => $"GhostBatchNorm({NumFeatures}, virtual_batch_size={VirtualBatchSize}, eps={Eps})";
}

using NormLab.Kernels;

namespace NormLab;

/// <summary>
/// Instance normalization, PyTorch's
/// <c>nn.InstanceNorm2d(num_features, eps=1e-5, momentum=0.1, affine=False, track_running_stats=False)</c>: each channel
/// of each sample is normalized over its H·W values by its own mean and biased variance. With
/// <c>trackRunningStats</c>, training also updates running statistics (the batch average of the instances' means and
/// unbiased variances, with BatchNorm's momentum rule) and eval mode normalizes with them instead. Input [N, C, H, W].
/// </summary>
public sealed class InstanceNorm2d : RowNorm, IBatchCounter
{
    private readonly double[] _runMean, _runInvStd;
    private Tensor? _input, _output, _inputGrad;
    private bool _usedRunning;

    /// <summary>Creates the layer.</summary>
    public InstanceNorm2d(int numFeatures, double eps = 1e-5, double? momentum = 0.1, bool affine = false, bool trackRunningStats = false)
        : base(eps, affine ? [numFeatures] : null)
    {
        if (numFeatures <= 0)
            throw new ArgumentOutOfRangeException(nameof(numFeatures), $"InstanceNorm2d: numFeatures must be positive, got {numFeatures}.");
        if (momentum is { } mo && !(mo >= 0 && mo <= 1))
            throw new ArgumentOutOfRangeException(nameof(momentum), $"InstanceNorm2d: momentum must be in [0, 1] or null, got {mo}.");
        NumFeatures = numFeatures;
        Momentum = momentum;
        if (trackRunningStats)
        {
            RunningMean = new Tensor(numFeatures);
            RunningVar = NormParameters.Ones(numFeatures);
        }
        _runMean = new double[numFeatures];
        _runInvStd = new double[numFeatures];
    }

    /// <summary>C.</summary>
    public int NumFeatures { get; }

    /// <summary>Weight of the new statistic in the running average; null for the cumulative average.</summary>
    public double? Momentum { get; set; }

    /// <summary>The running mean; null unless running statistics are tracked.</summary>
    public Tensor? RunningMean { get; }

    /// <summary>The running (unbiased) variance; null unless running statistics are tracked.</summary>
    public Tensor? RunningVar { get; }

    /// <summary><c>num_batches_tracked</c>: saved with the running statistics, but PyTorch's instance norm never advances it.</summary>
    public long NumBatchesTracked { get; set; }

    /// <inheritdoc/>
    public bool TracksBatches => RunningMean is not null;

    /// <inheritdoc/>
    protected override RowLayout Layout(Tensor x)
    {
        ShapeCheck.Rank(x, 4, "InstanceNorm2d", "[N, C, H, W]");
        if (x.Dim(1) != NumFeatures)
            throw new ArgumentException($"InstanceNorm2d({NumFeatures}): expected {NumFeatures} channels in dimension 1, got input of shape {x.ShapeString}.");
        if ((Training || RunningMean is null) && x.Dim(2) * x.Dim(3) == 1)
            throw new ArgumentException($"InstanceNorm2d: expected more than 1 spatial element when training, got input of shape {x.ShapeString}.");
        return new RowLayout(x.Dim(0) * NumFeatures, 1, x.Dim(2) * x.Dim(3), NumFeatures);
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        _usedRunning = !Training && RunningMean is not null;
        if (!_usedRunning)
            return base.ForwardCore(x);
        var layout = Layout(x);
        _input = x;
        var y = Tensor.Ensure(ref _output, x.Shape);
        var rm = RunningMean!.Span;
        var rv = RunningVar!.Span;
        for (int c = 0; c < NumFeatures; c++)
        {
            _runMean[c] = rm[c];
            _runInvStd[c] = 1.0 / Math.Sqrt(rv[c] + Eps);
        }
        BatchNormKernels.Normalize<float>(y.Span, x.Span, _runMean, _runInvStd, Gamma, Beta, x.Dim(0), NumFeatures, layout.SegmentSize);
        return y;
    }

    /// <inheritdoc/>
    protected override void RowStatisticsComputed(Tensor x, RowLayout layout)
    {
        if (!Training || RunningMean is null || RunningVar is null)
            return;
        // PyTorch runs batch_norm on a [1, N·C, H, W] view with the running buffers repeated N times, then averages them
        // over N: running = (1 − f)·running + f·mean_n(statistic of instance (n, c)). Its _InstanceNorm passes momentum 0
        // when momentum is None and never counts batches; so does this layer.
        double factor = Momentum ?? 0.0;
        var (mean, _, variance) = RowStatistics;
        int n = x.Dim(0), s = layout.SegmentSize;
        var rm = RunningMean.Span;
        var rv = RunningVar.Span;
        for (int c = 0; c < NumFeatures; c++)
        {
            double m = 0, v = 0;
            for (int i = 0; i < n; i++)
            {
                m += mean[i * NumFeatures + c];
                v += variance[i * NumFeatures + c] * s / (s - 1);
            }
            rm[c] = (float)((1 - factor) * rm[c] + factor * m / n);
            rv[c] = (float)((1 - factor) * rv[c] + factor * v / n);
        }
    }

    /// <inheritdoc/>
    protected override Tensor BackwardCore(Tensor dy)
    {
        if (!_usedRunning)
            return base.BackwardCore(dy);
        ShapeCheck.Gradient(dy, _output, "InstanceNorm2d");
        var x = _input!;
        var dx = Tensor.Ensure(ref _inputGrad, x.Shape);
        BatchNormKernels.BackwardFixedStats<float>(dx.Span, Weight is null ? default : Weight.Grad.Span, Bias is null ? default : Bias.Grad.Span,
            dy.Span, x.Span, _runMean, _runInvStd, Gamma, x.Dim(0), NumFeatures, x.Dim(2) * x.Dim(3));
        return dx;
    }

    /// <inheritdoc/>
    protected override IEnumerable<(string Name, Tensor Value)> LocalBuffers()
    {
        if (RunningMean is not null)
            yield return ("running_mean", RunningMean);
        if (RunningVar is not null)
            yield return ("running_var", RunningVar);
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"InstanceNorm2d({NumFeatures}, eps={Eps}, momentum={(Momentum is { } m ? m.ToString(System.Globalization.CultureInfo.InvariantCulture) : "None")}, affine={Weight is not null}, track_running_stats={RunningMean is not null})";
}

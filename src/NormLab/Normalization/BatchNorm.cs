using NormLab.Kernels;

namespace NormLab;

/// <summary>
/// Batch normalization with PyTorch's semantics (<c>torch.nn.modules.batchnorm._BatchNorm</c>):
/// <code>
/// y = γ·(x − mean)/√(var + eps) + β        per channel (dimension 1), over all other dimensions
/// </code>
/// <list type="bullet">
/// <item>Training: mean and the <b>biased</b> variance of the batch normalize; if running statistics are tracked they are updated as
/// <c>running = (1 − momentum)·running + momentum·batch</c> with the <b>unbiased</b> batch variance (×m/(m − 1), m = values per
/// channel); <c>momentum = null</c> uses the cumulative average, factor 1/<see cref="NumBatchesTracked"/>.</item>
/// <item>Eval: <see cref="RunningMean"/> and <see cref="RunningVar"/> normalize, and the layer is an affine map.</item>
/// <item><c>trackRunningStats = false</c>: no running buffers; batch statistics in both modes.</item>
/// <item>Using batch statistics with one value per channel (m = 1) is an error, as in PyTorch.</item>
/// </list>
/// Note PyTorch's momentum is the weight of the <i>new</i> value (Keras' 0.99 corresponds to 0.01 here).
/// </summary>
public abstract class BatchNorm : Module, IBatchCounter
{
    private readonly double[] _mean;
    private readonly double[] _m2;
    private readonly double[] _invStd;
    private Tensor? _input;
    private Tensor? _output; // unused by ForwardRelu, which writes into the ReLU's output
    private Tensor? _inputGrad;
    private bool _usedBatchStats;
    private (int N, int C, int S) _layout;

    /// <summary>Creates the layer with γ = 1, β = 0, running mean 0, running variance 1.</summary>
    /// <param name="numFeatures">C, the number of channels (features).</param>
    /// <param name="eps">Added to the variance under the square root.</param>
    /// <param name="momentum">Weight of the new batch statistic in the running average; null for a cumulative average.</param>
    /// <param name="affine">Whether the layer has learnable γ and β.</param>
    /// <param name="trackRunningStats">Whether the layer keeps running statistics for eval mode.</param>
    protected BatchNorm(int numFeatures, double eps, double? momentum, bool affine, bool trackRunningStats)
    {
        if (numFeatures <= 0)
            throw new ArgumentOutOfRangeException(nameof(numFeatures), $"{GetType().Name}: numFeatures must be positive, got {numFeatures}.");
        if (!(eps >= 0) || double.IsInfinity(eps))
            throw new ArgumentOutOfRangeException(nameof(eps), $"{GetType().Name}: eps must be a finite value ≥ 0, got {eps}.");
        if (momentum is { } mo && !(mo >= 0 && mo <= 1))
            throw new ArgumentOutOfRangeException(nameof(momentum), $"{GetType().Name}: momentum must be in [0, 1] or null, got {mo}.");
        NumFeatures = numFeatures;
        Eps = eps;
        Momentum = momentum;
        Affine = affine;
        TrackRunningStats = trackRunningStats;
        if (affine)
        {
            Weight = NormParameters.Scale(numFeatures);
            Bias = NormParameters.Shift(numFeatures);
        }
        if (trackRunningStats)
        {
            RunningMean = new Tensor(numFeatures);
            RunningVar = NormParameters.Ones(numFeatures);
        }
        _mean = new double[numFeatures];
        _m2 = new double[numFeatures];
        _invStd = new double[numFeatures];
    }

    /// <summary>
    /// Creates a layer with the settings of <paramref name="source"/> that shares its parameters and running statistics
    /// (the same objects, as PyTorch's <c>convert_sync_batchnorm</c> does); the batch counter is copied.
    /// </summary>
    private protected BatchNorm(BatchNorm source)
    {
        NumFeatures = source.NumFeatures;
        Eps = source.Eps;
        Momentum = source.Momentum;
        Affine = source.Affine;
        TrackRunningStats = source.TrackRunningStats;
        Weight = source.Weight;
        Bias = source.Bias;
        RunningMean = source.RunningMean;
        RunningVar = source.RunningVar;
        NumBatchesTracked = source.NumBatchesTracked;
        Frozen = source.Frozen;
        _mean = new double[NumFeatures];
        _m2 = new double[NumFeatures];
        _invStd = new double[NumFeatures];
    }

    /// <summary>C, the number of channels.</summary>
    public int NumFeatures { get; }

    /// <summary>Added to the variance under the square root.</summary>
    public double Eps { get; }

    /// <summary>Weight of the new batch statistic in the running average; null for the cumulative average.</summary>
    public double? Momentum { get; set; }

    /// <summary>Whether the layer has γ and β.</summary>
    public bool Affine { get; }

    /// <summary>Whether running statistics are kept.</summary>
    public bool TrackRunningStats { get; }

    /// <summary>γ (named <c>weight</c> as in PyTorch); null when <see cref="Affine"/> is false.</summary>
    public Parameter? Weight { get; }

    /// <summary>β (named <c>bias</c> as in PyTorch); null when <see cref="Affine"/> is false.</summary>
    public Parameter? Bias { get; }

    /// <summary>The running mean; null when <see cref="TrackRunningStats"/> is false.</summary>
    public Tensor? RunningMean { get; }

    /// <summary>The running (unbiased) variance; null when <see cref="TrackRunningStats"/> is false.</summary>
    public Tensor? RunningVar { get; }

    /// <summary>The number of training batches seen (PyTorch's <c>num_batches_tracked</c>).</summary>
    public long NumBatchesTracked { get; set; }

    /// <inheritdoc/>
    bool IBatchCounter.TracksBatches => TrackRunningStats;

    /// <summary>
    /// Whether the statistics are frozen: the running statistics normalize in training too and are not updated, so the
    /// layer is the affine map of eval mode while γ and β still learn (FrozenBN). Independent of <see cref="Module.Training"/>:
    /// a later <c>Train()</c> does not unfreeze (in PyTorch, freezing by calling <c>eval()</c> on the layer is silently
    /// undone by the next <c>model.train()</c>).
    /// </summary>
    public bool Frozen { get; private set; }

    /// <summary>Freezes the statistics (see <see cref="Frozen"/>).</summary>
    /// <exception cref="InvalidOperationException">The layer keeps no running statistics to freeze.</exception>
    public BatchNorm Freeze()
    {
        if (RunningMean is null)
            throw new InvalidOperationException($"{this}: cannot freeze statistics it does not keep (track_running_stats=False).");
        Frozen = true;
        return this;
    }

    /// <summary>Uses batch statistics in training again.</summary>
    public BatchNorm Unfreeze()
    {
        Frozen = false;
        return this;
    }

    /// <summary>Resets running statistics to mean 0, variance 1, and the batch counter to 0.</summary>
    public void ResetRunningStats()
    {
        RunningMean?.Zero();
        RunningVar?.Fill(1f);
        NumBatchesTracked = 0;
    }

    /// <summary>Checks the input's rank and channel count and views it as [n, c, s].</summary>
    protected abstract (int N, int C, int S) Layout(Tensor x);

    /// <summary>Throws unless dimension 1 is the channel count.</summary>
    protected void CheckChannels(Tensor x)
    {
        if (x.Dim(1) != NumFeatures)
            throw new ArgumentException(
                $"{GetType().Name}({NumFeatures}): expected {NumFeatures} channels in dimension 1, got input of shape {x.ShapeString}.");
    }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        var (n, c, s) = Layout(x);
        return Run(x, Tensor.Ensure(ref _output, x.Shape), n, c, s, relu: false);
    }

    /// <summary>
    /// Whether <see cref="ForwardRelu"/> applies to <paramref name="x"/>: a plain BatchNorm1d/2d (not a subclass with
    /// statistics of its own) over planes (H·W or L &gt; 1; [N, C] batches keep the ReLU as a layer), neither module observed
    /// by a hook. Throws what <see cref="Module.Forward"/> would for an input of the wrong shape.
    /// </summary>
    internal bool CanFuseRelu(Tensor x, ReLU relu) =>
        this is BatchNorm1d or BatchNorm2d && ForwardHook is null && relu.ForwardHook is null && x.Length > 0 && Layout(x).S > 1;

    /// <summary>
    /// This layer and the <paramref name="relu"/> after it in one pass over the data: the ReLU's output max(BN(x), 0),
    /// written into the ReLU's own output tensor, so that <c>relu.Backward</c> works as after its own forward. The
    /// pre-activation output is not kept. Bit for bit what the two layers compute one after the other.
    /// </summary>
    internal Tensor ForwardRelu(Tensor x, ReLU relu)
    {
        var (n, c, s) = Layout(x);
        return Run(x, relu.OutputFor(x), n, c, s, relu: true);
    }

    /// <summary>
    /// Whether <see cref="ForwardReluPool"/> applies: <see cref="CanFuseRelu"/>, and a <paramref name="pool"/> with 2×2 windows
    /// and stride 2 that tile the planes (<see cref="MaxPool2d.PoolsInOnePass"/>), none of the three observed by a hook.
    /// </summary>
    internal bool CanFuseReluPool(Tensor x, ReLU relu, MaxPool2d pool) =>
        CanFuseRelu(x, relu) && BackwardHook is null && relu.BackwardHook is null && pool.PoolsInOnePass(x);

    /// <summary>
    /// This layer, the <paramref name="relu"/> and the <paramref name="pool"/> after it with the statistics pass of this layer
    /// and one more pass that normalizes, rectifies and pools (<see cref="BatchNormPool"/>): the ReLU's output, the largest
    /// tensor of the three, is never written (the ReLU keeps none: see <see cref="Activation.OutputNotKeptFor"/>). The
    /// pooled output lands in the pool's own tensors, so that <c>pool.Backward</c> and then <see cref="BackwardRelu"/> run
    /// as after the fused pair, or <see cref="BackwardReluPool"/> in one pass. Bit for bit what the three layers compute
    /// one after the other.
    /// </summary>
    internal Tensor ForwardReluPool(Tensor x, ReLU relu, MaxPool2d pool)
    {
        var (n, c, s) = Layout(x);
        var (pooled, argmax) = pool.OutputsFor(relu.OutputNotKeptFor(x));
        return Run(x, pooled, n, c, s, relu: true, argmax, x.Dim(2), x.Dim(3));
    }

    /// <summary>
    /// The backward of <see cref="ForwardReluPool"/>, given the gradient of the pool's output: in training mode over a batch
    /// the in-order walk takes, one backward pass that routes each window's gradient to its argmax plane by plane
    /// (<see cref="BatchNormKernels.BackwardReluPool"/>), so the gradient of the ReLU's full-size output is never written;
    /// otherwise the pool's backward, then <see cref="BackwardRelu"/>. The same bits either way.
    /// </summary>
    internal Tensor BackwardReluPool(Tensor dyPooled, ReLU relu, MaxPool2d pool)
    {
        var x = _input!;
        var (n, c, _) = _layout;
        if (!_usedBatchStats || x.Rank != 4 || !BatchNormKernels.PoolsBackward(n, c, x.Dim(2), x.Dim(3)))
            return BackwardRelu(pool.Backward(dyPooled), relu);
        var argmax = pool.ArgmaxFor(dyPooled);
        var dx = Tensor.Ensure(ref _inputGrad, x.Shape);
        var dGamma = Weight is null ? Span<float>.Empty : Weight.Grad.Span;
        var dBeta = Bias is null ? Span<float>.Empty : Bias.Grad.Span;
        BatchNormKernels.BackwardReluPool(dx.Span, dGamma, dBeta, dyPooled.Span, argmax, x.Span, _mean, _invStd, Gamma, Beta, n, c, x.Dim(2), x.Dim(3));
        return dx;
    }

    /// <summary>
    /// The backward of <see cref="ForwardRelu"/>: <paramref name="dz"/> is the gradient of the ReLU's output, taken through
    /// the ReLU (where γ·x̂ + β &gt; 0) and this layer in the passes of this layer's backward alone.
    /// </summary>
    internal Tensor BackwardRelu(Tensor dz, ReLU relu)
    {
        ShapeCheck.Gradient(dz, _input, this);
        return Backward(dz, relu: true);
    }

    // With argmax, y is the output of a fused 2×2 max pooling (ForwardReluPool) over height × width planes.
    private Tensor Run(Tensor x, Tensor y, int n, int c, int s, bool relu, int[]? argmax = null, int height = 0, int width = 0)
    {
        _layout = (n, c, s);
        _input = x;
        _usedBatchStats = (Training && !Frozen) || RunningMean is null;
        if (_usedBatchStats)
        {
            long m = argmax is not null ? PooledBatchStatistics(y, argmax, x, n, c, height, width)
                : relu ? BatchStatistics(y, x, n, c, s, _mean, _m2, _invStd, relu: true)
                : NormalizeWithBatchStatistics(y, x, n, c, s, _mean, _m2, _invStd);
            if (m > 0 && Training && RunningMean is not null && RunningVar is not null)
            {
                NumBatchesTracked++;
                double factor = Momentum ?? 1.0 / NumBatchesTracked;
                BatchNormKernels.UpdateRunning(RunningMean.Span, RunningVar.Span, _mean, _m2, m, factor);
            }
            return y;
        }
        if (x.Length == 0)
            return y;
        var rm = RunningMean!.Span;
        var rv = RunningVar!.Span;
        for (int ch = 0; ch < c; ch++)
        {
            _mean[ch] = rm[ch];
            _invStd[ch] = 1.0 / Math.Sqrt(rv[ch] + Eps);
        }
        if (argmax is not null)
            BatchNormKernels.NormalizeReluPool(y.Span, argmax, x.Span, _mean, _invStd, Gamma, Beta, n, c, height, width);
        else
            BatchNormKernels.Normalize<float>(y.Span, x.Span, _mean, _invStd, Gamma, Beta, n, c, s, relu);
        return y;
    }

    /// <summary>
    /// Normalizes <paramref name="x"/> ([n, c, s]) into <paramref name="y"/> with batch statistics, which it leaves in
    /// <paramref name="mean"/>, <paramref name="m2"/> and <paramref name="invStd"/>, and returns the number of values per
    /// channel they are over (0 for an empty batch: nothing to normalize, nothing to track). Here the batch is
    /// <paramref name="x"/>; <see cref="SyncBatchNorm"/> merges it with the other processes' parts.
    /// </summary>
    private protected virtual long NormalizeWithBatchStatistics(Tensor y, Tensor x, int n, int c, int s, Span<double> mean, Span<double> m2,
        Span<double> invStd) => BatchStatistics(y, x, n, c, s, mean, m2, invStd, relu: false);

    private long BatchStatistics(Tensor y, Tensor x, int n, int c, int s, Span<double> mean, Span<double> m2, Span<double> invStd, bool relu)
    {
        long m = ValuesPerChannel(x, n, s);
        if (m == 0)
            return 0;
        // Statistics and normalization in one call, channel by channel, so each channel is read from memory once.
        BatchNormKernels.ForwardTraining<float>(y.Span, x.Span, Gamma, Beta, Eps, n, c, s, mean, m2, invStd, relu);
        return m;
    }

    // The values per channel batch statistics are over: none for an empty batch; one is PyTorch's error.
    private long ValuesPerChannel(Tensor x, int n, int s)
    {
        long m = (long)n * s;
        if (m == 1)
            throw new ArgumentException(
                $"{GetType().Name}: expected more than 1 value per channel when training, got input of shape {x.ShapeString}.");
        return m;
    }

    // BatchStatistics for ForwardReluPool: the statistics as the training forward takes them (the same bits), then the
    // pass that normalizes, rectifies and pools.
    private long PooledBatchStatistics(Tensor pooled, int[] argmax, Tensor x, int n, int c, int height, int width)
    {
        int s = height * width;
        long m = ValuesPerChannel(x, n, s);
        if (m == 0)
            return 0;
        BatchNormKernels.Moments<float>(x.Span, n, c, s, _mean, _m2);
        BatchNormKernels.InvStd(_invStd.AsSpan(0, c), _m2, m, Eps);
        BatchNormKernels.NormalizeReluPool(pooled.Span, argmax, x.Span, _mean, _invStd, Gamma, Beta, n, c, height, width);
        return m;
    }

    /// <inheritdoc/>
    protected override Tensor BackwardCore(Tensor dy)
    {
        // The output has the input's shape; after ForwardRelu the layer kept no output of its own.
        ShapeCheck.Gradient(dy, _input, this);
        return Backward(dy, relu: false);
    }

    private Tensor Backward(Tensor dy, bool relu)
    {
        var x = _input!;
        var dx = Tensor.Ensure(ref _inputGrad, x.Shape);
        var (n, c, s) = _layout;
        var dGamma = Weight is null ? Span<float>.Empty : Weight.Grad.Span;
        var dBeta = Bias is null ? Span<float>.Empty : Bias.Grad.Span;
        if (_usedBatchStats && relu)
            BatchNormKernels.BackwardBatchStats<float>(dx.Span, dGamma, dBeta, dy.Span, x.Span, _mean, _invStd, Gamma, Beta, n, c, s, relu: true);
        else if (_usedBatchStats)
            BackwardWithBatchStatistics(dx.Span, dGamma, dBeta, dy.Span, x.Span, _mean, _invStd, n, c, s);
        else if (x.Length > 0)
            BatchNormKernels.BackwardFixedStats<float>(dx.Span, dGamma, dBeta, dy.Span, x.Span, _mean, _invStd, Gamma, Beta, n, c, s, relu);
        return dx;
    }

    /// <summary>The backward of <see cref="NormalizeWithBatchStatistics"/>, with the statistics it left.</summary>
    private protected virtual void BackwardWithBatchStatistics(Span<float> dx, Span<float> dGamma, Span<float> dBeta, ReadOnlySpan<float> dy,
        ReadOnlySpan<float> x, ReadOnlySpan<double> mean, ReadOnlySpan<double> invStd, int n, int c, int s)
    {
        if (x.Length > 0)
            BatchNormKernels.BackwardBatchStats<float>(dx, dGamma, dBeta, dy, x, mean, invStd, Gamma, n, c, s);
    }

    /// <inheritdoc/>
    protected override IEnumerable<Parameter> LocalParameters()
    {
        if (Weight is not null)
            yield return Weight;
        if (Bias is not null)
            yield return Bias;
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
        $"{GetType().Name}({NumFeatures}, eps={Eps}, momentum={(Momentum is { } m ? m.ToString(System.Globalization.CultureInfo.InvariantCulture) : "None")}, affine={Affine}, track_running_stats={TrackRunningStats})";

    /// <summary>γ, or empty for γ = 1.</summary>
    private protected ReadOnlySpan<float> Gamma => Weight is null ? ReadOnlySpan<float>.Empty : Weight.Value.Span;

    /// <summary>β, or empty for β = 0.</summary>
    private protected ReadOnlySpan<float> Beta => Bias is null ? ReadOnlySpan<float>.Empty : Bias.Value.Span;
}

/// <summary>Batch normalization over [N, C] or [N, C, L] inputs; statistics per feature C over N (and L).</summary>
public sealed class BatchNorm1d(int numFeatures, double eps = 1e-5, double? momentum = 0.1, bool affine = true, bool trackRunningStats = true)
    : BatchNorm(numFeatures, eps, momentum, affine, trackRunningStats)
{
    /// <inheritdoc/>
    protected override (int N, int C, int S) Layout(Tensor x)
    {
        if (x.Rank is not (2 or 3))
            throw new ArgumentException($"BatchNorm1d: expected 2D or 3D input [N, {NumFeatures}] or [N, {NumFeatures}, L], got {x.Rank}D input of shape {x.ShapeString}.");
        CheckChannels(x);
        return (x.Dim(0), x.Dim(1), x.Rank == 3 ? x.Dim(2) : 1);
    }
}

/// <summary>Batch normalization over [N, C, H, W] inputs; statistics per channel over N·H·W.</summary>
public sealed class BatchNorm2d(int numFeatures, double eps = 1e-5, double? momentum = 0.1, bool affine = true, bool trackRunningStats = true)
    : BatchNorm(numFeatures, eps, momentum, affine, trackRunningStats)
{
    /// <inheritdoc/>
    protected override (int N, int C, int S) Layout(Tensor x)
    {
        if (x.Rank != 4)
            throw new ArgumentException($"BatchNorm2d: expected 4D input [N, {NumFeatures}, H, W], got {x.Rank}D input of shape {x.ShapeString}.");
        CheckChannels(x);
        return (x.Dim(0), x.Dim(1), x.Dim(2) * x.Dim(3));
    }
}

using NormLab.Kernels;

namespace NormLab;

/// <summary>
/// The r_max/d_max schedule of batch renormalization: plain BatchNorm (r_max = 1, d_max = 0) for the first
/// <see cref="WarmupSteps"/> steps, then linear ramps to r_max = <see cref="RMax"/> at <see cref="RMaxStep"/> and
/// d_max = <see cref="DMax"/> at <see cref="DMaxStep"/> (the paper's 5k / 40k / 25k steps; scale them to a shorter run
/// with <see cref="Scaled"/>).
/// </summary>
public sealed record RenormSchedule(long WarmupSteps = 5000, double RMax = 3, long RMaxStep = 40000, double DMax = 5, long DMaxStep = 25000)
{
    /// <summary>The paper's schedule with every step count multiplied by <paramref name="factor"/> (e.g. run length / 40k).</summary>
    public static RenormSchedule Scaled(double factor) =>
        new((long)Math.Round(5000 * factor), 3, (long)Math.Round(40000 * factor), 5, (long)Math.Round(25000 * factor));

    /// <summary>(r_max, d_max) after <paramref name="step"/> training steps.</summary>
    public (double RMax, double DMax) At(long step)
    {
        double Ramp(double final, long end) => end <= WarmupSteps ? (step >= end ? 1 : 0) * final
            : Math.Clamp((double)(step - WarmupSteps) / (end - WarmupSteps), 0, 1) * final;
        return (1 + Ramp(RMax - 1, RMaxStep), Ramp(DMax, DMaxStep));
    }
}

/// <summary>
/// Batch renormalization (Ioffe 2017). Training normalizes with the batch statistics and corrects towards the moving ones:
/// <code>
/// σ_B = √(σ²_B + eps)    r = clip(σ_B/σ, 1/r_max, r_max)    d = clip((μ_B − μ)/σ, −d_max, d_max)
/// y = γ·((x − μ_B)/σ_B·r + d) + β          μ += α·(μ_B − μ)    σ += α·(σ_B − σ)
/// </code>
/// with r and d held constant in the backward pass (stop-gradient); eval uses y = γ·(x − μ)/σ + β. The moving statistics
/// are a mean and a standard deviation (buffers <c>running_mean</c>, <c>running_std</c>); α is <see cref="Momentum"/>.
/// r_max and d_max follow <see cref="Schedule"/> over the layer's training steps unless set by hand. Input [N, C] or [N, C, H, W].
/// </summary>
public sealed class BatchRenorm : Module, IBatchCounter
{
    private readonly double[] _mean, _m2, _invStd, _r, _d;
    private readonly Tensor _gammaR, _shift, _sumDyXhat, _sumDy;
    private Tensor? _input, _output, _inputGrad;
    private bool _usedBatch;
    private (int N, int C, int S) _layout;

    /// <summary>Creates the layer.</summary>
    public BatchRenorm(int numFeatures, double eps = 1e-5, double momentum = 0.1, RenormSchedule? schedule = null)
    {
        if (numFeatures <= 0)
            throw new ArgumentOutOfRangeException(nameof(numFeatures), $"BatchRenorm: numFeatures must be positive, got {numFeatures}.");
        if (!(eps >= 0) || !(momentum is >= 0 and <= 1))
            throw new ArgumentOutOfRangeException(nameof(eps), $"BatchRenorm: need eps ≥ 0 and momentum in [0, 1], got {eps} and {momentum}.");
        NumFeatures = numFeatures;
        Eps = eps;
        Momentum = momentum;
        Schedule = schedule ?? new RenormSchedule();
        Weight = NormParameters.Scale(numFeatures);
        Bias = NormParameters.Shift(numFeatures);
        RunningMean = new Tensor(numFeatures);
        RunningStd = NormParameters.Ones(numFeatures);
        (_mean, _m2, _invStd, _r, _d) = (new double[numFeatures], new double[numFeatures], new double[numFeatures], new double[numFeatures], new double[numFeatures]);
        (_gammaR, _shift, _sumDyXhat, _sumDy) = (new Tensor(numFeatures), new Tensor(numFeatures), new Tensor(numFeatures), new Tensor(numFeatures));
    }

    /// <summary>C.</summary>
    public int NumFeatures { get; }

    /// <summary>Added to the batch variance under the square root.</summary>
    public double Eps { get; }

    /// <summary>α, the update rate of the moving mean and standard deviation.</summary>
    public double Momentum { get; }

    /// <summary>How r_max and d_max relax over training.</summary>
    public RenormSchedule Schedule { get; set; }

    /// <summary>Fixed (r_max, d_max) instead of the schedule; null follows the schedule.</summary>
    public (double RMax, double DMax)? Clipping { get; set; }

    /// <summary>γ.</summary>
    public Parameter Weight { get; }

    /// <summary>β.</summary>
    public Parameter Bias { get; }

    /// <summary>μ, the moving mean.</summary>
    public Tensor RunningMean { get; }

    /// <summary>σ, the moving standard deviation.</summary>
    public Tensor RunningStd { get; }

    /// <summary>Training steps taken (drives the schedule).</summary>
    public long NumBatchesTracked { get; set; }

    /// <inheritdoc/>
    public bool TracksBatches => true;

    /// <summary>r and d of the last training step, per channel (for the lab).</summary>
    public (IReadOnlyList<double> R, IReadOnlyList<double> D) LastCorrection => (_r, _d);

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
        var gamma = Weight.Value.Span;
        var beta = Bias.Value.Span;
        var rm = RunningMean.Span;
        var rs = RunningStd.Span;
        if (!Training)
        {
            for (int ch = 0; ch < c; ch++)
                (_mean[ch], _invStd[ch]) = (rm[ch], 1.0 / rs[ch]);
            BatchNormKernels.Normalize<float>(y.Span, x.Span, _mean, _invStd, gamma, beta, n, c, s);
            return y;
        }
        if ((long)n * s == 1)
            throw new ArgumentException($"{this}: expected more than 1 value per channel when training, got input of shape {x.ShapeString}.");
        BatchNormKernels.Moments<float>(x.Span, n, c, s, _mean, _m2);
        BatchNormKernels.InvStd(_invStd, _m2, (double)n * s, Eps);
        var (rMax, dMax) = Clipping ?? Schedule.At(NumBatchesTracked);
        NumBatchesTracked++;
        var gr = _gammaR.Span;
        var shift = _shift.Span;
        for (int ch = 0; ch < c; ch++)
        {
            double sigmaB = 1 / _invStd[ch], sigma = rs[ch];
            _r[ch] = Math.Clamp(sigmaB / sigma, 1 / rMax, rMax);
            _d[ch] = Math.Clamp((_mean[ch] - rm[ch]) / sigma, -dMax, dMax);
            // y = γ·r·x̂_B + (γ·d + β): BatchNorm's normalize with γ' = γ·r and β' = γ·d + β.
            gr[ch] = (float)(gamma[ch] * _r[ch]);
            shift[ch] = (float)(gamma[ch] * _d[ch] + beta[ch]);
            rm[ch] = (float)(rm[ch] + Momentum * (_mean[ch] - rm[ch]));
            rs[ch] = (float)(sigma + Momentum * (sigmaB - sigma));
        }
        BatchNormKernels.Normalize<float>(y.Span, x.Span, _mean, _invStd, gr, shift, n, c, s);
        return y;
    }

    /// <inheritdoc/>
    protected override Tensor BackwardCore(Tensor dy)
    {
        ShapeCheck.Gradient(dy, _output, "BatchRenorm");
        var x = _input!;
        var dx = Tensor.Ensure(ref _inputGrad, x.Shape);
        var (n, c, s) = _layout;
        if (!_usedBatch)
        {
            BatchNormKernels.BackwardFixedStats<float>(dx.Span, Weight.Grad.Span, Bias.Grad.Span, dy.Span, x.Span, _mean, _invStd,
                Weight.Value.Span, n, c, s);
            return dx;
        }
        // r, d are constants: dx is BatchNorm's backward with γ' = γ·r; dγ = r·Σdy·x̂_B + d·Σdy, dβ = Σdy.
        _sumDyXhat.Zero();
        _sumDy.Zero();
        BatchNormKernels.BackwardBatchStats<float>(dx.Span, _sumDyXhat.Span, _sumDy.Span, dy.Span, x.Span, _mean, _invStd, _gammaR.Span, n, c, s);
        var dGamma = Weight.Grad.Span;
        var dBeta = Bias.Grad.Span;
        for (int ch = 0; ch < c; ch++)
        {
            dGamma[ch] += (float)(_r[ch] * _sumDyXhat.Span[ch] + _d[ch] * _sumDy.Span[ch]);
            dBeta[ch] += _sumDy.Span[ch];
        }
        return dx;
    }

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
        yield return ("running_std", RunningStd);
    }

    /// <inheritdoc/>
    public override string ToString() => $"BatchRenorm({NumFeatures}, eps={Eps}, momentum={Momentum})";
}

using NormLab.Kernels;

namespace NormLab;

/// <summary>
/// Decorrelated batch normalization (Huang, Yang, Lang &amp; Deng, CVPR 2018): the channels, in groups of
/// <see cref="GroupSize"/>, are ZCA-whitened over the batch (and spatial positions) instead of standardized one by one,
/// so each group's output has identity covariance, not just unit variances; then per-channel γ, β. Training keeps
/// <c>running_mean</c> and a running covariance per group (<c>running_covariance</c>, [groups, d, d], unbiased, averaged
/// with <see cref="Momentum"/> like BatchNorm's running variance); eval mode applies <c>running_whitening</c> =
/// (running_covariance + eps·I)^(−1/2), recomputed after each training step. The authors' code averages the batches'
/// whitening matrices instead; an average of inverse square roots of noisy covariances is not the population's, and in
/// the lab (norm-family) it left eval accuracy far below training accuracy. Input [N, C] or [N, C, H, W]. Statistics and
/// the eigendecomposition run in double (<see cref="Whitening"/>); this layer is slower than BatchNorm by design.
/// </summary>
public sealed class DecorrelatedBatchNorm : Module
{
    private readonly Whitening.State[] _states, _running;
    private double[][] _xhat, _buffer;
    private double[] _dx = [];
    private Tensor? _input, _output, _inputGrad;
    private bool _usedBatch;
    private (int N, int S) _layout;

    /// <summary>Creates the layer.</summary>
    /// <param name="numFeatures">C.</param>
    /// <param name="groupSize">Channels whitened together, d; must divide C (default: the largest divisor of C up to 16).</param>
    /// <param name="eps">Added to the eigenvalues.</param>
    /// <param name="momentum">Weight of the new batch statistics in the running ones.</param>
    public DecorrelatedBatchNorm(int numFeatures, int? groupSize = null, double eps = 1e-5, double momentum = 0.1)
    {
        if (numFeatures <= 0)
            throw new ArgumentOutOfRangeException(nameof(numFeatures), $"DecorrelatedBatchNorm: numFeatures must be positive, got {numFeatures}.");
        int d = groupSize ?? GroupNorm.DivisorGroups(numFeatures, 16);
        if (d <= 0 || numFeatures % d != 0)
            throw new ArgumentException($"DecorrelatedBatchNorm: the group size ({d}) must divide the number of channels ({numFeatures}).");
        if (!(eps >= 0) || !(momentum is >= 0 and <= 1))
            throw new ArgumentOutOfRangeException(nameof(eps), $"DecorrelatedBatchNorm: need eps ≥ 0 and momentum in [0, 1], got {eps} and {momentum}.");
        NumFeatures = numFeatures;
        GroupSize = d;
        Eps = eps;
        Momentum = momentum;
        int groups = numFeatures / d;
        Weight = NormParameters.Scale(numFeatures);
        Bias = NormParameters.Shift(numFeatures);
        RunningMean = new Tensor(numFeatures);
        RunningCovariance = new Tensor(groups, d, d);
        RunningWhitening = new Tensor(groups, d, d);
        for (int g = 0; g < groups; g++)
            for (int k = 0; k < d; k++)
                RunningCovariance.Span[(g * d + k) * d + k] = RunningWhitening.Span[(g * d + k) * d + k] = 1;
        _states = Enumerable.Range(0, groups).Select(_ => new Whitening.State(d)).ToArray();
        _running = Enumerable.Range(0, groups).Select(_ => new Whitening.State(d)).ToArray();
        _xhat = new double[groups][];
        _buffer = new double[groups][];
    }

    /// <summary>C.</summary>
    public int NumFeatures { get; }

    /// <summary>d, the channels whitened together.</summary>
    public int GroupSize { get; }

    /// <summary>Added to the covariance's eigenvalues.</summary>
    public double Eps { get; }

    /// <summary>Weight of the new statistics in the running ones.</summary>
    public double Momentum { get; }

    /// <summary>γ.</summary>
    public Parameter Weight { get; }

    /// <summary>β.</summary>
    public Parameter Bias { get; }

    /// <summary>The running mean per channel.</summary>
    public Tensor RunningMean { get; }

    /// <summary>The running (unbiased) covariance of each group, [groups, d, d].</summary>
    public Tensor RunningCovariance { get; }

    /// <summary>The whitening matrices of the running covariances, (Σ_run + eps·I)^(−1/2), [groups, d, d].</summary>
    public Tensor RunningWhitening { get; }

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        if (x.Rank is not (2 or 4) || x.Dim(1) != NumFeatures)
            throw new ArgumentException($"{this}: expected input [N, {NumFeatures}] or [N, {NumFeatures}, H, W], got shape {x.ShapeString}.");
        int n = x.Dim(0), s = x.Rank == 4 ? x.Dim(2) * x.Dim(3) : 1, m = n * s, d = GroupSize;
        _usedBatch = Training;
        if (Training && m <= d)
            throw new ArgumentException(
                $"{this}: whitening {d} channels together needs more than {d} values per channel in a batch, got {m} (input {x.ShapeString}); use a larger batch or a smaller group.");
        _layout = (n, s);
        _input = x;
        var y = Tensor.Ensure(ref _output, x.Shape);
        for (int g = 0; g < _states.Length; g++)
        {
            var xg = Gather(x, g, n, s, ref _buffer[g]);
            NormParameters.Grow(ref _xhat[g], m * d);
            var xhat = _xhat[g].AsSpan(0, m * d);
            if (Training)
            {
                var st = _states[g];
                Whitening.Forward(xhat, xg, m, d, Eps, st);
                var rm = RunningMean.Span.Slice(g * d, d);
                var rc = RunningCovariance.Span.Slice(g * d * d, d * d);
                var rw = RunningWhitening.Span.Slice(g * d * d, d * d);
                var run = _running[g];
                double unbiased = (double)m / (m - 1);
                for (int k = 0; k < d; k++)
                    rm[k] = (float)((1 - Momentum) * rm[k] + Momentum * st.Mean[k]);
                for (int k = 0; k < d * d; k++)
                {
                    rc[k] = (float)((1 - Momentum) * rc[k] + Momentum * unbiased * st.Covariance[k]);
                    run.Covariance[k] = rc[k];
                }
                Whitening.FromCovariance(run, d, Eps);
                for (int k = 0; k < d * d; k++)
                    rw[k] = (float)run.W[k];
            }
            else
            {
                // The group's state holds the running values in double (the backward's fixed-statistics path reads W).
                var st = _states[g];
                for (int k = 0; k < d; k++)
                    st.Mean[k] = RunningMean.Span[g * d + k];
                for (int k = 0; k < d * d; k++)
                    st.W[k] = RunningWhitening.Span[g * d * d + k];
                Whitening.Apply(xhat, xg, m, d, st.Mean, st.W);
            }
            Scatter(y, g, n, s, xhat, affine: true);
        }
        return y;
    }

    /// <inheritdoc/>
    protected override Tensor BackwardCore(Tensor dy)
    {
        ShapeCheck.Gradient(dy, _output, "DecorrelatedBatchNorm");
        var x = _input!;
        var dx = Tensor.Ensure(ref _inputGrad, x.Shape);
        var (n, s) = _layout;
        int m = n * s, d = GroupSize;
        var gamma = Weight.Value.Span;
        var dGamma = Weight.Grad.Span;
        var dBeta = Bias.Grad.Span;
        for (int g = 0; g < _states.Length; g++)
        {
            // dL/dy for this group, m×d, in the group's gather buffer (its input copy is not needed after the forward).
            Gather(dy, g, n, s, ref _buffer[g]);
            var grad = _buffer[g].AsSpan(0, m * d);
            var xhat = _xhat[g];
            for (int i = 0; i < m; i++)
                for (int k = 0; k < d; k++)
                {
                    int c = g * d + k;
                    dBeta[c] += (float)grad[i * d + k];
                    dGamma[c] += (float)(grad[i * d + k] * xhat[i * d + k]);
                    grad[i * d + k] *= gamma[c];
                }
            NormParameters.Grow(ref _dx, m * d);
            var dxg = _dx.AsSpan(0, m * d);
            if (_usedBatch)
                Whitening.Backward(dxg, grad, m, d, Eps, _states[g]);
            else
                Whitening.BackwardFixed(dxg, grad, m, d, _states[g].W);
            Scatter(dx, g, n, s, dxg, affine: false);
        }
        return dx;
    }

    // Group g's channels of a [n, C, s] tensor as an (n·s)×d matrix, in double.
    private ReadOnlySpan<double> Gather(Tensor t, int g, int n, int s, ref double[] buffer)
    {
        int d = GroupSize;
        NormParameters.Grow(ref buffer, n * s * d);
        var src = t.Span;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < d; k++)
            {
                int from = (i * NumFeatures + g * d + k) * s;
                for (int p = 0; p < s; p++)
                    buffer[(i * s + p) * d + k] = src[from + p];
            }
        return buffer.AsSpan(0, n * s * d);
    }

    private void Scatter(Tensor t, int g, int n, int s, ReadOnlySpan<double> values, bool affine)
    {
        int d = GroupSize;
        var dst = t.Span;
        var gamma = Weight.Value.Span;
        var beta = Bias.Value.Span;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < d; k++)
            {
                int c = g * d + k, to = (i * NumFeatures + c) * s;
                for (int p = 0; p < s; p++)
                {
                    double v = values[(i * s + p) * d + k];
                    dst[to + p] = (float)(affine ? gamma[c] * v + beta[c] : v);
                }
            }
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
        yield return ("running_covariance", RunningCovariance);
        yield return ("running_whitening", RunningWhitening);
    }

    /// <inheritdoc/>
    public override string ToString() => $"DecorrelatedBatchNorm({NumFeatures}, group_size={GroupSize}, eps={Eps}, momentum={Momentum})";
}

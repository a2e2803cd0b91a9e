namespace NormLab.Lab.Measures;

/// <summary>
/// The running statistics every BatchNorm of a model would have with another momentum, kept beside the layers' own
/// from the same training forwards (PyTorch's update: mean ← (1 − α)·mean + α·μ_B, var ← (1 − α)·var + α·σ²_B with
/// the unbiased batch variance; α = 1/t, the cumulative average, when the momentum is null). Momentum changes nothing
/// in training (a training forward normalizes with the batch's statistics), so one run serves every momentum.
/// </summary>
public sealed class EmaStatistics
{
    private readonly BatchNorm[] _layers;
    private readonly double[][] _mean, _var;
    private readonly long[] _updates;

    /// <summary>Starts tracking (mean 0, variance 1, as a fresh layer) through a forward hook on each BatchNorm of <paramref name="model"/>.</summary>
    public EmaStatistics(Module model, double? momentum)
    {
        if (momentum is { } m && !(m is > 0 and <= 1))
            throw new ArgumentOutOfRangeException(nameof(momentum), $"EmaStatistics: momentum must be in (0, 1] or null, got {m}.");
        Momentum = momentum;
        _layers = model.Modules().OfType<BatchNorm>().Where(b => b.TrackRunningStats).ToArray();
        _mean = _layers.Select(b => new double[b.NumFeatures]).ToArray();
        _var = _layers.Select(b => Enumerable.Repeat(1.0, b.NumFeatures).ToArray()).ToArray();
        _updates = new long[_layers.Length];
        for (int l = 0; l < _layers.Length; l++)
        {
            int index = l;
            var previous = _layers[l].ForwardHook;
            _layers[l].ForwardHook = (module, input, output) =>
            {
                previous?.Invoke(module, input, output);
                if (Active && module.Training && !_layers[index].Frozen)
                    Update(index, input);
            };
        }
    }

    /// <summary>α, or null for the cumulative average.</summary>
    public double? Momentum { get; }

    /// <summary>
    /// Whether training forwards update the statistics now. Switch it off around measurements that run the model in
    /// training mode (PreciseBN, batch statistics at test time), which are not training steps.
    /// </summary>
    public bool Active { get; set; } = true;

    /// <summary>Writes the tracked statistics into the layers' running buffers (save the model's state first to put them back).</summary>
    public void Apply()
    {
        for (int l = 0; l < _layers.Length; l++)
            for (int c = 0; c < _layers[l].NumFeatures; c++)
            {
                _layers[l].RunningMean!.Span[c] = (float)_mean[l][c];
                _layers[l].RunningVar!.Span[c] = (float)_var[l][c];
            }
    }

    private void Update(int l, Tensor x)
    {
        _updates[l]++;
        int n = x.Dim(0), channels = _layers[l].NumFeatures, s = x.Length / (n * channels);
        double count = (double)n * s, factor = Momentum ?? 1.0 / _updates[l];
        var v = x.Span;
        for (int c = 0; c < channels; c++)
        {
            double sum = 0, sq = 0;
            for (int i = 0; i < n; i++)
                foreach (float value in v.Slice((i * channels + c) * s, s))
                    sum += value;
            double mu = sum / count;
            for (int i = 0; i < n; i++)
                foreach (float value in v.Slice((i * channels + c) * s, s))
                    sq += (value - mu) * (value - mu);
            _mean[l][c] += factor * (mu - _mean[l][c]);
            _var[l][c] += factor * (sq / (count - 1) - _var[l][c]);
        }
    }
}

namespace NormLab;

/// <summary>
/// PreciseBN (Wu &amp; Johnson 2021; fvcore's <c>update_bn_stats</c>): re-estimates every BatchNorm's population
/// statistics from batches of training data with the weights fixed, replacing the exponential moving averages.
/// Each batch's statistics enter with equal weight per sample (<c>_PopulationVarianceEstimator</c>): with n_b values per
/// channel,
/// <code>
/// mean += (μ_b − mean)·n_b/N          sq += (μ_b² + σ²_b − sq)·n_b/N          var = sq − mean²
/// </code>
/// σ²_b the biased batch variance, N the values seen so far. As in fvcore, the result is the population's own (biased)
/// variance: over the whole data, it is exactly the variance eval mode should divide by.
/// </summary>
public static class PreciseBatchNorm
{
    /// <summary>
    /// Runs <paramref name="batches"/> (at most <paramref name="maxBatches"/>) through <paramref name="model"/> in training
    /// mode and sets each tracking BatchNorm's running statistics to the population estimate. Parameters, momentum and
    /// every module's train/eval mode are restored; <c>num_batches_tracked</c> counts the batches, as in fvcore.
    /// </summary>
    /// <returns>The number of batches used.</returns>
    public static int Update(Module model, IEnumerable<Tensor> batches, int maxBatches = 200)
    {
        var modes = model.Modules().Select(m => (Module: m, m.Training)).ToList();
        var layers = model.Modules().OfType<BatchNorm>().Where(b => b.TrackRunningStats).ToList();
        var momenta = layers.Select(b => b.Momentum).ToList();
        var mean = layers.Select(b => new double[b.NumFeatures]).ToList();
        var square = layers.Select(b => new double[b.NumFeatures]).ToList();
        var seen = new double[layers.Count];
        var counts = new double[layers.Count]; // values per channel in the current batch, from each layer's own input
        var hooks = layers.Select(b => b.ForwardHook).ToList();
        int used = 0;
        try
        {
            model.Train();
            for (int l = 0; l < layers.Count; l++)
            {
                int index = l;
                layers[l].Momentum = 1.0; // running statistics := this batch's (variance unbiased)
                layers[l].ForwardHook = (m, input, output) =>
                {
                    counts[index] = (double)input.Length / layers[index].NumFeatures;
                    hooks[index]?.Invoke(m, input, output);
                };
            }
            foreach (var x in batches)
            {
                if (used == maxBatches)
                    break;
                model.Forward(x);
                used++;
                for (int l = 0; l < layers.Count; l++)
                {
                    var bn = layers[l];
                    double n = counts[l];
                    seen[l] += n;
                    double w = n / seen[l];
                    for (int c = 0; c < bn.NumFeatures; c++)
                    {
                        double mu = bn.RunningMean!.Span[c], biased = bn.RunningVar!.Span[c] * (n - 1) / n;
                        mean[l][c] += (mu - mean[l][c]) * w;
                        square[l][c] += (mu * mu + biased - square[l][c]) * w;
                    }
                }
            }
            if (used == 0)
                throw new ArgumentException("PreciseBatchNorm: no batches to estimate statistics from.");
            for (int l = 0; l < layers.Count; l++)
                for (int c = 0; c < layers[l].NumFeatures; c++)
                {
                    layers[l].RunningMean!.Span[c] = (float)mean[l][c];
                    layers[l].RunningVar!.Span[c] = (float)Math.Max(square[l][c] - mean[l][c] * mean[l][c], 0);
                }
        }
        finally
        {
            for (int l = 0; l < layers.Count; l++)
                (layers[l].Momentum, layers[l].ForwardHook) = (momenta[l], hooks[l]);
            foreach (var (m, training) in modes) // pre-order: a module's own flag is set after its ancestors'
                m.Train(training);
        }
        return used;
    }
}

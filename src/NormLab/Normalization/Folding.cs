namespace NormLab;

/// <summary>
/// Folds eval-mode BatchNorm into the Linear or Conv2d before it (PyTorch's <c>fuse_linear_bn_weights</c> /
/// <c>fuse_conv_bn_weights</c>): with s = γ/√(running_var + eps),
/// <code>
/// W'[o] = W[o]·s[o]      b' = (b − running_mean)·s + β
/// </code>
/// so the pair becomes one layer that computes the same eval-mode output with one pass less over the activations.
/// The variants that evaluate as the same affine map fold too: frozen, ghost and noisy BN (s as above), batch
/// renormalization (s = γ/running_std) and ℓp BN (s = γ/(running_scale + eps)).
/// </summary>
public static class Folding
{
    /// <summary>
    /// Returns an equivalent model for inference, in eval mode, in which every BatchNorm (or variant above) that directly follows a Linear or
    /// Conv2d inside a <see cref="Sequential"/> (or a residual block's body or shortcut) is folded into that layer. The
    /// folded layers are new; every other layer is shared with <paramref name="model"/> (same parameter objects), so
    /// train the original, then fold it again.
    /// </summary>
    /// <exception cref="InvalidOperationException">A BatchNorm to fold keeps no running statistics.</exception>
    public static Module FoldBatchNorm(this Module model)
    {
        var folded = Fold(model);
        folded.Eval();
        return folded;
    }

    private static Module Fold(Module m) => m switch
    {
        Sequential s => FoldSequence(s),
        Residual r => new Residual(Fold(r.Body), r.Shortcut is null ? null : Fold(r.Shortcut)),
        _ => m,
    };

    private static Sequential FoldSequence(Sequential s)
    {
        var layers = new List<Module>();
        for (int i = 0; i < s.Layers.Count; i++)
        {
            var layer = s.Layers[i];
            if (i + 1 < s.Layers.Count && layer is Linear or Conv2d && EvalAffine(s.Layers[i + 1]) is { } norm)
            {
                layers.Add(layer is Linear linear ? FoldLinear(linear, norm) : FoldConv((Conv2d)layer, norm));
                i++;
                continue;
            }
            layers.Add(Fold(layer));
        }
        return new Sequential([.. layers]) { NeedsInputGradient = s.NeedsInputGradient };
    }

    // What a normalization layer computes in eval mode, y = γ·(x − mean)/σ + β per channel, if it is that affine map.
    private sealed record Affine(Module Layer, int Features, Tensor Mean, double[] Sigma, Tensor? Gamma, Tensor? Beta);

    private static Affine? EvalAffine(Module m) => m switch
    {
        BatchNorm bn => bn.RunningMean is null || bn.RunningVar is null
            ? throw new InvalidOperationException($"Cannot fold {bn}: it keeps no running statistics (track_running_stats=False), so its eval output depends on the batch.")
            : new(bn, bn.NumFeatures, bn.RunningMean, Sigma(bn.RunningVar, v => Math.Sqrt(v + bn.Eps)), bn.Weight?.Value, bn.Bias?.Value),
        NoisyBatchNorm noisy => EvalAffine(noisy.Inner),
        GhostBatchNorm g => new(g, g.NumFeatures, g.RunningMean, Sigma(g.RunningVar, v => Math.Sqrt(v + g.Eps)), g.Weight.Value, g.Bias.Value),
        BatchRenorm r => new(r, r.NumFeatures, r.RunningMean, Sigma(r.RunningStd, v => v), r.Weight.Value, r.Bias.Value),
        LpBatchNorm lp => new(lp, lp.NumFeatures, lp.RunningMean, Sigma(lp.RunningScale, v => v + lp.Eps), lp.Weight.Value, lp.Bias.Value),
        _ => null,
    };

    private static double[] Sigma(Tensor running, Func<double, double> f) => running.ToArray().Select(v => f(v)).ToArray();

    private static Linear FoldLinear(Linear linear, Affine norm)
    {
        if (norm.Features != linear.OutFeatures)
            throw new InvalidOperationException($"Cannot fold {norm.Layer} into {linear}: {norm.Features} features for {linear.OutFeatures} outputs.");
        var folded = new Linear(linear.InFeatures, linear.OutFeatures, bias: true, rng: new Rng(0));
        Scale(folded.Weight.Value, folded.Bias!.Value, linear.Weight.Value, linear.Bias?.Value, norm);
        return folded;
    }

    private static Conv2d FoldConv(Conv2d conv, Affine norm)
    {
        if (norm.Features != conv.OutChannels)
            throw new InvalidOperationException($"Cannot fold {norm.Layer} into {conv}: {norm.Features} channels for {conv.OutChannels} outputs.");
        var folded = new Conv2d(conv.InChannels, conv.OutChannels, conv.KernelSize, conv.Stride, conv.Padding, bias: true, rng: new Rng(0));
        Scale(folded.Weight.Value, folded.Bias!.Value, conv.Weight.Value, conv.Bias?.Value, norm);
        return folded;
    }

    // weight' = weight·s per output row, bias' = (bias − mean)·s + β with s = γ/σ; in double, then rounded once.
    private static void Scale(Tensor weightOut, Tensor biasOut, Tensor weight, Tensor? bias, Affine norm)
    {
        int outputs = norm.Features, row = weight.Length / outputs;
        var w = weight.Span;
        var wo = weightOut.Span;
        var bo = biasOut.Span;
        for (int o = 0; o < outputs; o++)
        {
            double gamma = norm.Gamma?.Span[o] ?? 1, beta = norm.Beta?.Span[o] ?? 0;
            double s = gamma / norm.Sigma[o];
            for (int j = o * row; j < (o + 1) * row; j++)
                wo[j] = (float)(w[j] * s);
            bo[o] = (float)(((bias?.Span[o] ?? 0) - norm.Mean.Span[o]) * s + beta);
        }
    }
}

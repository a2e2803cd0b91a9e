namespace NormLab;

/// <summary>
/// Folds eval-mode BatchNorm into the Linear or Conv2d before it (PyTorch's <c>fuse_linear_bn_weights</c> /
/// <c>fuse_conv_bn_weights</c>): with s = γ/√(running_var + eps),
/// <code>
/// W'[o] = W[o]·s[o]      b' = (b − running_mean)·s + β
/// </code>
/// so the pair becomes one layer that computes the same eval-mode output with one pass less over the activations.
/// </summary>
public static class Folding
{
    /// <summary>
    /// Returns an equivalent model for inference, in eval mode, in which every BatchNorm that directly follows a Linear or
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
            if (i + 1 < s.Layers.Count && s.Layers[i + 1] is BatchNorm bn && layer is Linear or Conv2d)
            {
                layers.Add(layer is Linear linear ? FoldLinear(linear, bn) : FoldConv((Conv2d)layer, bn));
                i++;
                continue;
            }
            layers.Add(Fold(layer));
        }
        return new Sequential([.. layers]) { NeedsInputGradient = s.NeedsInputGradient };
    }

    private static Linear FoldLinear(Linear linear, BatchNorm bn)
    {
        if (bn.NumFeatures != linear.OutFeatures)
            throw new InvalidOperationException($"Cannot fold {bn} into {linear}: {bn.NumFeatures} features for {linear.OutFeatures} outputs.");
        var folded = new Linear(linear.InFeatures, linear.OutFeatures, bias: true, rng: new Rng(0));
        Scale(folded.Weight.Value, folded.Bias!.Value, linear.Weight.Value, linear.Bias?.Value, bn);
        return folded;
    }

    private static Conv2d FoldConv(Conv2d conv, BatchNorm bn)
    {
        if (bn.NumFeatures != conv.OutChannels)
            throw new InvalidOperationException($"Cannot fold {bn} into {conv}: {bn.NumFeatures} channels for {conv.OutChannels} outputs.");
        var folded = new Conv2d(conv.InChannels, conv.OutChannels, conv.KernelSize, conv.Stride, conv.Padding, bias: true, rng: new Rng(0));
        Scale(folded.Weight.Value, folded.Bias!.Value, conv.Weight.Value, conv.Bias?.Value, bn);
        return folded;
    }

    // weight' = weight·s per output row, bias' = (bias − running_mean)·s + β; in double, then rounded once.
    private static void Scale(Tensor weightOut, Tensor biasOut, Tensor weight, Tensor? bias, BatchNorm bn)
    {
        if (bn.RunningMean is null || bn.RunningVar is null)
            throw new InvalidOperationException($"Cannot fold {bn}: it keeps no running statistics (track_running_stats=False), so its eval output depends on the batch.");
        int outputs = bn.NumFeatures, row = weight.Length / outputs;
        var w = weight.Span;
        var wo = weightOut.Span;
        var bo = biasOut.Span;
        for (int o = 0; o < outputs; o++)
        {
            double gamma = bn.Weight?.Value.Span[o] ?? 1, beta = bn.Bias?.Value.Span[o] ?? 0;
            double s = gamma / Math.Sqrt(bn.RunningVar.Span[o] + bn.Eps);
            for (int j = o * row; j < (o + 1) * row; j++)
                wo[j] = (float)(w[j] * s);
            bo[o] = (float)(((bias?.Span[o] ?? 0) - bn.RunningMean.Span[o]) * s + beta);
        }
    }
}

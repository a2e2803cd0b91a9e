using static NormLab.Onnx.GraphBuilder;

namespace NormLab.Onnx;

/// <summary>
/// The normalization family in eval mode. Every layer that evaluates with running statistics is the per-channel affine
/// map γ·(x − μ)/σ + β and becomes one <c>BatchNormalization</c> (training_mode = 0): BatchNorm (frozen or not), ghost
/// and noisy BN with σ = √(running_var + eps); batch renormalization with σ = running_std (ε = 0, σ² computed in the graph
/// from the stored buffer); ℓp BN with σ = running_scale + eps. Layers with per-sample statistics map to ONNX's
/// InstanceNormalization, LayerNormalization (opset 17) and GroupNormalization (opset 21; before it, the decomposition
/// torch.onnx uses: instance norm over [N, G, −1] then the per-channel affine). Whitening is x − μ times each group's
/// running whitening matrix, a batched MatMul.
/// </summary>
internal sealed partial class Emitter
{
    private Value? Norm(Module m, string path, Value x) => m switch
    {
        BatchNorm bn => BatchNorm(bn, path, x),
        NoisyBatchNorm noisy => BatchNorm(noisy.Inner, path, x),   // the noise is training-only
        GhostBatchNorm gb => BatchNormalization(path, Check(gb, path, x, gb.NumFeatures, 2, 4), g.State(gb.Weight.Value), g.State(gb.Bias.Value),
            g.State(gb.RunningMean), g.State(gb.RunningVar), gb.Eps, gb.Momentum),
        BatchRenorm r => BatchNormalization(path, Check(r, path, x, r.NumFeatures, 2, 4), g.State(r.Weight.Value), g.State(r.Bias.Value),
            g.State(r.RunningMean), Square(path, g.State(r.RunningStd)), 0, r.Momentum),
        LpBatchNorm lp => BatchNormalization(path, Check(lp, path, x, lp.NumFeatures, 2, 4), g.State(lp.Weight.Value), g.State(lp.Bias.Value),
            g.State(lp.RunningMean), Square(path, g.Node(path, "Add", [g.State(lp.RunningScale), g.Constant(Scoped(path, "eps"), [(float)lp.Eps], [])])), 0, lp.Momentum),
        InstanceNorm2d inorm => InstanceNorm(inorm, path, x),
        GroupNorm gn => GroupNorm(gn, path, x),
        LayerNorm ln => LayerNorm(ln, path, x),
        DecorrelatedBatchNorm w => Whiten(w, path, x),
        _ => null,
    };

    private Value BatchNorm(BatchNorm bn, string path, Value x)
    {
        if (bn.RunningMean is null || bn.RunningVar is null)
            throw Error(bn, path, "keeps no running statistics, so in eval mode it normalizes with the batch's own; ONNX's BatchNormalization in inference mode cannot express that");
        // SyncBatchNorm, like PyTorch's, takes any [N, C, *].
        x = bn switch
        {
            BatchNorm2d => Check(bn, path, x, bn.NumFeatures, 4),
            BatchNorm1d => Check(bn, path, x, bn.NumFeatures, 2, 3),
            _ => Check(bn, path, x, bn.NumFeatures, 2, 3, 4, 5),
        };
        return BatchNormalization(path, x, Scale(bn.Weight, path, bn.NumFeatures), Shift(bn.Bias, path, bn.NumFeatures),
            g.State(bn.RunningMean), g.State(bn.RunningVar), bn.Eps, bn.Momentum);
    }

    // ONNX's momentum is the weight of the old running value, PyTorch's (and NormLab's) that of the new batch statistic:
    // 0.1 here is 0.9 there. It only matters to a runtime that trains; a cumulative average (momentum null) has no ONNX
    // equivalent, so the attribute is left at its default then.
    private Value BatchNormalization(string path, Value x, string scale, string bias, string mean, string variance, double eps, double? momentum)
    {
        var attributes = new List<Proto.AttributeProto> { Float("epsilon", eps) };
        if (momentum is { } mo)
            attributes.Add(Float("momentum", 1 - mo));
        attributes.Add(Int("training_mode", 0));
        return new Value(g.Node(path, "BatchNormalization", [x.Name, scale, bias, mean, variance], [.. attributes]), x.Shape);
    }

    private Value InstanceNorm(InstanceNorm2d inorm, string path, Value x)
    {
        x = Check(inorm, path, x, inorm.NumFeatures, 4);
        string scale = Scale(inorm.Weight, path, inorm.NumFeatures), shift = Shift(inorm.Bias, path, inorm.NumFeatures);
        if (inorm.RunningMean is not null && inorm.RunningVar is not null)   // eval mode uses the running statistics
            return BatchNormalization(path, x, scale, shift, g.State(inorm.RunningMean), g.State(inorm.RunningVar), inorm.Eps, inorm.Momentum);
        return new Value(g.Node(path, "InstanceNormalization", [x.Name, scale, shift], Float("epsilon", inorm.Eps)), x.Shape);
    }

    private Value GroupNorm(GroupNorm gn, string path, Value x)
    {
        if (x.Rank < 2 || x.Shape[1] != gn.NumChannels)
            throw Error(gn, path, $"expects input [N, {gn.NumChannels}, *], gets {x.ShapeString}");
        int groups = gn.NumGroups;
        if (g.Opset >= 21)
            return new Value(g.Node(path, "GroupNormalization", [x.Name, Scale(gn.Weight, path, gn.NumChannels), Shift(gn.Bias, path, gn.NumChannels)],
                Float("epsilon", gn.Eps), Int("num_groups", groups)), x.Shape);
        var grouped = g.Node(path, "Reshape", [x.Name, g.Int64s(Scoped(path, "group_shape"), 0, groups, -1)]);
        var ones = g.Constant(Scoped(path, "group_ones"), Enumerable.Repeat(1f, groups).ToArray(), [groups]);
        var zeros = g.Constant(Scoped(path, "group_zeros"), new float[groups], [groups]);
        var normalized = g.Node(path, "InstanceNormalization", [grouped, ones, zeros], Float("epsilon", gn.Eps));
        var y = new Value(g.Node(path, "Reshape", [normalized, g.Int64s(Scoped(path, "shape"), [.. x.Shape.Select(d => d < 0 ? 0L : d)])]), x.Shape);
        return Affine(gn.Weight, gn.Bias, path, y);
    }

    private Value LayerNorm(LayerNorm ln, string path, Value x)
    {
        int k = ln.NormalizedShape.Count;
        if (x.Rank < k + 1 || !x.Shape[^k..].SequenceEqual(ln.NormalizedShape))
            throw Error(ln, path, $"normalizes the trailing dimensions [{string.Join(", ", ln.NormalizedShape)}], gets input {x.ShapeString}");
        int size = ln.NormalizedShape.Aggregate(1, (a, b) => a * b);
        var inputs = new List<string> { x.Name, ln.Weight is null ? g.Constant(Scoped(path, "ones"), Enumerable.Repeat(1f, size).ToArray(), [.. ln.NormalizedShape]) : g.State(ln.Weight.Value) };
        if (ln.Bias is not null)
            inputs.Add(g.State(ln.Bias.Value));
        return new Value(g.Node(path, "LayerNormalization", inputs, Int("axis", -k), Float("epsilon", ln.Eps)), x.Shape);
    }

    // Eval mode: x̂ = (x − μ)·W per group of d channels (W = running_whitening[g], symmetric up to rounding, so its
    // transpose is used to multiply from the left exactly as NormLab multiplies from the right), then γ, β.
    private Value Whiten(DecorrelatedBatchNorm w, string path, Value x)
    {
        x = Check(w, path, x, w.NumFeatures, 2, 4);
        int d = w.GroupSize, groups = w.NumFeatures / d;
        var centered = g.Node(path, "Sub", [x.Name, Channelwise(g.State(w.RunningMean), path, x.Rank)]);
        var grouped = g.Node(path, "Reshape", [centered, g.Int64s(Scoped(path, "group_shape"), 0, groups, d, -1)]);
        var transposed = g.Node(path, "Transpose", [g.State(w.RunningWhitening)], Ints("perm", 0, 2, 1));
        var whitened = g.Node(path, "MatMul", [transposed, grouped]);
        var y = new Value(g.Node(path, "Reshape", [whitened, g.Int64s(Scoped(path, "shape"), [.. x.Shape.Select(s => s < 0 ? 0L : s)])]), x.Shape);
        return Affine(w.Weight, w.Bias, path, y);
    }

    private Value Affine(Parameter? weight, Parameter? bias, string path, Value x)
    {
        var y = x.Name;
        if (weight is not null)
            y = g.Node(path, "Mul", [y, Channelwise(g.State(weight.Value), path, x.Rank)]);
        if (bias is not null)
            y = g.Node(path, "Add", [y, Channelwise(g.State(bias.Value), path, x.Rank)]);
        return new Value(y, x.Shape);
    }

    // A per-channel [C] vector shaped [C, 1, …] to broadcast against [N, C, …].
    private string Channelwise(string vector, string path, int rank) =>
        rank <= 2 ? vector : g.Node(path, "Unsqueeze", [vector, g.Int64s(Scoped(path, "channel_axes"), [.. Enumerable.Range(1, rank - 2).Select(a => (long)a)])]);

    private string Square(string path, string value) => g.Node(path, "Mul", [value, value]);

    private string Scale(Parameter? gamma, string path, int channels) =>
        gamma is null ? g.Constant(Scoped(path, "ones"), Enumerable.Repeat(1f, channels).ToArray(), [channels]) : g.State(gamma.Value);

    private string Shift(Parameter? beta, string path, int channels) =>
        beta is null ? g.Constant(Scoped(path, "zeros"), new float[channels], [channels]) : g.State(beta.Value);

    private static Value Check(Module m, string path, Value x, int channels, params int[] ranks)
    {
        if (!ranks.Contains(x.Rank) || x.Shape[1] != channels)
            throw Error(m, path, $"expects a {string.Join(" or ", ranks.Select(r => r + "-D"))} input with {channels} channels in dimension 1, gets {x.ShapeString}");
        return x;
    }
}

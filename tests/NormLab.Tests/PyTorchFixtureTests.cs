using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>
/// NormLab against PyTorch 2.10 (libtorch CPU through TorchSharp, bench/NormLab.Peer), from committed fixtures.
/// Tolerance: relative 1e-5, plus an absolute 1e-5 of the tensor's largest magnitude for values that cancel to near zero
/// (BN's dx is a difference of three terms; PyTorch and NormLab round them in different orders).
/// </summary>
public class PyTorchFixtureTests
{
    private const double Rtol = 1e-5;

    private static void Close(string label, Tensor expected, Tensor actual, double? scale = null)
    {
        scale ??= MaxAbs(expected);
        TensorAssert.Close(label, expected, actual, Rtol, 1e-5 * scale.Value);
    }

    private static double MaxAbs(Tensor t) => t.ToArray().Select(v => Math.Abs((double)v)).DefaultIfEmpty(0).Max();

    /// <summary>
    /// The scale of BN's dx: its terms are of size |dy|·γ/σ. Where they cancel exactly (m = 2 makes the output ±1 whatever
    /// x is, so dx = 0) both sides hold rounding noise of that size, not of the size of the result.
    /// </summary>
    private static double DxScale(BatchNorm bn, Tensor x, Tensor dy)
    {
        int c = bn.NumFeatures, n = x.Dim(0), s = x.Length / (n * c);
        double invStd = 0;
        if (bn.Training || bn.RunningVar is null)
        {
            var (_, variance) = BatchNormTests.ChannelMoments(x, n, c, s);
            invStd = variance.Max(v => 1 / Math.Sqrt(v + bn.Eps));
        }
        else
            invStd = bn.RunningVar.ToArray().Max(v => 1 / Math.Sqrt(v + bn.Eps));
        double gamma = bn.Weight is null ? 1 : MaxAbs(bn.Weight.Value);
        return MaxAbs(dy) * gamma * invStd;
    }

    public static TheoryData<string> BatchNormCases => Fixture.Cases("batchnorm");

    [Theory]
    [MemberData(nameof(BatchNormCases))]
    public void BatchNormMatchesPyTorchOverThreeTrainingStepsAndEval(string name)
    {
        var f = Fixture.Load("batchnorm", name);
        int channels = int.Parse(f.Meta("shape").Split(',')[1]);
        double? momentum = f.Meta("momentum") == "none" ? null : f.Number("momentum");
        bool affine = f.Flag("affine"), track = f.Flag("track_running_stats");
        BatchNorm bn = f.Meta("module") == "BatchNorm2d"
            ? new BatchNorm2d(channels, f.Number("eps"), momentum, affine, track)
            : new BatchNorm1d(channels, f.Number("eps"), momentum, affine, track);
        if (affine)
        {
            bn.Weight!.Value.CopyFrom(f.T("weight"));
            bn.Bias!.Value.CopyFrom(f.T("bias"));
        }
        foreach (var step in new[] { "1", "2", "3", "e" })
        {
            if (step == "e")
                bn.Eval();
            bn.ZeroGrad();
            Close($"{name} y.{step}", f.T($"y.{step}"), bn.Forward(f.T($"x.{step}")));
            double dxScale = DxScale(bn, f.T($"x.{step}"), f.T($"dy.{step}"));
            Close($"{name} dx.{step}", f.T($"dx.{step}"), bn.Backward(f.T($"dy.{step}")), dxScale);
            if (affine)
            {
                Close($"{name} dweight.{step}", f.T($"dweight.{step}"), bn.Weight!.Grad);
                Close($"{name} dbias.{step}", f.T($"dbias.{step}"), bn.Bias!.Grad);
            }
            if (track && step != "e")
            {
                Close($"{name} running_mean.{step}", f.T($"running_mean.{step}"), bn.RunningMean!);
                Close($"{name} running_var.{step}", f.T($"running_var.{step}"), bn.RunningVar!);
                Assert.Equal(f.Longs($"num_batches_tracked.{step}")[0], bn.NumBatchesTracked);
            }
        }
        if (track)
            Assert.Equal(3, bn.NumBatchesTracked);   // eval does not count
    }

    public static TheoryData<string> NormCases => Fixture.Cases("norms");

    [Theory]
    [MemberData(nameof(NormCases))]
    public void GroupLayerAndInstanceNormMatchPyTorch(string name)
    {
        var f = Fixture.Load("norms", name);
        var dims = f.Meta("shape").Split(',').Select(int.Parse).ToArray();
        bool affine = f.Flag("affine"), track = f.Flag("track_running_stats");
        RowNorm layer = f.Meta("module") switch
        {
            "GroupNorm" => new GroupNorm(int.Parse(f.Meta("groups")), dims[1], f.Number("eps"), affine),
            "LayerNorm" => new LayerNorm(f.Meta("normalized_shape").Split(',').Select(int.Parse).ToArray(), f.Number("eps"), affine),
            _ => new InstanceNorm2d(dims[1], f.Number("eps"), f.Number("momentum"), affine, track),
        };
        if (affine)
        {
            layer.Weight!.Value.CopyFrom(f.T("weight"));
            layer.Bias!.Value.CopyFrom(f.T("bias"));
        }
        foreach (var step in new[] { "1", "2", "3", "e" })
        {
            if (step == "e")
                layer.Eval();
            layer.ZeroGrad();
            var x = f.T($"x.{step}");
            var dy = f.T($"dy.{step}");
            var y = layer.Forward(x);
            var dx = layer.Backward(dy);
            // PyTorch's float statistics lose accuracy on short rows (two values per group in groupnorm_2d_input: up to
            // 5e-5 off). So NormLab must match a double-precision reference tightly, and PyTorch up to PyTorch's own error.
            if (layer is not InstanceNorm2d { RunningMean: not null } || step != "e")
            {
                var (yRef, dxRef) = RowReference(layer, x, dy);
                double dxScale = MaxAbs(dy) * (affine ? MaxAbs(layer.Weight!.Value) : 1);
                TensorAssert.Close($"{name} y.{step} vs double", yRef, y, 1e-5, 1e-5 * MaxAbs(yRef));
                TensorAssert.Close($"{name} dx.{step} vs double", dxRef, dx, 1e-5, 1e-5 * dxScale);
                TensorAssert.Close($"{name} y.{step}", f.T($"y.{step}"), y, Rtol, 1e-5 * MaxAbs(yRef) + MaxDiff(f.T($"y.{step}"), yRef));
                TensorAssert.Close($"{name} dx.{step}", f.T($"dx.{step}"), dx, Rtol, 1e-5 * dxScale + MaxDiff(f.T($"dx.{step}"), dxRef));
            }
            else
            {
                Close($"{name} y.{step}", f.T($"y.{step}"), y);
                Close($"{name} dx.{step}", f.T($"dx.{step}"), dx);
            }
            if (affine)
            {
                Close($"{name} dweight.{step}", f.T($"dweight.{step}"), layer.Weight!.Grad);
                Close($"{name} dbias.{step}", f.T($"dbias.{step}"), layer.Bias!.Grad);
            }
            if (layer is InstanceNorm2d { RunningMean: not null } tracked && step != "e")
            {
                Close($"{name} running_mean.{step}", f.T($"running_mean.{step}"), tracked.RunningMean);
                Close($"{name} running_var.{step}", f.T($"running_var.{step}"), tracked.RunningVar!);
            }
        }
    }

    private static double MaxDiff(Tensor a, Tensor b) => a.ToArray().Zip(b.ToArray(), (p, q) => Math.Abs((double)p - q)).Max();

    /// <summary>
    /// y and dx of a per-sample normalization straight from the definition, in double: each row (a group of channels,
    /// a sample's trailing dimensions, or one channel of one sample) is normalized by its own mean and biased variance.
    /// </summary>
    private static (Tensor Y, Tensor Dx) RowReference(RowNorm layer, Tensor x, Tensor dy)
    {
        var (rows, length, paramOf) = layer switch
        {
            GroupNorm gn => (x.Dim(0) * gn.NumGroups, x.Length / (x.Dim(0) * gn.NumGroups),
                (Func<int, int, int>)((r, i) => r % gn.NumGroups * (gn.NumChannels / gn.NumGroups) + i / (x.Length / (x.Dim(0) * gn.NumChannels)))),
            LayerNorm l => (x.Length / l.NormalizedShape.Aggregate(1, (a, b) => a * b), l.NormalizedShape.Aggregate(1, (a, b) => a * b),
                (r, i) => i),
            _ => (x.Dim(0) * x.Dim(1), x.Dim(2) * x.Dim(3), (Func<int, int, int>)((r, i) => r % x.Dim(1))),
        };
        var xs = x.ToArray();
        var g = dy.ToArray();
        var y = new float[xs.Length];
        var dx = new float[xs.Length];
        for (int r = 0; r < rows; r++)
        {
            var row = Enumerable.Range(r * length, length).ToArray();
            double mean = row.Average(i => (double)xs[i]);
            double variance = row.Average(i => (xs[i] - mean) * (xs[i] - mean));
            double istd = 1 / Math.Sqrt(variance + layer.Eps);
            double Gamma(int i) => layer.Weight is null ? 1 : layer.Weight.Value.Span[paramOf(r, i - r * length)];
            double Beta(int i) => layer.Bias is null ? 0 : layer.Bias.Value.Span[paramOf(r, i - r * length)];
            double gMean = row.Average(i => Gamma(i) * g[i]);
            double gxMean = row.Average(i => Gamma(i) * g[i] * (xs[i] - mean) * istd);
            foreach (int i in row)
            {
                double xhat = (xs[i] - mean) * istd;
                y[i] = (float)(Gamma(i) * xhat + Beta(i));
                dx[i] = (float)(istd * (Gamma(i) * g[i] - gMean - xhat * gxMean));
            }
        }
        return (Tensor.FromArray(y, x.Shape.ToArray()), Tensor.FromArray(dx, x.Shape.ToArray()));
    }

    public static TheoryData<string> OptimizerCases => Fixture.Cases("optim");

    [Theory]
    [MemberData(nameof(OptimizerCases))]
    public void OptimizerMatchesPyTorchOverThreeSteps(string name)
    {
        var f = Fixture.Load("optim", name);
        var p = new Parameter("p", f.T("p.0"), ParameterRole.Weight);
        double lr = f.Number("lr"), wd = f.Number("weight_decay");
        Optimizer optimizer = f.Meta("optimizer") switch
        {
            "SGD" => new Sgd([p], lr, f.Number("momentum"), f.Number("dampening"), wd, f.Flag("nesterov")),
            "Adam" => new Adam([p], lr, f.Number("beta1"), f.Number("beta2"), f.Number("eps"), wd),
            "AdamW" => new AdamW([p], lr, f.Number("beta1"), f.Number("beta2"), f.Number("eps"), wd),
            var other => throw new InvalidOperationException(other),
        };
        for (int s = 1; s <= 3; s++)
        {
            p.Grad.CopyFrom(f.T($"g.{s}"));
            optimizer.Step();
            Close($"{name} p.{s}", f.T($"p.{s}"), p.Value);
        }
    }

    [Theory]
    [InlineData("linear")]
    [InlineData("linear_nobias")]
    public void LinearMatchesPyTorch(string name)
    {
        var f = Fixture.Load("layers", name);
        var w = f.T("weight");
        var layer = new Linear(w.Dim(1), w.Dim(0), bias: f.Has("bias"));
        layer.Weight.Value.CopyFrom(w);
        if (f.Has("bias"))
            layer.Bias!.Value.CopyFrom(f.T("bias"));
        CheckLayer(f, layer);
    }

    [Theory]
    [InlineData("relu")]
    [InlineData("sigmoid")]
    [InlineData("tanh")]
    public void ActivationMatchesPyTorch(string name)
    {
        Module m = name switch { "relu" => new ReLU(), "sigmoid" => new Sigmoid(), _ => new Tanh() };
        CheckLayer(Fixture.Load("layers", name), m);
    }

    [Theory]
    [InlineData("cross_entropy")]
    [InlineData("log_softmax_large")]
    public void CrossEntropyMatchesPyTorch(string name)
    {
        var f = Fixture.Load("layers", name);
        var targets = f.Longs("target").Select(t => (int)t).ToArray();
        var ce = new SoftmaxCrossEntropy();
        float loss = ce.Forward(f.T("x"), targets);
        Assert.Equal(f.T("loss")[0], loss, 5e-6 * Math.Abs(f.T("loss")[0]) + 1e-7);
        Close($"{name} dx", f.T("dx"), ce.Backward());
    }

    [Fact]
    public void MeanSquaredErrorMatchesPyTorch()
    {
        var f = Fixture.Load("layers", "mse");
        var mse = new MeanSquaredError();
        float loss = mse.Forward(f.T("x"), f.T("target"));
        Assert.Equal(f.T("loss")[0], loss, 5e-6 * Math.Abs(f.T("loss")[0]));
        Close("mse dx", f.T("dx"), mse.Backward());
    }

    [Theory]
    [InlineData("conv2d_s1_p1")]
    [InlineData("conv2d_s2_p1")]
    [InlineData("conv2d_k1")]
    [InlineData("conv2d_winograd")]
    [InlineData("conv2d_winograd_p2")]
    public void Conv2dMatchesPyTorch(string name)
    {
        var f = Fixture.Load("layers", name);
        var conv = new Conv2d(f.Int("in_channels"), f.Int("out_channels"), f.Int("kernel_size"), f.Int("stride"), f.Int("padding"),
            bias: f.Flag("bias"));
        conv.Weight.Value.CopyFrom(f.T("weight"));
        if (conv.Bias is not null)
            conv.Bias.Value.CopyFrom(f.T("bias"));
        CheckLayer(f, conv);
    }

    [Theory]
    [InlineData("maxpool2d_k2")]
    [InlineData("maxpool2d_k3_s2_p1")]
    [InlineData("avgpool2d_k2")]
    [InlineData("avgpool2d_k3_s2_p1")]
    public void PoolingMatchesPyTorch(string name)
    {
        var f = Fixture.Load("layers", name);
        int k = f.Int("kernel_size"), s = f.Int("stride"), p = f.Int("padding");
        Module pool = f.Meta("module") == "MaxPool2d" ? new MaxPool2d(k, s, p) : new AvgPool2d(k, s, p);
        CheckLayer(f, pool);
    }

    /// <summary>Forward x → y, backward dy → dx (and parameter gradients where recorded).</summary>
    internal static void CheckLayer(Fixture f, Module m)
    {
        m.ZeroGrad();
        Close($"{f.Path} y", f.T("y"), m.Forward(f.T("x")));
        Close($"{f.Path} dx", f.T("dx"), m.Backward(f.T("dy")));
        foreach (var (name, p) in m.NamedParameters())
            Close($"{f.Path} d{name}", f.T("d" + name), p.Grad);
    }
}

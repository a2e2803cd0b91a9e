using NormLab.Cli;
using NormLab.Models;
using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>The same seed gives the same bits whatever the number of threads (reductions never follow the thread split).</summary>
[Collection(TeamSize.Collection)]
public class ThreadDeterminismTests
{
    // A few SGD steps of a network on random data; returns every parameter and buffer, bit for bit.
    private static Dictionary<string, float[]> Train(Func<Rng, Module> build, int threads, bool flat)
    {
        using var _ = new TeamSize(threads);
        var rng = new Rng(5);
        var model = build(rng);
        var optimizer = new Sgd(model.Parameters(), 0.05, momentum: 0.9);
        var loss = new SoftmaxCrossEntropy();
        var x = flat ? new Tensor(16, 784) : new Tensor(16, 1, 28, 28);
        var labels = new int[16];
        for (int step = 0; step < 3; step++)
        {
            foreach (ref float v in x.Span)
                v = (float)rng.NextGaussian();
            for (int i = 0; i < labels.Length; i++)
                labels[i] = rng.NextInt(10);
            optimizer.ZeroGrad();
            loss.Forward(model.Forward(x), labels);
            model.Backward(loss.Backward());
            optimizer.Step();
        }
        model.Eval();
        var result = model.NamedParameters().ToDictionary(p => p.Name, p => p.Parameter.Value.Span.ToArray());
        foreach (var (name, buffer) in model.NamedBuffers())
            result[name] = buffer.Span.ToArray();
        result["eval output"] = model.Forward(x).Span.ToArray();
        return result;
    }

    public static TheoryData<string> Models => ["cnn", "resnet", "ioffe-mlp", "cnn-group", "cnn-instance", "mlp-layer", "cnn-lp1", "cnn-lpinf"];

    [Theory]
    [MemberData(nameof(Models))]
    public void TrainingGivesTheSameBitsForOneTwoAndThreeThreads(string name)
    {
        Func<Rng, Module> build = name switch
        {
            "cnn" => rng => Zoo.Cnn(NormKind.Batch, rng: rng),
            "resnet" => rng => Zoo.ResNet(NormKind.Batch, blocksPerStage: 1, rng: rng),
            "cnn-group" => rng => Zoo.Cnn(NormKind.Group, rng: rng),
            "cnn-instance" => rng => Zoo.Cnn(NormKind.Instance, rng: rng),
            "cnn-lp1" => rng => Zoo.Cnn(NormKind.Lp1, rng: rng),
            "cnn-lpinf" => rng => Zoo.Cnn(NormKind.LpInf, rng: rng),
            "mlp-layer" => rng => Zoo.IoffeMlp(NormKind.Layer, rng: rng),
            _ => rng => Zoo.IoffeMlp(NormKind.Batch, rng: rng),
        };
        bool flat = name is "ioffe-mlp" or "mlp-layer";
        var one = Train(build, 1, flat);
        foreach (int threads in new[] { 2, 3 })
        {
            var other = Train(build, threads, flat);
            Assert.Equal(one.Keys.Order(), other.Keys.Order());
            foreach (var key in one.Keys)
                Assert.True(one[key].AsSpan().SequenceEqual(other[key]), $"{name}: {key} differs between 1 and {threads} threads");
        }
    }

    [Fact]
    public void CliMetricsAreTheSameForAnyThreadCount()
    {
        string data = Paths.Dataset("mnist-10k");
        var lines = new List<string[]>();
        foreach (var threads in new[] { "1", "2" })
        {
            string dir = TempDirs.Create("normlab-threads");
            var output = new StringWriter();
            var errors = new StringWriter();
            int code = Commands.Build(output, errors).Parse(["train", "--model", "cnn", "--norm", "batch", "--data", data, "--batch", "32",
                "--steps", "40", "--eval-every", "20", "--optimizer", "adam", "--lr", "0.002", "--threads", threads, "--out", dir]).Invoke();
            Assert.True(code == 0, errors.ToString());
            // Every column but the last (wall-clock seconds).
            lines.Add(File.ReadAllLines(Path.Combine(dir, "metrics.csv")).Select(l => l[..l.LastIndexOf(',')]).ToArray());
        }
        Assert.Equal(3, lines[0].Length);
        Assert.Equal(lines[0], lines[1]);
    }

    // One BN layer through a training step (forward, backward) and an eval step; every output, gradient and buffer, bit for bit.
    private static List<float[]> BatchNormStep(Func<BatchNorm> build, int[] shape, int threads)
    {
        using var _ = new TeamSize(threads);
        var bn = build();
        var x = TensorAssert.Randn(1, shape);
        foreach (ref float v in x.Span)
            v = v * 3 + 2;
        var dy = TensorAssert.Randn(2, shape);
        var results = new List<float[]>();
        for (int step = 0; step < 2; step++)
        {
            bn.Weight!.Grad.Zero();
            bn.Bias!.Grad.Zero();
            results.Add(bn.Forward(x).Span.ToArray());
            results.Add(bn.Backward(dy).Span.ToArray());
            results.Add(bn.Weight.Grad.Span.ToArray());
            results.Add(bn.Bias.Grad.Span.ToArray());
            results.Add(bn.RunningMean!.Span.ToArray());
            results.Add(bn.RunningVar!.Span.ToArray());
            bn.Weight.Value[0] += 0.5f;
            bn.Bias.Value[1] -= 0.25f;
        }
        bn.Eval();
        results.Add(bn.Forward(x).Span.ToArray());
        results.Add(bn.Backward(dy).Span.ToArray());
        return results;
    }

    public static TheoryData<string, int[]> BatchNormShapes => new()
    {
        { "1d", [300, 100] },       // [N, C]: six blocks of 16 channels and four single channels
        { "1d", [4096, 40] },       // tall [N, C]
        { "1d", [64, 37, 9] },      // [N, C, L] with planes shorter than a vector
        { "2d", [8, 13, 15, 15] },  // planes with a tail
        { "2d", [16, 64, 8, 8] },
        { "2d", [37, 6, 14, 14] },  // planes under a page: the in-order walk over 13 blocks of samples
        { "2d", [3, 5, 20, 20] },   // three blocks of one sample
        { "2d", [5, 3, 32, 32] },   // planes of a page: one channel at a time, two samples side by side and one left
        { "2d", [7, 40, 8, 8] },    // short planes: groups of channels, two samples side by side and one left
        { "1d", [2100, 260] },      // [N, C] of 2 MiB: blocks of rows
    };

    [Theory]
    [MemberData(nameof(BatchNormShapes))]
    public void BatchNormGivesTheSameBitsForOneTwoAndThreeThreads(string kind, int[] shape)
    {
        Func<BatchNorm> build = kind == "1d" ? () => new BatchNorm1d(shape[1]) : () => new BatchNorm2d(shape[1]);
        var one = BatchNormStep(build, shape, 1);
        foreach (int threads in new[] { 2, 3 })
        {
            var other = BatchNormStep(build, shape, threads);
            for (int i = 0; i < one.Count; i++)
                Assert.True(one[i].AsSpan().SequenceEqual(other[i]), $"BN{kind} {string.Join('x', shape)}: result {i} differs between 1 and {threads} threads");
        }
    }
}

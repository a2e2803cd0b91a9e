using NormLab.Kernels;
using NormLab.Models;

namespace NormLab.Benchmarks;

/// <summary>
/// One benchmark workload: a name shared with the PyTorch peer (bench/NormLab.Peer/BenchCommand.cs), the action to time,
/// and what one call moves or computes, for GB/s and GFLOP/s.
/// </summary>
public sealed record Workload(string Name, Func<Action> Make, double Bytes = 0, double Flops = 0)
{
    public string Group => Name[..Name.IndexOf('/')];

    public override string ToString() => Name;
}

/// <summary>The NormLab side of every workload of the comparison.</summary>
public static class Workloads
{
    public static readonly int[][] BatchNormShapes = [[256, 64, 32, 32], [128, 256, 14, 14], [64, 16, 28, 28], [32, 128, 8, 8], [60, 100], [256, 1024], [4096, 512]];

    public static readonly (string Form, int M, int K, int N)[] GemmShapes =
    [
        ("ABt", 60, 784, 100), ("AtB", 100, 60, 784), ("ABt", 60, 100, 100), ("AB", 60, 100, 100),
        ("AB", 32, 9, 784), ("AB", 64, 288, 196), ("AB", 64, 288, 3136), ("ABt", 64, 196, 288), ("AtB", 288, 64, 196),
        ("ABt", 128, 3136, 128), ("AtB", 128, 128, 3136), ("AB", 128, 128, 3136),
    ];

    public static IReadOnlyList<Workload> All { get; } = Build().ToList();

    public static IEnumerable<Workload> Group(string group) => All.Where(w => w.Group == group);

    private static IEnumerable<Workload> Build()
    {
        foreach (var w in Stream.Workloads())
            yield return w;
        foreach (var dims in BatchNormShapes)
        {
            string kind = dims.Length == 4 ? "bn2d" : "bn1d";
            string shape = string.Join("x", dims);
            double bytes = 4.0 * dims.Aggregate(1L, (a, b) => a * b);
            // The roofline counts what a fused kernel must move: read x and write y; backward also reads dy and writes dx.
            yield return new($"{kind}/train/{shape}", () => BatchNorm(dims, train: true, backward: false), 2 * bytes);
            yield return new($"{kind}/eval/{shape}", () => BatchNorm(dims, train: false, backward: false), 2 * bytes);
            yield return new($"{kind}/train+backward/{shape}", () => BatchNorm(dims, train: true, backward: true), 5 * bytes);
        }
        foreach (var (form, m, k, n) in GemmShapes)
            yield return new($"gemm/{form}/{m}x{k}x{n}", () => Gemm(form, m, k, n), Flops: 2.0 * m * k * n);
        yield return new("fold/cnn-eval", () => Inference(folded: false));
        yield return new("fold/cnn-eval-folded", () => Inference(folded: true));
        // Issue 6: every --norm on the same CNN step, against BatchNorm's (NormLab only; PyTorch lacks most of them).
        foreach (var kind in Enum.GetValues<NormKind>())
            yield return new($"family/cnn-{kind.ToString().ToLowerInvariant()}", () => Step(Zoo.Cnn(kind, rng: new Rng(1)), new Tensor(128, 1, 28, 28)));
        yield return new("step/mlp-bn", () => Step(Zoo.IoffeMlp(NormKind.Batch, rng: new Rng(1)), new Tensor(60, 784)));
        yield return new("step/mlp", () => Step(Zoo.IoffeMlp(NormKind.None, rng: new Rng(1)), new Tensor(60, 784)));
        yield return new("step/cnn-bn", () => Step(Zoo.Cnn(NormKind.Batch, rng: new Rng(1)), new Tensor(128, 1, 28, 28)));
        yield return new("step/cnn", () => Step(Zoo.Cnn(NormKind.None, rng: new Rng(1)), new Tensor(128, 1, 28, 28)));
    }

    private static Tensor Random(Rng rng, params int[] shape)
    {
        var t = new Tensor(shape);
        foreach (ref float v in t.Span)
            v = (float)rng.NextGaussian();
        return t;
    }

    private static Action BatchNorm(int[] dims, bool train, bool backward)
    {
        var rng = new Rng(2);
        BatchNorm bn = dims.Length == 4 ? new BatchNorm2d(dims[1]) : new BatchNorm1d(dims[1]);
        var x = Random(rng, dims);
        var dy = Random(rng, dims);
        if (train)
            bn.Train();
        else
            bn.Eval();
        if (backward)
            return () =>
            {
                bn.Forward(x);
                bn.Backward(dy);
            };
        return () => bn.Forward(x);
    }

    private static Action Gemm(string form, int m, int k, int n)
    {
        var rng = new Rng(3);
        var a = Random(rng, m * k);
        var b = Random(rng, k * n);
        var c = new Tensor(m * n);
        // NormLab's products accumulate (C += A·B); PyTorch's mm writes a new C. Accumulating costs one read of C more.
        return form switch
        {
            "AB" => () => Kernels.Gemm.AB<float>(c.Span, a.Span, b.Span, m, k, n),
            "ABt" => () => Kernels.Gemm.ABt<float>(c.Span, a.Span, b.Span, m, k, n),
            _ => () => Kernels.Gemm.AtB<float>(c.Span, a.Span, b.Span, m, k, n),
        };
    }

    // The CNN with BN in eval mode on a batch of 128, as trained, or with every BN folded into the convolution before it.
    private static Action Inference(bool folded)
    {
        var model = Zoo.Cnn(NormKind.Batch, rng: new Rng(1));
        var x = Random(new Rng(5), 128, 1, 28, 28);
        model.Forward(x); // running statistics off their initial values
        model.Eval();
        Module run = folded ? model.FoldBatchNorm() : model;
        return () => run.Forward(x);
    }

    private static Action Step(Module model, Tensor x)
    {
        var rng = new Rng(4);
        foreach (ref float v in x.Span)
            v = (float)rng.NextGaussian();
        var labels = Enumerable.Range(0, x.Dim(0)).Select(_ => rng.NextInt(10)).ToArray();
        var optimizer = new Sgd(model.Parameters(), 0.01);
        var loss = new SoftmaxCrossEntropy();
        model.Train();
        return () =>
        {
            optimizer.ZeroGrad();
            loss.Forward(model.Forward(x), labels);
            model.Backward(loss.Backward());
            optimizer.Step();
        };
    }
}

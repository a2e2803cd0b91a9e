using NormLab.Models;
using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>Folding BatchNorm into the layer before it, and PreciseBN's population statistics.</summary>
public class FoldingTests
{
    // Trains a few steps so that γ, β and the running statistics are far from their initial values.
    private static void Train(Module model, Func<int, Tensor> input)
    {
        var optimizer = new Sgd(model.Parameters(), 0.05, momentum: 0.9);
        var loss = new SoftmaxCrossEntropy();
        var labels = Enumerable.Range(0, 8).Select(i => i % 10).ToArray();
        for (int step = 0; step < 5; step++)
        {
            optimizer.ZeroGrad();
            loss.Forward(model.Forward(input(step)), labels);
            model.Backward(loss.Backward());
            optimizer.Step();
        }
    }

    public static TheoryData<string> Models => ["ioffe-mlp", "cnn", "resnet"];

    [Theory]
    [MemberData(nameof(Models))]
    public void FoldedModelGivesTheSameEvalOutputWithoutBatchNorm(string name)
    {
        bool flat = name == "ioffe-mlp";
        Sequential model = name switch
        {
            "cnn" => Zoo.Cnn(NormKind.Batch, rng: new Rng(1)),
            "resnet" => Zoo.ResNet(NormKind.Batch, blocksPerStage: 1, rng: new Rng(1)),
            _ => Zoo.IoffeMlp(NormKind.Batch, rng: new Rng(1)),
        };
        Tensor Input(int seed) => flat ? TensorAssert.Randn(seed, 8, 784) : TensorAssert.Randn(seed, 8, 1, 28, 28);
        Train(model, Input);
        model.Eval();
        var x = Input(99);
        var expected = model.Forward(x).Clone();
        var folded = model.FoldBatchNorm();
        Assert.Empty(folded.Modules().OfType<BatchNorm>());
        Assert.NotEmpty(model.Modules().OfType<BatchNorm>());   // the original keeps its layers
        TensorAssert.Close($"{name} folded", expected, folded.Forward(x), rtol: 1e-5, atol: 1e-5 * expected.ToArray().Max(v => Math.Abs(v)));
    }

    public static TheoryData<NormKind> AffineVariants => [NormKind.Frozen, NormKind.Ghost, NormKind.Renorm, NormKind.Noisy, NormKind.Lp1, NormKind.LpInf];

    // The variants that evaluate as γ·(x − μ)/σ + β with running statistics fold like BatchNorm (σ = running_std for
    // renorm, running_scale + eps for ℓp).
    [Theory]
    [MemberData(nameof(AffineVariants))]
    public void VariantsThatEvaluateAsAnAffineMapFoldToo(NormKind kind)
    {
        var model = Zoo.Cnn(kind, rng: new Rng(1));
        Train(model, seed => TensorAssert.Randn(seed, 8, 1, 28, 28));
        model.Eval();
        var x = TensorAssert.Randn(99, 8, 1, 28, 28);
        var expected = model.Forward(x).Clone();
        var folded = model.FoldBatchNorm();
        Assert.DoesNotContain(folded.Modules(), m => m is BatchNorm or GhostBatchNorm or BatchRenorm or NoisyBatchNorm or LpBatchNorm);
        Assert.Equal(3, model.Modules().Count(m => m is BatchNorm or GhostBatchNorm or BatchRenorm or NoisyBatchNorm or LpBatchNorm));
        TensorAssert.Close($"{kind} folded", expected, folded.Forward(x), rtol: 1e-5, atol: 1e-5 * expected.ToArray().Max(v => Math.Abs(v)));
    }

    [Fact]
    public void FoldingNeedsRunningStatistics()
    {
        var model = new Sequential(new Linear(4, 3), new BatchNorm1d(3, trackRunningStats: false));
        Assert.Contains("no running statistics", Assert.Throws<InvalidOperationException>(() => model.FoldBatchNorm()).Message);
    }

    [Fact]
    public void PreciseBnGivesTheExactPopulationStatistics()
    {
        var model = new Sequential(new Linear(5, 4, rng: new Rng(2)), new BatchNorm1d(4), new ReLU(), new Linear(4, 3, rng: new Rng(3)), new BatchNorm1d(3));
        var data = Enumerable.Range(0, 6).Select(i => TensorAssert.Randn(10 + i, 7, 5)).ToList();
        model.Eval();
        int used = PreciseBatchNorm.Update(model, data);
        Assert.Equal(6, used);
        Assert.All(model.Modules(), m => Assert.False(m.Training)); // modes restored
        Assert.Equal(0.1, ((BatchNorm)model[1]).Momentum);

        // The exact statistics of the first BN's input over all 42 samples, in double.
        var all = data.SelectMany(x => ((Linear)model[0]).Forward(x).ToArray()).Select(v => (double)v).ToArray();
        var bn = (BatchNorm)model[1];
        for (int c = 0; c < 4; c++)
        {
            var values = Enumerable.Range(0, all.Length / 4).Select(i => all[i * 4 + c]).ToArray();
            double mean = values.Average(), variance = values.Select(v => (v - mean) * (v - mean)).Average();
            Assert.Equal(mean, bn.RunningMean!.Span[c], 4);
            Assert.Equal(variance, bn.RunningVar!.Span[c], 4);
        }
        Assert.Equal(6, bn.NumBatchesTracked);
    }
}

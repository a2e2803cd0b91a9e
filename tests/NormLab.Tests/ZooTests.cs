using NormLab.Data;
using NormLab.Models;
using NormLab.Tests.Support;

namespace NormLab.Tests;

public class ZooTests
{
    private static void ForwardBackward(Module model, Tensor x, int classes)
    {
        var y = model.Forward(x);
        Assert.Equal([x.Dim(0), classes], y.Shape.ToArray());
        var dy = TensorAssert.Randn(1, y.Shape.ToArray());
        Assert.False(model.NeedsInputGradient); // the zoo's networks take data
        Assert.Equal(0, model.Backward(dy).Length);
        model.NeedsInputGradient = true;
        model.Forward(x);
        var dx = model.Backward(dy);
        Assert.Equal(x.Shape.ToArray(), dx.Shape.ToArray());
        model.NeedsInputGradient = false;
        Assert.All(model.Parameters(), p => Assert.All(p.Grad.ToArray(), g => Assert.True(float.IsFinite(g))));
    }

    [Theory]
    [InlineData(NormKind.Group)]
    [InlineData(NormKind.Layer)]
    [InlineData(NormKind.Instance)]
    [InlineData(NormKind.Noisy)]
    [InlineData(NormKind.Whiten)]
    [InlineData(NormKind.Renorm)]
    [InlineData(NormKind.Ghost)]
    [InlineData(NormKind.Frozen)]
    [InlineData(NormKind.Lp1)]
    [InlineData(NormKind.LpInf)]
    [InlineData(NormKind.Sync)]
    public void EveryNormalizationPlugsIntoEveryModel(NormKind kind)
    {
        int batch = kind == NormKind.Whiten ? 20 : 3; // whitening 16 features needs more than 16 samples
        var images = TensorAssert.Randn(7, batch, 1, 28, 28);
        ForwardBackward(Zoo.Cnn(kind, rng: new Rng(1)), images, 10);
        ForwardBackward(Zoo.ResNet(kind, blocksPerStage: 1, rng: new Rng(1)), images, 10);
        ForwardBackward(Zoo.IoffeMlp(kind, rng: new Rng(1)), TensorAssert.Randn(8, batch, 784), 10);
        var norms = Zoo.Cnn(kind, rng: new Rng(1)).Layers.Where(m => m is RowNorm or NoisyBatchNorm or DecorrelatedBatchNorm or LpBatchNorm or BatchRenorm or GhostBatchNorm or BatchNorm)
            .Select(m => m.GetType().Name).ToArray();
        Assert.Equal(kind switch
        {
            NormKind.Group => ["GroupNorm", "GroupNorm", "GroupNorm"],
            NormKind.Layer => ["GroupNorm", "GroupNorm", "LayerNorm"],
            NormKind.Instance => ["InstanceNorm2d", "InstanceNorm2d", "LayerNorm"],
            NormKind.Noisy => ["NoisyBatchNorm", "NoisyBatchNorm", "NoisyBatchNorm"],
            NormKind.Whiten => ["DecorrelatedBatchNorm", "DecorrelatedBatchNorm", "DecorrelatedBatchNorm"],
            NormKind.Renorm => ["BatchRenorm", "BatchRenorm", "BatchRenorm"],
            NormKind.Ghost => ["GhostBatchNorm", "GhostBatchNorm", "GhostBatchNorm"],
            NormKind.Frozen => ["BatchNorm2d", "BatchNorm2d", "BatchNorm1d"],
            NormKind.Sync => ["SyncBatchNorm", "SyncBatchNorm", "SyncBatchNorm"],
            _ => ["LpBatchNorm", "LpBatchNorm", "LpBatchNorm"],
        }, norms);
        Assert.Equal(32, ((GroupNorm)Zoo.Norm(NormKind.Group, 64, spatial: true)).NumGroups);
        Assert.Equal(25, ((GroupNorm)Zoo.Norm(NormKind.Group, 100, spatial: false)).NumGroups);
    }

    [Fact]
    public void SkippingTheInputGradientLeavesParameterGradientsUnchanged()
    {
        float[][] Grads(bool input)
        {
            var model = Zoo.Cnn(NormKind.Batch, rng: new Rng(4));
            model.NeedsInputGradient = input;
            var y = model.Forward(TensorAssert.Randn(2, 3, 1, 28, 28));
            var dx = model.Backward(TensorAssert.Randn(3, y.Shape.ToArray()));
            Assert.Equal(input ? 3 * 28 * 28 : 0, dx.Length);
            return model.Parameters().Select(p => p.Grad.ToArray()).ToArray();
        }
        var with = Grads(true);
        var without = Grads(false);
        for (int i = 0; i < with.Length; i++)
            Assert.Equal(with[i], without[i]);
    }

    [Fact]
    public void IoffeMlpFollowsThePaper()
    {
        var bn = Zoo.IoffeMlp(NormKind.Batch, rng: new Rng(1));
        Assert.Equal(["Linear", "BatchNorm1d", "Sigmoid"], bn.Layers.Take(3).Select(l => l.GetType().Name));
        Assert.All(bn.Layers.OfType<Linear>().Take(3), l => Assert.Null(l.Bias));   // no hidden bias before BN
        var w = bn.Layers.OfType<Linear>().First().Weight.Value.ToArray();
        double std = Math.Sqrt(w.Select(v => (double)v * v).Average());
        Assert.InRange(std, 0.098, 0.102);
        var plain = Zoo.IoffeMlp(NormKind.None, rng: new Rng(1));
        Assert.Equal(7, plain.Layers.Count);
        Assert.All(plain.Layers.OfType<Linear>(), l => Assert.NotNull(l.Bias));
        var after = Zoo.IoffeMlp(NormKind.Batch, NormPosition.After, rng: new Rng(1));
        Assert.Equal(["Linear", "Sigmoid", "BatchNorm1d"], after.Layers.Take(3).Select(l => l.GetType().Name));
        ForwardBackward(bn, TensorAssert.Randn(2, 5, 784), 10);
    }

    [Fact]
    public void CnnAndResNetRunForwardAndBackward()
    {
        var x = TensorAssert.Randn(3, 2, 1, 28, 28);
        ForwardBackward(Zoo.Cnn(NormKind.Batch, rng: new Rng(1)), x, 10);
        ForwardBackward(Zoo.Cnn(NormKind.None, rng: new Rng(1)), x, 10);
        var resnet = Zoo.ResNet(NormKind.Batch, blocksPerStage: 1, rng: new Rng(1));
        Assert.Equal(1 + 3 * 2 + 2, resnet.Modules().OfType<BatchNorm2d>().Count());   // stem, two per block, two projection shortcuts
        ForwardBackward(resnet, x, 10);
        ForwardBackward(Zoo.ResNet(NormKind.None, rng: new Rng(1)), x, 10);
        ForwardBackward(Zoo.Mlp(784, [32, 16], 10, ActivationKind.ReLU, NormKind.Batch, rng: new Rng(1)), TensorAssert.Randn(4, 3, 784), 10);
    }

    [Fact]
    public void CnnWithBatchNormLearnsOnMnist()
    {
        var train = ImageDataset.LoadIdx(Paths.Dataset("mnist-10k"), "train");
        var model = Zoo.Cnn(NormKind.Batch, rng: new Rng(4));
        var optimizer = new Sgd(model.Parameters(), lr: 0.05, momentum: 0.9);
        var loss = new SoftmaxCrossEntropy();
        var loader = new DataLoader(train, 32, rng: new Rng(4));
        var losses = new List<float>();
        while (losses.Count < 40 && loader.TryNext(out var images, out _, out var labels))
        {
            optimizer.ZeroGrad();
            losses.Add(loss.Forward(model.Forward(images), labels));
            model.Backward(loss.Backward());
            optimizer.Step();
        }
        double early = losses.Take(5).Average(), late = losses.TakeLast(5).Average();
        Assert.True(late < 0.5 * early, $"loss went from {early:F3} to {late:F3}");
    }
}

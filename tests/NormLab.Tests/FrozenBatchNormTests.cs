using NormLab.Models;
using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>Frozen statistics: eval-mode normalization and backward in training, no updates, and Train() does not unfreeze.</summary>
public class FrozenBatchNormTests
{
    [Fact]
    public void AFrozenLayerTrainsLikeTheEvalModeAffineMap()
    {
        var bn = new BatchNorm2d(3);
        bn.Forward(TensorAssert.Randn(1, 6, 3, 4, 4));              // move the running statistics off (0, 1)
        var mean = bn.RunningMean!.ToArray();
        var variance = bn.RunningVar!.ToArray();
        bn.Freeze();
        var x = TensorAssert.Randn(2, 5, 3, 4, 4);
        var dy = TensorAssert.Randn(3, 5, 3, 4, 4);
        var y = bn.Forward(x).Clone();
        var dx = bn.Backward(dy).Clone();
        Assert.Equal(mean, bn.RunningMean.ToArray());                // no update
        Assert.Equal(variance, bn.RunningVar.ToArray());
        Assert.Equal(1, bn.NumBatchesTracked);

        var eval = new BatchNorm2d(3);
        eval.RunningMean!.CopyFrom(bn.RunningMean);
        eval.RunningVar!.CopyFrom(bn.RunningVar);
        eval.Eval();
        Assert.Equal(eval.Forward(x).ToArray(), y.ToArray());
        Assert.Equal(eval.Backward(dy).ToArray(), dx.ToArray());
        Assert.Equal(eval.Weight!.Grad.ToArray(), bn.Weight!.Grad.ToArray()); // γ, β still learn
        GradCheck.Module(bn, TensorAssert.Randn(4, 4, 3, 2, 2));
    }

    [Fact]
    public void TrainDoesNotUnfreezeButUnfreezeDoes()
    {
        var model = Zoo.Cnn(NormKind.Batch, rng: new Rng(1));
        Assert.Equal(3, model.FreezeBatchNorm());
        model.Eval();
        model.Train();
        Assert.All(model.Modules().OfType<BatchNorm>(), b => Assert.True(b.Frozen && b.Training));
        var before = model.Modules().OfType<BatchNorm>().First().RunningMean!.ToArray();
        model.Forward(TensorAssert.Randn(5, 4, 1, 28, 28));
        Assert.Equal(before, model.Modules().OfType<BatchNorm>().First().RunningMean!.ToArray());
        model.UnfreezeBatchNorm();
        model.Forward(TensorAssert.Randn(5, 4, 1, 28, 28));
        Assert.NotEqual(before, model.Modules().OfType<BatchNorm>().First().RunningMean!.ToArray());
        Assert.Throws<InvalidOperationException>(() => new BatchNorm1d(3, trackRunningStats: false).Freeze());
    }
}

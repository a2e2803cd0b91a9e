using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>Ghost BatchNorm: one virtual batch is BatchNorm; several are normalized and tracked one after another.</summary>
public class GhostBatchNormTests
{
    [Fact]
    public void OneVirtualBatchIsBatchNorm()
    {
        var ghost = new GhostBatchNorm(3, virtualBatchSize: 8);
        var bn = new BatchNorm2d(3);
        for (int step = 0; step < 2; step++)
        {
            var x = TensorAssert.Randn(step, 8, 3, 2, 2);
            var dy = TensorAssert.Randn(step + 10, 8, 3, 2, 2);
            TensorAssert.Close("y", bn.Forward(x), ghost.Forward(x), 0, 0);
            TensorAssert.Close("dx", bn.Backward(dy), ghost.Backward(dy), 0, 0);
        }
        TensorAssert.Close("running mean", bn.RunningMean!, ghost.RunningMean, 0, 0);
        TensorAssert.Close("running var", bn.RunningVar!, ghost.RunningVar, 0, 0);
        TensorAssert.Close("dγ", bn.Weight!.Grad, ghost.Weight.Grad, 0, 0);
    }

    [Fact]
    public void EachVirtualBatchIsNormalizedByItselfAndTrackedInOrder()
    {
        var ghost = new GhostBatchNorm(2, virtualBatchSize: 4, momentum: 0.5);
        var x = TensorAssert.Randn(3, 10, 2);   // virtual batches of 4, 4 and 2 samples
        var y = ghost.Forward(x).ToArray();
        var reference = new BatchNorm1d(2, momentum: 0.5);
        foreach (var (first, rows) in new[] { (0, 4), (4, 4), (8, 2) })
        {
            var part = x.Slice(first, rows);
            var expected = reference.Forward(part).ToArray();
            Assert.Equal(expected, y.Skip(first * 2).Take(rows * 2).ToArray());
        }
        TensorAssert.Close("running mean", reference.RunningMean!, ghost.RunningMean, 0, 0);
        TensorAssert.Close("running var", reference.RunningVar!, ghost.RunningVar, 0, 0);
        Assert.Equal(3, ghost.NumBatchesTracked);
        GradCheck.Module(new GhostBatchNorm(2, virtualBatchSize: 4), TensorAssert.Randn(4, 11, 2)); // 4 + 4 + 3
        Assert.Contains("one value per channel", Assert.Throws<ArgumentException>(() => new GhostBatchNorm(2, 4).Forward(new Tensor(5, 2))).Message);
    }
}

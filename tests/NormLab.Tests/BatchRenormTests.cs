using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>Batch renormalization: reduces to BatchNorm without clipping room, gradients with r and d held, the schedule, eval.</summary>
public class BatchRenormTests
{
    [Fact]
    public void WithRMaxOneAndDMaxZeroItIsBatchNorm()
    {
        var x = TensorAssert.Randn(1, 8, 3, 4, 4);
        var dy = TensorAssert.Randn(2, 8, 3, 4, 4);
        var renorm = new BatchRenorm(3) { Clipping = (1, 0) };
        var bn = new BatchNorm2d(3);
        var gamma = TensorAssert.Randn(3, 3);
        renorm.Weight.Value.CopyFrom(gamma);
        bn.Weight!.Value.CopyFrom(gamma);
        TensorAssert.Close("y", bn.Forward(x), renorm.Forward(x), 1e-6, 1e-6);
        TensorAssert.Close("dx", bn.Backward(dy), renorm.Backward(dy), 1e-5, 1e-6);
        TensorAssert.Close("dγ", bn.Weight.Grad, renorm.Weight.Grad, 1e-5, 1e-6);
        TensorAssert.Close("dβ", bn.Bias!.Grad, renorm.Bias.Grad, 1e-5, 1e-6);
    }

    [Fact]
    public void GradientsWithRAndDHeldMatchFiniteDifferences()
    {
        // Moving statistics far from the batch's put r and d on their clipping bounds, where they are truly constant, and
        // momentum 0 keeps them there across the finite-difference evaluations.
        var layer = new BatchRenorm(3, momentum: 0) { Clipping = (2, 0.5) };
        layer.RunningMean.Fill(100);
        layer.RunningStd.Fill(100);
        GradCheck.Module(layer, TensorAssert.Randn(4, 6, 3));
        Assert.All(layer.LastCorrection.R, r => Assert.Equal(0.5, r, 12));
        Assert.All(layer.LastCorrection.D, d => Assert.Equal(-0.5, d, 12));
    }

    [Fact]
    public void TheScheduleRelaxesAfterTheWarmup()
    {
        var s = new RenormSchedule();
        Assert.Equal((1.0, 0.0), s.At(0));
        Assert.Equal((1.0, 0.0), s.At(5000));
        var (r, d) = s.At(22500);
        Assert.Equal(2.0, r, 12);
        Assert.Equal(4.375, d, 12);
        Assert.Equal((3.0, 5.0), s.At(100_000));
        Assert.Equal(new RenormSchedule(500, 3, 4000, 5, 2500), RenormSchedule.Scaled(0.1));
    }

    [Fact]
    public void MovingStatisticsTrackTheBatchAndDriveEval()
    {
        var layer = new BatchRenorm(2, momentum: 0.5);
        var x = TensorAssert.Randn(5, 64, 2);
        layer.Forward(x);
        var v = x.ToArray();
        for (int c = 0; c < 2; c++)
        {
            var col = Enumerable.Range(0, 64).Select(i => (double)v[i * 2 + c]).ToArray();
            double mean = col.Average(), std = Math.Sqrt(col.Select(t => (t - mean) * (t - mean)).Average() + 1e-5);
            Assert.Equal(0.5 * mean, layer.RunningMean.Span[c], 5);
            Assert.Equal(0.5 + 0.5 * std, layer.RunningStd.Span[c], 5);
        }
        layer.Eval();
        var y = layer.Forward(x).ToArray();
        Assert.Equal((v[0] - layer.RunningMean.Span[0]) / layer.RunningStd.Span[0], y[0], 4);
        GradCheck.Module(layer, TensorAssert.Randn(6, 4, 2));
    }
}

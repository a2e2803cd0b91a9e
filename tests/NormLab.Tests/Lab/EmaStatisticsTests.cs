using NormLab.Lab.Measures;

namespace NormLab.Tests.Lab;

/// <summary>EmaStatistics: closed forms for momentum 1 and the cumulative average, and agreement with BatchNorm's own running statistics.</summary>
public sealed class EmaStatisticsTests
{
    [Fact]
    public void MomentumOneKeepsTheLastBatchMeanAndUnbiasedVariance()
    {
        // One channel, [N = 2, C = 1, 1, 2]: values 1, 2, 3, 5 → mean 2.75, unbiased variance 8.75/3.
        var bn = new BatchNorm2d(1);
        var model = new Sequential(bn);
        var ema = new EmaStatistics(model, 1.0);
        model.Forward(Tensor.FromArray([10, 20, 30, 40], 2, 1, 1, 2));
        model.Forward(Tensor.FromArray([1, 2, 3, 5], 2, 1, 1, 2));
        ema.Apply();
        Assert.Equal(2.75, bn.RunningMean![0], 6);
        Assert.Equal(8.75 / 3, bn.RunningVar![0], 5);
    }

    [Fact]
    public void NullMomentumIsTheCumulativeAverageOfBatchStatistics()
    {
        // Batch means 1.5 and 3.5, unbiased variances 0.5 and 0.5 (channel 0); 10.5, 12.5 and 0.5 (channel 1).
        var bn = new BatchNorm1d(2);
        var model = new Sequential(bn);
        var ema = new EmaStatistics(model, null);
        model.Forward(Tensor.FromArray([1, 10, 2, 11], 2, 2));
        model.Forward(Tensor.FromArray([3, 12, 4, 13], 2, 2));
        ema.Apply();
        Assert.Equal(2.5, bn.RunningMean![0], 6);
        Assert.Equal(11.5, bn.RunningMean![1], 6);
        Assert.Equal(0.5, bn.RunningVar![0], 6);
        Assert.Equal(0.5, bn.RunningVar![1], 6);
    }

    [Theory]
    [InlineData(0.1)]
    [InlineData(0.01)]
    [InlineData(null)]
    public void MatchesABatchNormWithThatMomentum(double? momentum)
    {
        // Two identical 2-layer nets: one BN with the default momentum tracked at `momentum`, one BN set to `momentum`.
        Sequential Net(double? m) => new(new BatchNorm2d(3, momentum: m), new ReLU(), new BatchNorm2d(3, momentum: m));
        var tracked = Net(0.1);
        var reference = Net(momentum);
        var ema = new EmaStatistics(tracked, momentum);
        var rng = new Rng(7);
        for (int step = 0; step < 20; step++)
        {
            var x = new Tensor(4, 3, 2, 2);
            for (int i = 0; i < x.Length; i++)
                x.Span[i] = (float)(rng.NextGaussian() * (1 + step % 3) + step * 0.1);
            tracked.Forward(x);
            reference.Forward(x);
        }
        ema.Apply();
        var expected = reference.Modules().OfType<BatchNorm>().ToArray();
        var actual = tracked.Modules().OfType<BatchNorm>().ToArray();
        for (int l = 0; l < 2; l++)
            for (int c = 0; c < 3; c++)
            {
                Assert.Equal(expected[l].RunningMean![c], actual[l].RunningMean![c], 5);
                Assert.Equal(expected[l].RunningVar![c], actual[l].RunningVar![c], 5);
            }
    }

    [Fact]
    public void IgnoresEvalForwardsAndInactivePeriods()
    {
        var bn = new BatchNorm1d(1);
        var model = new Sequential(bn);
        var ema = new EmaStatistics(model, 1.0);
        model.Forward(Tensor.FromArray([1, 3], 2, 1));
        ema.Active = false;
        model.Forward(Tensor.FromArray([100, 300], 2, 1));
        ema.Active = true;
        model.Eval();
        model.Forward(Tensor.FromArray([-50, 50], 2, 1));
        ema.Apply();
        Assert.Equal(2, bn.RunningMean![0], 6);
        Assert.Equal(2, bn.RunningVar![0], 6);
    }
}

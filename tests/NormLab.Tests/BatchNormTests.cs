using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>BatchNorm1d/2d: semantics, closed forms, errors, and the float module against finite differences.</summary>
public class BatchNormTests
{
    [Fact]
    public void DefaultsFollowPyTorch()
    {
        var bn = new BatchNorm2d(3);
        Assert.Equal(1e-5, bn.Eps);
        Assert.Equal(0.1, bn.Momentum);
        Assert.True(bn.Affine && bn.TrackRunningStats && bn.Training);
        Assert.Equal([1f, 1f, 1f], bn.Weight!.Value.ToArray());
        Assert.Equal([0f, 0f, 0f], bn.Bias!.Value.ToArray());
        Assert.Equal([0f, 0f, 0f], bn.RunningMean!.ToArray());
        Assert.Equal([1f, 1f, 1f], bn.RunningVar!.ToArray());
        Assert.Equal(0, bn.NumBatchesTracked);
        Assert.Equal(["weight", "bias"], bn.NamedParameters().Select(p => p.Name));
        Assert.Equal(["running_mean", "running_var"], bn.NamedBuffers().Select(p => p.Name));
        var plain = new BatchNorm1d(4, affine: false, trackRunningStats: false);
        Assert.Null(plain.Weight);
        Assert.Null(plain.RunningMean);
        Assert.Empty(plain.Parameters());
    }

    [Fact]
    public void WorkedExampleFromTheReference()
    {
        // One channel, x = [1, 2, 3, 4]: mean 2.5, biased var 1.25, unbiased 5/3.
        var bn = new BatchNorm1d(1);
        var x = Tensor.FromArray([1, 2, 3, 4], 4, 1);
        var y = bn.Forward(x);
        double sd = Math.Sqrt(1.25 + 1e-5);
        for (int i = 0; i < 4; i++)
            Assert.Equal((i + 1 - 2.5) / sd, y[i], 6);
        Assert.Equal(0.25f, bn.RunningMean![0], 6);
        Assert.Equal(0.9 + 0.1 * 5.0 / 3.0, bn.RunningVar![0], 6);
        Assert.Equal(1, bn.NumBatchesTracked);

        var cma = new BatchNorm1d(1, momentum: null);
        cma.Forward(x);
        Assert.Equal(2.5f, cma.RunningMean![0], 6);
        Assert.Equal(5.0 / 3.0, cma.RunningVar![0], 6);
        cma.Forward(Tensor.FromArray([5, 7, 9, 11], 4, 1));   // mean 8, unbiased var 20/3; CMA halves
        Assert.Equal((2.5 + 8) / 2, cma.RunningMean[0], 5);
        Assert.Equal((5.0 / 3 + 20.0 / 3) / 2, cma.RunningVar[0], 5);
    }

    [Theory]
    [InlineData(2, 3, 1, 1)]
    [InlineData(4, 2, 3, 5)]
    [InlineData(8, 1, 2, 2)]
    public void TrainingOutputHasZeroMeanAndUnitVariancePerChannel(int n, int c, int h, int w)
    {
        var bn = new BatchNorm2d(c);
        var x = TensorAssert.Randn(5, n, c, h, w);
        foreach (ref float v in x.Span) v = 3 + 4 * v;
        var y = bn.Forward(x);
        var (mean, variance) = ChannelMoments(y, n, c, h * w);
        double m = n * h * w;
        for (int ch = 0; ch < c; ch++)
        {
            var (xm, xv) = ChannelMoments(x, n, c, h * w);
            Assert.True(Math.Abs(mean[ch]) < 1e-5, $"mean {mean[ch]}");
            // var(y) = var(x)/(var(x) + eps) exactly; within 1e-5 of that.
            Assert.True(Math.Abs(variance[ch] - xv[ch] / (xv[ch] + 1e-5)) < 1e-5, $"variance {variance[ch]}");
        }
    }

    [Fact]
    public void IdentityWhenGammaAndBetaUndoTheNormalization()
    {
        int n = 6, c = 3, s = 4;
        var x = TensorAssert.Randn(11, n, c, s);
        foreach (ref float v in x.Span) v = 2 + 5 * v;
        var (mean, variance) = ChannelMoments(x, n, c, s);
        var bn = new BatchNorm1d(c);
        for (int ch = 0; ch < c; ch++)
        {
            bn.Weight!.Value[ch] = (float)Math.Sqrt(variance[ch] + bn.Eps);
            bn.Bias!.Value[ch] = (float)mean[ch];
        }
        TensorAssert.Close("identity", x, bn.Forward(x), rtol: 1e-5, atol: 2e-5);
    }

    [Theory]
    [InlineData(64, 2, 16)]  // planes
    [InlineData(512, 40, 1)] // [N, C]: blocks of channels and single channels
    [InlineData(50, 3, 7)]   // planes shorter than a vector
    public void DataFarFromZeroKeepsUnitVariance(int n, int c, int s)
    {
        // Values near 1e4 with spread 1e-2: E[x²] − E[x]² in float would cancel completely, and so would folding the mean
        // into a float shift. The output must still have unit variance to 1e-3, checked against double statistics of the input.
        var rng = new Rng(42);
        var x = s == 1 ? new Tensor(n, c) : new Tensor(n, c, s);
        foreach (ref float v in x.Span) v = (float)(1e4 + 1e-2 * rng.NextGaussian());
        var bn = new BatchNorm1d(c, eps: 0);
        var y = bn.Forward(x);
        var (xm, xv) = ChannelMoments(x, n, c, s);
        var (ym, yv) = ChannelMoments(y, n, c, s);
        for (int ch = 0; ch < c; ch++)
        {
            Assert.True(Math.Abs(yv[ch] - 1) < 1e-3, $"channel {ch}: output variance {yv[ch]}");
            Assert.True(Math.Abs(ym[ch]) < 1e-3, $"channel {ch}: output mean {ym[ch]}");
        }
        // Element-wise against a double-precision reference.
        var ys = y.Span;
        var xs = x.Span;
        double worst = 0;
        for (int i = 0; i < n; i++)
            for (int ch = 0; ch < c; ch++)
                for (int j = 0; j < s; j++)
                {
                    int at = (i * c + ch) * s + j;
                    double expected = (xs[at] - xm[ch]) / Math.Sqrt(xv[ch]);
                    worst = Math.Max(worst, Math.Abs(expected - ys[at]));
                }
        Assert.True(worst < 1e-4, $"largest error {worst} of a unit-scale output");
        // The running variance must be finite and positive, near the unbiased 1e-4.
        Assert.InRange(bn.RunningVar![0], 0.9f, 1.0f);
    }

    [Fact]
    public void EvalUsesRunningStatisticsAndIsAnAffineMap()
    {
        var bn = new BatchNorm2d(2);
        bn.RunningMean!.Span[0] = 1; bn.RunningMean.Span[1] = -2;
        bn.RunningVar!.Span[0] = 4; bn.RunningVar.Span[1] = 0.25f;
        bn.Weight!.Value[0] = 2; bn.Bias!.Value[1] = 3;
        bn.Eval();
        var x = TensorAssert.Randn(2, 1, 2, 2, 3);   // N = 1 is fine in eval
        var y = bn.Forward(x);
        for (int ch = 0; ch < 2; ch++)
            for (int j = 0; j < 6; j++)
            {
                int at = ch * 6 + j;
                double expected = (x[at] - bn.RunningMean[ch]) / Math.Sqrt(bn.RunningVar[ch] + 1e-5) * bn.Weight.Value[ch] + bn.Bias.Value[ch];
                Assert.Equal(expected, y[at], 5);
            }
        Assert.Equal(0, bn.NumBatchesTracked);
        Assert.Equal(1f, bn.RunningMean[0]);
    }

    [Fact]
    public void WithoutRunningStatisticsEvalUsesTheBatch()
    {
        var bn = new BatchNorm1d(3, trackRunningStats: false);
        var x = TensorAssert.Randn(9, 5, 3);
        var train = bn.Forward(x).Clone();
        bn.Eval();
        TensorAssert.Close("eval = train", train, bn.Forward(x), 0, 0);
    }

    [Fact]
    public void OneValuePerChannelInTrainingIsAnError()
    {
        var bn = new BatchNorm1d(4);
        var e = Assert.Throws<ArgumentException>(() => bn.Forward(new Tensor(1, 4)));
        Assert.Contains("expected more than 1 value per channel when training", e.Message);
        Assert.Contains("[1, 4]", e.Message);
        Assert.Equal(0, bn.NumBatchesTracked);
        Assert.Throws<ArgumentException>(() => new BatchNorm2d(2).Forward(new Tensor(1, 2, 1, 1)));
        new BatchNorm2d(2).Forward(new Tensor(1, 2, 2, 1));   // m = 2 is legal
        bn.Eval();
        bn.Forward(new Tensor(1, 4));                         // eval with running statistics: fine
        var noStats = new BatchNorm1d(4, trackRunningStats: false);
        noStats.Eval();
        Assert.Throws<ArgumentException>(() => noStats.Forward(new Tensor(1, 4)));   // batch statistics in eval: still m = 1
    }

    [Fact]
    public void ShapeErrorsNameTheShape()
    {
        var e = Assert.Throws<ArgumentException>(() => new BatchNorm2d(3).Forward(new Tensor(2, 3, 4)));
        Assert.Contains("[2, 3, 4]", e.Message);
        Assert.Contains("4D", e.Message);
        e = Assert.Throws<ArgumentException>(() => new BatchNorm1d(3).Forward(new Tensor(2, 5)));
        Assert.Contains("[2, 5]", e.Message);
        Assert.Contains("3 channels", e.Message);
        e = Assert.Throws<ArgumentException>(() => new BatchNorm1d(3).Forward(new Tensor(2, 3, 1, 1)));
        Assert.Contains("2D or 3D", e.Message);
        var bn = new BatchNorm1d(3);
        Assert.Throws<InvalidOperationException>(() => bn.Backward(new Tensor(2, 3)));
        bn.Forward(TensorAssert.Randn(1, 2, 3));
        e = Assert.Throws<ArgumentException>(() => bn.Backward(new Tensor(3, 3)));
        Assert.Contains("[3, 3]", e.Message);
        Assert.Contains("[2, 3]", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new BatchNorm1d(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BatchNorm1d(3, eps: -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BatchNorm1d(3, momentum: 1.5));
    }

    public static TheoryData<int[], bool> ModuleCases => new()
    {
        { new[] { 2, 1 }, true },
        { new[] { 5, 3 }, true },
        { new[] { 3, 2, 5 }, false },
        { new[] { 2, 1, 1, 1 }, true },
        { new[] { 2, 3, 3, 1 }, false },
        { new[] { 3, 2, 3, 5 }, true },
    };

    [Theory]
    [MemberData(nameof(ModuleCases))]
    public void FloatModuleGradientsInTrainingAndEvalMode(int[] shape, bool affine)
    {
        BatchNorm Make() => shape.Length == 4 ? new BatchNorm2d(shape[1], affine: affine) : new BatchNorm1d(shape[1], affine: affine);
        var x = TensorAssert.Randn(shape.Sum(), shape);
        var bn = Make();
        if (affine)
        {
            Init.Uniform(bn.Weight!.Value, new Rng(1), 0.5, 1.5);
            Init.Normal(bn.Bias!.Value, new Rng(2), 0.5);
        }
        GradCheck.Module(bn, x);

        bn.RunningMean!.Fill(0.3f);
        bn.RunningVar!.Fill(0.7f);
        bn.Eval();
        GradCheck.Module(bn, x);
    }

    internal static (double[] Mean, double[] Var) ChannelMoments(Tensor t, int n, int c, int s)
    {
        var mean = new double[c];
        var variance = new double[c];
        var span = t.Span;
        for (int ch = 0; ch < c; ch++)
        {
            double sum = 0;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < s; j++)
                    sum += span[(i * c + ch) * s + j];
            mean[ch] = sum / (n * s);
            double sq = 0;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < s; j++)
                {
                    double d = span[(i * c + ch) * s + j] - mean[ch];
                    sq += d * d;
                }
            variance[ch] = sq / (n * s);
        }
        return (mean, variance);
    }
}

using NormLab.Kernels;
using NormLab.Models;
using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>ZCA whitening (decorrelated BatchNorm): identity covariance, the backward through the eigendecomposition in double, errors.</summary>
public class WhiteningTests
{
    // Correlated features: x = z·M plus offsets, with the mixing matrix M fixed by d (the same distribution every call).
    private static double[] Correlated(Rng rng, int m, int d)
    {
        var mix = Doubles.Gaussian(new Rng((ulong)(100 + d)), d * d);
        var z = Doubles.Gaussian(rng, m * d);
        var x = new double[m * d];
        for (int i = 0; i < m; i++)
            for (int k = 0; k < d; k++)
            {
                double v = 3 + k;
                for (int a = 0; a < d; a++)
                    v += z[i * d + a] * mix[a * d + k];
                x[i * d + k] = v;
            }
        return x;
    }

    [Fact]
    public void WhitenedOutputHasIdentityCovariance()
    {
        int m = 200, d = 6;
        var x = Correlated(new Rng(1), m, d);
        var y = new double[m * d];
        Whitening.Forward(y, x, m, d, 0, new Whitening.State(d));
        for (int a = 0; a < d; a++)
            for (int b = 0; b < d; b++)
            {
                double cov = Enumerable.Range(0, m).Sum(i => y[i * d + a] * y[i * d + b]) / m;
                Assert.True(Math.Abs(cov - (a == b ? 1 : 0)) < 1e-9, $"cov[{a},{b}] = {cov}");
            }
    }

    [Theory]
    [InlineData(7, 3)]
    [InlineData(12, 4)]
    [InlineData(5, 1)]
    public void BackwardMatchesFiniteDifferences(int m, int d)
    {
        var rng = new Rng((ulong)(m * 10 + d));
        var x = Correlated(rng, m, d);
        var r = Doubles.Gaussian(rng, m * d);
        const double eps = 1e-3;
        double Loss()
        {
            var y = new double[m * d];
            Whitening.Forward(y, x, m, d, eps, new Whitening.State(d));
            return Doubles.Dot(y, r);
        }
        var state = new Whitening.State(d);
        Whitening.Forward(new double[m * d], x, m, d, eps, state);
        var dx = new double[m * d];
        Whitening.Backward(dx, r, m, d, eps, state);
        GradCheck.Double("whitening dx", x, dx, Loss, rtol: 1e-5, atol: 1e-7);
    }

    [Fact]
    public void ModuleWhitensEachGroupAndWiresItsGradients()
    {
        var layer = new DecorrelatedBatchNorm(4, groupSize: 2, eps: 1e-5);
        var input = TensorAssert.Randn(3, 40, 4);
        var y = layer.Forward(input).ToArray();
        // Each group of two channels: unit variances and no correlation (γ = 1, β = 0).
        for (int g = 0; g < 2; g++)
        {
            double c01 = Enumerable.Range(0, 40).Average(i => (double)y[i * 4 + 2 * g] * y[i * 4 + 2 * g + 1]);
            double v0 = Enumerable.Range(0, 40).Average(i => (double)y[i * 4 + 2 * g] * y[i * 4 + 2 * g]);
            Assert.True(Math.Abs(c01) < 1e-4 && Math.Abs(v0 - 1) < 1e-4, $"group {g}: cov {c01}, var {v0}");
        }
        GradCheck.Module(new DecorrelatedBatchNorm(4, groupSize: 2, eps: 1e-2), TensorAssert.Randn(4, 12, 4));
        GradCheck.Module(new DecorrelatedBatchNorm(2, groupSize: 2, eps: 1e-2), TensorAssert.Randn(5, 3, 2, 2, 2));
        layer.Eval();
        GradCheck.Module(layer, TensorAssert.Randn(6, 5, 4));
    }

    [Fact]
    public void RunningStatisticsWhitenInEvalModeOnceTheyHaveConverged()
    {
        // Batches from one fixed correlated distribution: the running mean and whitening matrix converge to the
        // population's, so eval mode whitens a fresh batch too.
        var layer = new DecorrelatedBatchNorm(3, groupSize: 3, momentum: 0.1);
        var rng = new Rng(8);
        Tensor Batch()
        {
            var x = Correlated(rng, 400, 3);
            return Tensor.FromArray(x.Select(v => (float)v).ToArray(), 400, 3);
        }
        for (int step = 0; step < 150; step++)
            layer.Forward(Batch());
        layer.Eval();
        var y = layer.Forward(Batch()).ToArray();
        for (int a = 0; a < 3; a++)
        {
            double mean = Enumerable.Range(0, 400).Average(i => (double)y[i * 3 + a]);
            Assert.True(Math.Abs(mean) < 0.2, $"channel {a}: mean {mean}");
            for (int b = 0; b < 3; b++)
            {
                double cov = Enumerable.Range(0, 400).Average(i => (double)y[i * 3 + a] * y[i * 3 + b]);
                Assert.True(Math.Abs(cov - (a == b ? 1 : 0)) < 0.25, $"eval cov[{a},{b}] = {cov}");
            }
        }
    }

    [Fact]
    public void ABatchSmallerThanTheGroupIsAClearError()
    {
        var e = Assert.Throws<ArgumentException>(() => new DecorrelatedBatchNorm(8, groupSize: 8).Forward(new Tensor(4, 8)));
        Assert.Contains("more than 8 values per channel", e.Message);
        Assert.Throws<ArgumentException>(() => new DecorrelatedBatchNorm(6, groupSize: 4));
    }
}

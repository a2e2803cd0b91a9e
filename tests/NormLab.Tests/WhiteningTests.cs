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
    public void RunningWhiteningIsTheInverseSquareRootOfTheRunningCovariance()
    {
        // After training steps on small, noisy batches: W_run·(C_run + eps·I)·W_run = I, and C_run is the momentum
        // average of the batches' unbiased covariances (from the identity it starts at).
        var layer = new DecorrelatedBatchNorm(4, groupSize: 4, eps: 1e-3, momentum: 0.3);
        var rng = new Rng(5);
        var expected = new double[16];
        for (int k = 0; k < 4; k++)
            expected[k * 4 + k] = 1;
        for (int step = 0; step < 5; step++)
        {
            var x = Correlated(rng, 12, 4);
            layer.Forward(Tensor.FromArray(x.Select(v => (float)v).ToArray(), 12, 4));
            var mean = Enumerable.Range(0, 4).Select(a => Enumerable.Range(0, 12).Average(i => (double)(float)x[i * 4 + a])).ToArray();
            for (int a = 0; a < 4; a++)
                for (int b = 0; b < 4; b++)
                {
                    double cov = Enumerable.Range(0, 12).Sum(i => ((float)x[i * 4 + a] - mean[a]) * ((float)x[i * 4 + b] - mean[b])) / 11;
                    expected[a * 4 + b] = 0.7 * expected[a * 4 + b] + 0.3 * cov;
                }
        }
        var c = layer.RunningCovariance.ToArray();
        var w = layer.RunningWhitening.ToArray();
        for (int k = 0; k < 16; k++)
            Assert.Equal(expected[k], c[k], 1e-4 * (1 + Math.Abs(expected[k])));
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++)
            {
                double v = 0;
                for (int p = 0; p < 4; p++)
                    for (int q = 0; q < 4; q++)
                        v += w[a * 4 + p] * ((double)c[p * 4 + q] + (p == q ? 1e-3 : 0)) * w[q * 4 + b];
                Assert.True(Math.Abs(v - (a == b ? 1 : 0)) < 1e-4, $"(W·(C + eps)·W)[{a},{b}] = {v}");
            }
        Assert.Contains(layer.NamedBuffers(), b => b.Name == "running_covariance");
    }

    [Fact]
    public void ABatchSmallerThanTheGroupIsAClearError()
    {
        var e = Assert.Throws<ArgumentException>(() => new DecorrelatedBatchNorm(8, groupSize: 8).Forward(new Tensor(4, 8)));
        Assert.Contains("more than 8 values per channel", e.Message);
        Assert.Throws<ArgumentException>(() => new DecorrelatedBatchNorm(6, groupSize: 4));
    }
}

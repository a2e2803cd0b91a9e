using NormLab.Kernels;
using NormLab.Models;
using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>ℓp batch normalization: gradients in double against central differences, and its relation to BatchNorm.</summary>
public class LpBatchNormTests
{
    public static TheoryData<double, int, int, int> Cases => new()
    {
        { 1, 5, 3, 1 }, { 1, 3, 2, 7 },
        { 2, 5, 3, 1 }, { 2, 2, 4, 9 },
        { double.PositiveInfinity, 5, 3, 1 }, { double.PositiveInfinity, 3, 2, 7 },
        { 1, 3, 2, 19 }, { 2, 3, 2, 19 }, { double.PositiveInfinity, 3, 2, 19 },   // whole vectors and a tail per plane
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void BatchStatisticsBackwardMatchesFiniteDifferences(double p, int n, int c, int s)
    {
        var rng = new Rng((ulong)(n * 100 + c * 10 + s + (double.IsInfinity(p) ? 7 : p)));
        var x = Doubles.Gaussian(rng, n * c * s, 1.0, 2.0);
        var gamma = Doubles.Gaussian(rng, c, 1.0, 0.3);
        var beta = Doubles.Gaussian(rng, c, 0.0, 0.5);
        var r = Doubles.Gaussian(rng, x.Length);
        const double eps = 1e-5;
        double Loss()
        {
            var mean = new double[c];
            var scale = new double[c];
            var y = new double[x.Length];
            LpNormKernels.Moments<double>(x, n, c, s, p, mean, scale);
            LpNormKernels.Normalize<double>(y, x, n, c, s, mean, scale, eps, gamma, beta);
            return Doubles.Dot(y, r);
        }
        var mu = new double[c];
        var sp = new double[c];
        LpNormKernels.Moments<double>(x, n, c, s, p, mu, sp);
        var dx = new double[x.Length];
        var dGamma = new double[c];
        var dBeta = new double[c];
        LpNormKernels.Backward<double>(dx, dGamma, dBeta, r, x, n, c, s, p, mu, sp, eps, gamma);
        GradCheck.Double($"ℓ{p} dx", x, dx, Loss);
        GradCheck.Double($"ℓ{p} dγ", gamma, dGamma, Loss);
        GradCheck.Double($"ℓ{p} dβ", beta, dBeta, Loss);
    }

    [Fact]
    public void L2WithoutEpsIsBatchNormWithoutEps()
    {
        var x = TensorAssert.Randn(3, 16, 6, 3, 3);
        var lp = new LpBatchNorm(6, 2, eps: 0).Forward(x);
        var bn = new BatchNorm2d(6, eps: 0).Forward(x);
        TensorAssert.Close("ℓ2 vs BN", bn, lp, 1e-5, 1e-5);
    }

    [Fact]
    public void ModuleWiresGradientsInTrainingAndEval()
    {
        foreach (var p in new[] { 1, 2, double.PositiveInfinity })
        {
            var layer = new LpBatchNorm(4, p);
            GradCheck.Module(layer, TensorAssert.Randn(4, 6, 4));
            layer.Eval();
            GradCheck.Module(layer, TensorAssert.Randn(5, 3, 4, 2, 2));
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => new LpBatchNorm(4, 3));
        Assert.Contains("more than 1 value", Assert.Throws<ArgumentException>(() => new LpBatchNorm(3, 1).Forward(new Tensor(1, 3))).Message);
        Assert.IsType<LpBatchNorm>(Zoo.Norm(NormKind.LpInf, 8, spatial: true));
    }

    [Theory]
    [InlineData(1.0)]
    [InlineData(2.0)]
    [InlineData(double.PositiveInfinity)]
    public void FloatKernelsMatchTheFormulasInDoubleOnDataFarFromZero(double p)
    {
        // 1e4 ± 1e-2: a float sum of x or x² would lose the spread entirely; planes of 37 values end in a partial vector.
        const int n = 8, c = 3, s = 37;
        var rng = new Rng(11);
        var x = new float[n * c * s];
        var dy = new float[x.Length];
        for (int i = 0; i < x.Length; i++)
            (x[i], dy[i]) = ((float)(1e4 + 1e-2 * rng.NextGaussian()), (float)rng.NextGaussian());
        float[] gamma = [1.5f, -0.5f, 2f], beta = [0.1f, 0f, -1f];
        const double eps = 1e-5;
        var (mean, scale, y) = (new double[c], new double[c], new float[x.Length]);
        LpNormKernels.Moments<float>(x, n, c, s, p, mean, scale);
        LpNormKernels.Normalize<float>(y, x, n, c, s, mean, scale, eps, gamma, beta);
        var (dx, dGamma, dBeta) = (new float[x.Length], new float[c], new float[c]);
        LpNormKernels.Backward<float>(dx, dGamma, dBeta, dy, x, n, c, s, p, mean, scale, eps, gamma);

        var xd = x.Select(v => (double)v).ToArray();
        var (refMean, refScale) = (new double[c], new double[c]);
        for (int ch = 0; ch < c; ch++)
        {
            var values = Enumerable.Range(0, n).SelectMany(i => xd.Skip((i * c + ch) * s).Take(s)).ToArray();
            refMean[ch] = values.Average();
            var dev = values.Select(v => Math.Abs(v - refMean[ch])).ToArray();
            refScale[ch] = p == 1 ? dev.Average() : p == 2 ? Math.Sqrt(dev.Average(d => d * d)) : dev.Max();
            Assert.Equal(refMean[ch], mean[ch], 1e-9 * 1e4);
            Assert.Equal(refScale[ch], scale[ch], 1e-4 * refScale[ch]);
        }
        var (dxd, dGammaD, dBetaD) = (new double[x.Length], new double[c], new double[c]);
        LpNormKernels.Backward<double>(dxd, dGammaD, dBetaD, dy.Select(v => (double)v).ToArray(), xd, n, c, s, p, refMean, refScale, eps,
            gamma.Select(v => (double)v).ToArray());
        for (int i = 0; i < x.Length; i++)
        {
            int ch = i / s % c;
            double expected = gamma[ch] * (xd[i] - refMean[ch]) / (refScale[ch] + eps) + beta[ch];
            Assert.True(Math.Abs(y[i] - expected) < 1e-3, $"ℓ{p} y[{i}] = {y[i]}, expected {expected}");
            Assert.True(Math.Abs(dx[i] - dxd[i]) < 1e-3 * (1 + Math.Abs(dxd[i])), $"ℓ{p} dx[{i}] = {dx[i]}, expected {dxd[i]}");
        }
        for (int ch = 0; ch < c; ch++)
        {
            Assert.Equal(dBetaD[ch], dBeta[ch], 1e-3 * (1 + Math.Abs(dBetaD[ch])));
            Assert.Equal(dGammaD[ch], dGamma[ch], 1e-3 * (1 + Math.Abs(dGammaD[ch])));
        }
    }
}

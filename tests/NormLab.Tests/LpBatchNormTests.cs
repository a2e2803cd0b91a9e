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
        { 3, 4, 2, 5 },
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
}

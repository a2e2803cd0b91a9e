using NormLab.Kernels;
using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>GroupNorm, LayerNorm and InstanceNorm: the row kernels in double against central differences, and the modules' semantics.</summary>
public class RowNormTests
{
    // rows, segments, segment size, patterns
    public static TheoryData<int, int, int, int> Layouts => new()
    {
        { 2, 1, 2, 1 },    // two values per row
        { 3, 5, 1, 1 },    // LayerNorm over 5 features
        { 4, 2, 9, 2 },    // GroupNorm: 2 samples × 2 groups of 2 channels × 3×3
        { 6, 1, 17, 3 },   // InstanceNorm: 2 samples × 3 channels, a vector and a remainder
        { 2, 3, 4, 1 },    // GroupNorm with one group (layer norm with per-channel affine)
    };

    [Theory]
    [MemberData(nameof(Layouts))]
    public void BackwardMatchesFiniteDifferences(int rows, int segments, int size, int patterns)
    {
        var layout = new RowLayout(rows, segments, size, patterns);
        var rng = new Rng((ulong)(rows * 1000 + segments * 100 + size * 10 + patterns));
        var x = Doubles.Gaussian(rng, rows * layout.Length, 2.0, 1.5);
        var gamma = Doubles.Gaussian(rng, layout.Parameters, 1.0, 0.3);
        var beta = Doubles.Gaussian(rng, layout.Parameters, 0.0, 0.5);
        var r = Doubles.Gaussian(rng, x.Length);
        const double eps = 1e-5;
        double Loss()
        {
            var mean = new double[rows];
            var invStd = new double[rows];
            var y = new double[x.Length];
            RowNormKernels.Moments<double>(x, layout, eps, mean, invStd);
            RowNormKernels.Normalize<double>(y, x, layout, mean, invStd, gamma, beta);
            return Doubles.Dot(y, r);
        }

        var mu = new double[rows];
        var istd = new double[rows];
        RowNormKernels.Moments<double>(x, layout, eps, mu, istd);
        var dx = new double[x.Length];
        var dGamma = new double[gamma.Length];
        var dBeta = new double[beta.Length];
        RowNormKernels.Backward<double>(dx, dGamma, dBeta, r, x, layout, mu, istd, gamma, new double[2 * rows * segments]);
        GradCheck.Double("dx", x, dx, Loss);
        GradCheck.Double("dγ", gamma, dGamma, Loss);
        GradCheck.Double("dβ", beta, dBeta, Loss);

        // Without affine parameters γ = 1, β = 0.
        double Plain()
        {
            var mean = new double[rows];
            var invStd = new double[rows];
            var y = new double[x.Length];
            RowNormKernels.Moments<double>(x, layout, eps, mean, invStd);
            RowNormKernels.Normalize<double>(y, x, layout, mean, invStd, default, default);
            return Doubles.Dot(y, r);
        }
        RowNormKernels.Backward<double>(dx, default, default, r, x, layout, mu, istd, default, new double[2 * rows * segments]);
        GradCheck.Double("dx, no affine", x, dx, Plain);
    }

    [Fact]
    public void ModulesWireTheirGradients()
    {
        GradCheck.Module(new GroupNorm(2, 4), TensorAssert.Randn(1, 3, 4, 3, 3));
        GradCheck.Module(new LayerNorm(6), TensorAssert.Randn(2, 4, 6));
        GradCheck.Module(new LayerNorm([2, 3]), TensorAssert.Randn(3, 5, 2, 3));
        GradCheck.Module(new InstanceNorm2d(3, affine: true), TensorAssert.Randn(4, 2, 3, 4, 4));
        var tracked = new InstanceNorm2d(3, affine: true, trackRunningStats: true);
        tracked.Forward(TensorAssert.Randn(5, 2, 3, 4, 4));
        tracked.Eval();
        GradCheck.Module(tracked, TensorAssert.Randn(6, 2, 3, 4, 4));
    }

    [Fact]
    public void EachRowComesOutWithZeroMeanAndUnitVarianceEvenFarFromZero()
    {
        var x = new Tensor(4, 6, 5, 5);
        var rng = new Rng(9);
        foreach (ref float v in x.Span)
            v = 1e4f + 1e-2f * (float)rng.NextGaussian();
        var y = new GroupNorm(3, 6, eps: 0).Forward(x);
        int row = 2 * 25;
        for (int r = 0; r < 12; r++)
        {
            var values = y.Span.Slice(r * row, row).ToArray().Select(v => (double)v).ToArray();
            double mean = values.Average(), variance = values.Select(v => (v - mean) * (v - mean)).Average();
            Assert.True(Math.Abs(mean) < 1e-4, $"row {r}: mean {mean}");
            Assert.True(Math.Abs(variance - 1) < 1e-3, $"row {r}: variance {variance}");
        }
    }

    [Fact]
    public void GroupNormWithOneGroupPerChannelIsInstanceNorm()
    {
        var x = TensorAssert.Randn(3, 2, 4, 5, 5);
        var group = new GroupNorm(4, 4).Forward(x).ToArray();
        var instance = new InstanceNorm2d(4, affine: true).Forward(x).ToArray();
        Assert.Equal(group, instance);
    }

    [Fact]
    public void BadShapesAndArgumentsSayWhatIsWrong()
    {
        Assert.Contains("divisible", Assert.Throws<ArgumentException>(() => new GroupNorm(3, 8)).Message);
        Assert.Contains("[N, 8, *]", Assert.Throws<ArgumentException>(() => new GroupNorm(2, 8).Forward(new Tensor(2, 6, 3, 3))).Message);
        Assert.Contains("expected input with shape [*, 10]", Assert.Throws<ArgumentException>(() => new LayerNorm(10).Forward(new Tensor(4, 8))).Message);
        Assert.Contains("more than 1 spatial element", Assert.Throws<ArgumentException>(() => new InstanceNorm2d(3).Forward(new Tensor(2, 3, 1, 1))).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new LayerNorm(4, eps: -1));
    }

    [Fact]
    public void InstanceNormRunningStatisticsAreTheBatchAverageOfTheInstances()
    {
        var layer = new InstanceNorm2d(2, momentum: 0.5, trackRunningStats: true);
        var x = TensorAssert.Randn(8, 3, 2, 2, 3);
        layer.Forward(x);
        var v = x.ToArray();
        for (int c = 0; c < 2; c++)
        {
            double meanOfMeans = 0, meanOfVars = 0;
            for (int n = 0; n < 3; n++)
            {
                var inst = v.Skip((n * 2 + c) * 6).Take(6).Select(f => (double)f).ToArray();
                double m = inst.Average();
                meanOfMeans += m / 3;
                meanOfVars += inst.Select(f => (f - m) * (f - m)).Sum() / 5 / 3;
            }
            Assert.Equal(0.5 * meanOfMeans, layer.RunningMean!.Span[c], 5);
            Assert.Equal(0.5 + 0.5 * meanOfVars, layer.RunningVar!.Span[c], 5);
        }
        Assert.Equal(0, layer.NumBatchesTracked); // as in PyTorch
    }
}

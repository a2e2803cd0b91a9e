using NormLab.Kernels;
using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>The BN kernels in double precision: gradients against central differences, on awkward shapes.</summary>
public class BatchNormKernelTests
{
    public static TheoryData<int, int, int> Shapes => new()
    {
        { 2, 1, 1 },   // N = 2, C = 1, one value per row: m = 2
        { 2, 3, 1 },
        { 5, 3, 1 },   // [N, C]
        { 6, 5, 1 },   // [N, C]: a block of 4 doubles and a tail block over it
        { 9, 11, 1 },  // two blocks and a tail block
        { 3, 2, 7 },   // [N, C, L] with odd L
        { 2, 4, 9 },   // [N, C, H·W]
        { 1, 2, 5 },   // N = 1 but m = 5
        { 4, 3, 17 },  // spans a vector and a remainder
        { 5, 3, 16 },  // a group of channels, its samples two at a time (whole vectors) and one left
        { 5, 2, 131 }, // planes for the in-order walk (BatchNormBlocks), with a tail
    };

    // Every shape, and with a ReLU fused after the layer (BatchNorm.ForwardRelu) every shape with planes, plus planes of a
    // page or more (one channel per group, its samples two at a time).
    public static TheoryData<int, int, int, bool> GradientCases
    {
        get
        {
            var cases = new TheoryData<int, int, int, bool>();
            foreach (var row in Shapes)
            {
                var (n, c, s) = ((int)row[0], (int)row[1], (int)row[2]);
                cases.Add(n, c, s, false);
                if (s > 1)
                    cases.Add(n, c, s, true);
            }
            cases.Add(2, 2, 1030, true);
            cases.Add(3, 2, 1024, false); // two samples side by side (BatchNormPlanes.TwoPages), then one left
            cases.Add(3, 2, 1024, true);
            return cases;
        }
    }

    [Theory]
    [MemberData(nameof(GradientCases))]
    public void BatchStatisticsBackwardMatchesFiniteDifferences(int n, int c, int s, bool relu)
    {
        var rng = new Rng((ulong)(n * 100 + c * 10 + s));
        var x = Doubles.Gaussian(rng, n * c * s, 2.0, 1.5);
        var gamma = Doubles.Gaussian(rng, c, 1.0, 0.3);
        var beta = Doubles.Gaussian(rng, c, 0.0, 0.5);
        var r = Doubles.Gaussian(rng, n * c * s, 0.0, 1.0);
        const double eps = 1e-5;

        double Loss()
        {
            var mean = new double[c];
            var m2 = new double[c];
            var invStd = new double[c];
            var y = new double[x.Length];
            BatchNormKernels.Moments<double>(x, n, c, s, mean, m2);
            BatchNormKernels.InvStd(invStd, m2, n * s, eps);
            BatchNormKernels.Normalize<double>(y, x, mean, invStd, gamma, beta, n, c, s, relu);
            AssertTheReluGates(y, relu);
            return Doubles.Dot(y, r);
        }

        var mu = new double[c];
        var m2a = new double[c];
        var istd = new double[c];
        BatchNormKernels.Moments<double>(x, n, c, s, mu, m2a);
        BatchNormKernels.InvStd(istd, m2a, n * s, eps);
        var dx = new double[x.Length];
        var dGamma = new double[c];
        var dBeta = new double[c];
        BatchNormKernels.BackwardBatchStats<double>(dx, dGamma, dBeta, r, x, mu, istd, gamma, beta, n, c, s, relu);

        // The rounding error of a central difference grows with |L| (a sum over every value): over 4K values a step of
        // 1e-6 leaves about 1e-8 of noise, the size of the tolerance, and 1e-5 a tenth of it.
        double h = x.Length > 4096 ? 1e-5 : 1e-6;
        GradCheck.Double("dx", x, dx, Loss, h);
        GradCheck.Double("dγ", gamma, dGamma, Loss, h);
        GradCheck.Double("dβ", beta, dBeta, Loss, h);
    }

    [Theory]
    [MemberData(nameof(GradientCases))]
    public void FixedStatisticsBackwardMatchesFiniteDifferences(int n, int c, int s, bool relu)
    {
        var rng = new Rng((ulong)(n * 7 + c * 3 + s));
        var x = Doubles.Gaussian(rng, n * c * s, 1.0, 2.0);
        var gamma = Doubles.Gaussian(rng, c, 1.0, 0.3);
        var beta = Doubles.Gaussian(rng, c, 0.0, 0.5);
        var mean = Doubles.Gaussian(rng, c, 0.5, 1.0);
        var invStd = Doubles.Gaussian(rng, c, 0.0, 1.0).Select(v => 0.5 + Math.Abs(v)).ToArray();
        var r = Doubles.Gaussian(rng, n * c * s, 0.0, 1.0);

        double Loss()
        {
            var y = new double[x.Length];
            BatchNormKernels.Normalize<double>(y, x, mean, invStd, gamma, beta, n, c, s, relu);
            AssertTheReluGates(y, relu);
            return Doubles.Dot(y, r);
        }

        var dx = new double[x.Length];
        var dGamma = new double[c];
        var dBeta = new double[c];
        BatchNormKernels.BackwardFixedStats<double>(dx, dGamma, dBeta, r, x, mean, invStd, gamma, beta, n, c, s, relu);
        GradCheck.Double("dx", x, dx, Loss);
        GradCheck.Double("dγ", gamma, dGamma, Loss);
        GradCheck.Double("dβ", beta, dBeta, Loss);
    }

    [Fact]
    public void GradientsOfTheBatchStatisticsSumToZeroPerChannel()
    {
        // Σ dx = 0 and Σ dx·x̂ = 0 per channel follow from the backward formula (the output is invariant to shifting and scaling x).
        int n = 6, c = 3, s = 5;
        var rng = new Rng(3);
        var x = Doubles.Gaussian(rng, n * c * s, 3.0, 2.0);
        var r = Doubles.Gaussian(rng, n * c * s, 0.0, 1.0);
        var mean = new double[c];
        var m2 = new double[c];
        var istd = new double[c];
        BatchNormKernels.Moments<double>(x, n, c, s, mean, m2);
        BatchNormKernels.InvStd(istd, m2, n * s, 0);
        var dx = new double[x.Length];
        BatchNormKernels.BackwardBatchStats<double>(dx, [], [], r, x, mean, istd, [], n, c, s);
        for (int ch = 0; ch < c; ch++)
        {
            double sum = 0, dot = 0;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < s; j++)
                {
                    int at = (i * c + ch) * s + j;
                    sum += dx[at];
                    dot += dx[at] * (x[at] - mean[ch]) * istd[ch];
                }
            Assert.True(Math.Abs(sum) < 1e-10, $"channel {ch}: Σdx = {sum}");
            Assert.True(Math.Abs(dot) < 1e-10, $"channel {ch}: Σdx·x̂ = {dot}");
        }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void TrainingForwardIsMomentsThenNormalize(int n, int c, int s)
    {
        var rng = new Rng((ulong)(n * 31 + c * 5 + s));
        var x = Doubles.Gaussian(rng, n * c * s, -1.0, 0.7);
        var gamma = Doubles.Gaussian(rng, c, 1.0, 0.3);
        var beta = Doubles.Gaussian(rng, c, 0.0, 0.5);
        double[] mean = new double[c], m2 = new double[c], invStd = new double[c], y = new double[x.Length];
        BatchNormKernels.ForwardTraining<double>(y, x, gamma, beta, 1e-5, n, c, s, mean, m2, invStd);
        double[] mean2 = new double[c], m22 = new double[c], invStd2 = new double[c], y2 = new double[x.Length];
        BatchNormKernels.Moments<double>(x, n, c, s, mean2, m22);
        BatchNormKernels.InvStd(invStd2, m22, n * s, 1e-5);
        BatchNormKernels.Normalize<double>(y2, x, mean2, invStd2, gamma, beta, n, c, s);
        Assert.Equal(mean2, mean);
        Assert.Equal(m22, m2);
        Assert.Equal(invStd2, invStd);
        Assert.Equal(y2, y);
    }

    [Theory]
    [InlineData(9, 20, 1)]
    [InlineData(7, 3, 11)]
    public void MomentsOfRowSlicesMergeIntoTheBatchMoments(int n, int c, int s)
    {
        // (count, mean, M2) of any slice of rows, merged with Chan's formula, give the whole batch's: what ghost batches
        // and cross-process merges rely on.
        var rng = new Rng(11);
        var x = Doubles.Gaussian(rng, n * c * s, 5.0, 2.0);
        double[] mean = new double[c], m2 = new double[c];
        BatchNormKernels.Moments<double>(x, n, c, s, mean, m2);
        int top = n / 3;
        double[] meanA = new double[c], m2A = new double[c], meanB = new double[c], m2B = new double[c];
        BatchNormKernels.Moments<double>(x.AsSpan(0, top * c * s), top, c, s, meanA, m2A);
        BatchNormKernels.Moments<double>(x.AsSpan(top * c * s), n - top, c, s, meanB, m2B);
        double countA = top * s, countB = (n - top) * s;
        for (int ch = 0; ch < c; ch++)
        {
            double delta = meanB[ch] - meanA[ch];
            double merged = (countA * meanA[ch] + countB * meanB[ch]) / (countA + countB);
            double mergedM2 = m2A[ch] + m2B[ch] + delta * delta * countA * countB / (countA + countB);
            Assert.Equal(mean[ch], merged, 1e-12);
            Assert.Equal(m2[ch], mergedM2, 1e-10);
        }
    }

    [Fact]
    public void OutputsMustNotOverlapInputs()
    {
        var x = new double[12];
        Assert.Throws<ArgumentException>(() =>
            BatchNormKernels.Normalize<double>(x, x, new double[3], new double[3], [], [], 2, 3, 2));
    }

    // With a fused ReLU the check must cross both sides of its kink: some outputs stopped at 0, some passed.
    private static void AssertTheReluGates(double[] y, bool relu)
    {
        if (relu)
            Assert.True(y.Any(v => v == 0) && y.Any(v => v > 0), "the ReLU must pass some values and stop others");
    }
}

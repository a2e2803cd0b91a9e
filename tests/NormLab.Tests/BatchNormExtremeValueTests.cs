using System.Numerics;

namespace NormLab.Tests;

/// <summary>
/// BatchNorm statistics for data that breaks naive formulas: constant channels (variance exactly 0), a huge offset with a
/// tiny spread (1e6 ± 1e-3), and very large values (1e18, whose squares 1e36 are near float's 3.4e38 once summed).
/// Each is checked against a double-precision reference computed from the same float inputs.
/// </summary>
public class BatchNormExtremeValueTests
{
    /// <summary>The data sets; <see cref="Data.SquaresOverflow"/> (1e19, beyond the 1e18) has single squares above float's range;
    /// <see cref="Data.FarFirstValue"/> (1e4 ± 1e-2, but each plane's first value 1e4 + 10) defeats statistics summed around the
    /// first value in one pass (Σd² − (Σd)²/m cancels), which the kernels must notice and sum again around the mean.</summary>
    public enum Data { Constant, Offset, Huge, SquaresOverflow, FarFirstValue }

    public static TheoryData<Data, int, int, int> Cases()
    {
        var cases = new TheoryData<Data, int, int, int>();
        foreach (var data in Enum.GetValues<Data>())
        {
            if (data == Data.SquaresOverflow)
            {
                cases.Add(data, 40, 11, 1);
                cases.Add(data, 6, 3, 49);
                cases.Add(data, 37, 3, 30 * 30);
                cases.Add(data, 2100, 260, 1);
                continue;
            }
            cases.Add(data, 40, 11, 1);      // [N, C]: vector blocks of channels and a leftover channel
            cases.Add(data, 6, 3, 49);       // 7×7 planes
            cases.Add(data, 4, 2, 56 * 56);  // large planes: many values per lane accumulator
            cases.Add(data, 37, 3, 30 * 30); // planes under a page: the in-order walk, blocks of 3 samples and one of 1
            cases.Add(data, 2100, 260, 1);   // a tall [N, C] of 2 MiB: blocks of rows (7 of 304 rows and one of 276)
        }
        return cases;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void StatisticsStayFiniteAndMatchADoubleReference(Data data, int n, int c, int s)
    {
        var x = Tensor.FromArray(Values(data, n, c, s).Select(v => (float)v).ToArray(), n, c, s);
        var (mean, m2) = Reference(x.ToArray(), n, c, s);
        int m = n * s;

        var bn = new BatchNorm1d(c);
        var y = bn.Forward(x);
        var runningMean = bn.RunningMean!.ToArray();
        var runningVar = bn.RunningVar!.ToArray();
        var kernelMean = new double[c];
        var kernelM2 = new double[c];
        Kernels.BatchNormKernels.Moments<float>(x.Span, n, c, s, kernelMean, kernelM2);
        for (int ch = 0; ch < c; ch++)
        {
            double sd = Math.Sqrt(m2[ch] / m);
            string where = $"{data}, channel {ch} of [{n}, {c}, {s}]";
            Assert.True(double.IsFinite(kernelM2[ch]) && kernelM2[ch] >= 0, $"{where}: M2 {kernelM2[ch]}");
            if (data == Data.Constant)
            {
                // The deviations from the first value are exactly 0: the mean is the value, the variance exactly 0.
                Assert.Equal(mean[ch], kernelMean[ch]);
                Assert.Equal(0.0, kernelM2[ch]);
            }
            else
            {
                Assert.True(Math.Abs(kernelMean[ch] - mean[ch]) <= 1e-6 * sd, $"{where}: mean {kernelMean[ch]:R}, reference {mean[ch]:R}");
                Assert.True(Math.Abs(kernelM2[ch] - m2[ch]) <= 1e-5 * m2[ch], $"{where}: M2 {kernelM2[ch]:R}, reference {m2[ch]:R}");
            }
            // Running statistics after one step from (0, 1) with momentum 0.1; the variance is the unbiased one.
            double expectedVar = 0.9 + 0.1 * m2[ch] / (m - 1);
            Assert.True(float.IsFinite(runningVar[ch]) && runningVar[ch] >= 0, $"{where}: running_var {runningVar[ch]}");
            Assert.True(Math.Abs(runningVar[ch] - expectedVar) <= 1e-5 * expectedVar, $"{where}: running_var {runningVar[ch]:R}, reference {expectedVar:R}");
            Assert.True(Math.Abs(runningMean[ch] - 0.1 * mean[ch]) <= 1e-6 * Math.Abs(0.1 * mean[ch]) + 1e-7 * sd,
                $"{where}: running_mean {runningMean[ch]:R}, reference {0.1 * mean[ch]:R}");
            // The output against (x − mean)/√(var + eps) in double: unit scale, or exactly β = 0 for a constant channel.
            double invStd = 1 / Math.Sqrt(m2[ch] / m + bn.Eps);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < s; j++)
                {
                    int at = (i * c + ch) * s + j;
                    double expected = (x.Span[at] - mean[ch]) * invStd;
                    Assert.True(Math.Abs(y.Span[at] - expected) <= 2e-4, $"{where}: y[{i}, {j}] = {y.Span[at]:R}, reference {expected:R}");
                }
        }
        // Backward through the batch statistics stays finite too.
        var dy = new Tensor(n, c, s);
        Init.Normal(dy, new Rng(3), 1.0);
        Assert.All(bn.Backward(dy).ToArray(), v => Assert.True(float.IsFinite(v), $"{data}: dx {v}"));
        // Eval mode normalizes with the running statistics: finite as well.
        bn.Eval();
        Assert.All(bn.Forward(x).ToArray(), v => Assert.True(float.IsFinite(v), $"{data}: eval output {v}"));
    }

    // The data as doubles; the float tests round them (at 1e6, float's spacing 0.0625 swallows the 1e-3 spread entirely).
    private static double[] Values(Data data, int n, int c, int s)
    {
        var rng = new Rng(7);
        var values = new double[n * c * s];
        for (int i = 0; i < n; i++)
            for (int ch = 0; ch < c; ch++)
                for (int j = 0; j < s; j++)
                    values[(i * c + ch) * s + j] = data switch
                    {
                        // A different constant per channel, from 0 to 1e18 and a negative one.
                        Data.Constant => ch % 4 switch { 0 => 0.0, 1 => -7.25, 2 => 1e6, _ => 1e18 },
                        Data.Offset => 1e6 + 1e-3 * rng.NextGaussian(),
                        Data.Huge => 1e18 * (1 + rng.NextGaussian()),
                        Data.FarFirstValue => j == 0 && (i == 0 || s > 1) ? 1e4 + 10 : 1e4 + 1e-2 * rng.NextGaussian(),
                        _ => 1e19 * rng.NextGaussian(),
                    };
        return values;
    }

    [Fact]
    public void AVarianceBeyondFloatIsStoredAsInfinityAndTheOutputStaysFinite()
    {
        // Spread 1e20: the variance, 1e40, exceeds float's range. The batch statistics are double and normalize fine; the
        // running variance is a float buffer (as PyTorch's) and saturates to +∞, never NaN. This is the documented limit.
        var x = Tensor.FromArray(Values(Data.SquaresOverflow, 40, 3, 1).Select(v => (float)(10 * v)).ToArray(), 40, 3);
        var (mean, m2) = Reference(x.ToArray(), 40, 3, 1);
        var bn = new BatchNorm1d(3);
        var y = bn.Forward(x);
        Assert.All(y.ToArray(), v => Assert.True(float.IsFinite(v) && Math.Abs(v) < 10, $"y {v}"));
        for (int ch = 0; ch < 3; ch++)
        {
            Assert.True(0.1 * m2[ch] / 39 > float.MaxValue, $"channel {ch}: the reference variance {m2[ch] / 39:E3} fits a float");
            Assert.Equal(float.PositiveInfinity, bn.RunningVar![ch]);
            Assert.True(Math.Abs(bn.RunningMean![ch] - 0.1 * mean[ch]) <= 1e-6 * Math.Sqrt(m2[ch] / 40), $"running_mean {bn.RunningMean[ch]}");
        }
    }

    [Theory]
    [InlineData(Data.Offset, 40, 11, 1)]
    [InlineData(Data.Offset, 6, 3, 49)]
    [InlineData(Data.Huge, 4, 2, 56 * 56)]
    [InlineData(Data.Constant, 40, 5, 1)]
    public void DoubleKernelsKeepTheSpreadOfAHugeOffset(Data data, int n, int c, int s)
    {
        // In double the 1e-3 spread around 1e6 survives; the kernels must keep it to about double's precision.
        var x = Values(data, n, c, s);
        var (mean, m2) = Reference(x, n, c, s);
        var (kernelMean, kernelM2, invStd) = (new double[c], new double[c], new double[c]);
        var y = new double[x.Length];
        Kernels.BatchNormKernels.ForwardTraining<double>(y, x, [], [], 0, n, c, s, kernelMean, kernelM2, invStd);
        for (int ch = 0; ch < c; ch++)
        {
            double sd = Math.Sqrt(m2[ch] / (n * s));
            string where = $"{data}, channel {ch} of [{n}, {c}, {s}]";
            Assert.True(Math.Abs(kernelMean[ch] - mean[ch]) <= 1e-9 * sd, $"{where}: mean {kernelMean[ch]:R}, reference {mean[ch]:R}");
            Assert.True(Math.Abs(kernelM2[ch] - m2[ch]) <= 1e-9 * m2[ch], $"{where}: M2 {kernelM2[ch]:R}, reference {m2[ch]:R}");
            if (m2[ch] == 0)
                continue;   // eps 0 and no spread: 1/0, which is what eps exists for
            for (int i = 0; i < n * s; i++)
            {
                int at = (i / s * c + ch) * s + i % s;
                Assert.True(Math.Abs(y[at] - (x[at] - mean[ch]) / sd) <= 1e-8, $"{where}: y[{at}] = {y[at]:R}");
            }
        }
    }

    // Two passes in double around each channel's first value: x − first is exact for data near it (Sterbenz).
    private static (double[] Mean, double[] M2) Reference<T>(IReadOnlyList<T> x, int n, int c, int s) where T : IFloatingPointIeee754<T>
    {
        var (mean, m2) = (new double[c], new double[c]);
        for (int ch = 0; ch < c; ch++)
        {
            var values = Enumerable.Range(0, n * s).Select(i => double.CreateChecked(x[(i / s * c + ch) * s + i % s])).ToArray();
            double first = values[0];
            mean[ch] = first + values.Sum(v => v - first) / values.Length;
            m2[ch] = values.Sum(v => (v - mean[ch]) * (v - mean[ch]));
        }
        return (mean, m2);
    }
}

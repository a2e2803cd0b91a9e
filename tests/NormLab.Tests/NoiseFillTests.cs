using NormLab.Kernels;

namespace NormLab.Tests;

/// <summary>The bulk noise generators: the moments and tail masses of their distributions, every length, and the seed.</summary>
public class NoiseFillTests
{
    [Theory]
    [InlineData(200_001)]
    [InlineData(1_000_000)]
    public void GaussianValuesHaveTheStandardNormalsMomentsAndTails(int count)
    {
        var z = new float[count];
        NoiseFill.Gaussian(new Rng(3), z);
        double mean = z.Average(v => (double)v);
        double variance = z.Average(v => (v - mean) * (v - mean));
        double skew = z.Average(v => Math.Pow(v - mean, 3)) / Math.Pow(variance, 1.5);
        double kurtosis = z.Average(v => Math.Pow(v - mean, 4)) / (variance * variance);
        double se = 1 / Math.Sqrt(count);
        Assert.InRange(mean, -5 * se, 5 * se);
        Assert.InRange(variance, 1 - 5 * Math.Sqrt(2) * se, 1 + 5 * Math.Sqrt(2) * se);
        Assert.InRange(skew, -5 * Math.Sqrt(6) * se, 5 * Math.Sqrt(6) * se);
        Assert.InRange(kurtosis, 3 - 5 * Math.Sqrt(24) * se, 3 + 5 * Math.Sqrt(24) * se);
        // Φ(1) − Φ(−1) and Φ(2) − Φ(−2): both halves of each Box–Muller pair, not just the sum, must be normal.
        foreach (var half in new[] { z[..(count / 2)], z[(count / 2)..] })
        {
            Assert.InRange(half.Count(v => Math.Abs(v) < 1) / (double)half.Length, 0.6827 - 0.005, 0.6827 + 0.005);
            Assert.InRange(half.Count(v => Math.Abs(v) < 2) / (double)half.Length, 0.9545 - 0.003, 0.9545 + 0.003);
        }
        Assert.All(z, v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void EveryLengthIsFilledAndTheSeedFixesTheValues()
    {
        for (int length = 0; length < 600; length += 7)
        {
            var a = new float[length + 1];
            a[^1] = float.NaN;   // a sentinel past the span: nothing may be written there
            NoiseFill.Gaussian(new Rng(9), a.AsSpan(0, length));
            Assert.True(float.IsNaN(a[^1]));
            Assert.DoesNotContain(a[..length], float.IsNaN);
            var b = new float[length];
            NoiseFill.Gaussian(new Rng(9), b);
            Assert.Equal(b, a[..length]);
            if (length > 10)
                Assert.True(a.Take(length).Distinct().Count() > length * 9 / 10);
        }
    }

    [Fact]
    public void UniformValuesFillTheUnitIntervalEvenly()
    {
        var u = new float[300_001];
        NoiseFill.Uniform(new Rng(4), u);
        Assert.All(u, v => Assert.InRange(v, 0f, 0.99999994f));
        Assert.InRange(u.Average(v => (double)v), 0.5 - 0.003, 0.5 + 0.003);
        Assert.InRange(u.Average(v => (v - 0.5) * (v - 0.5)), 1 / 12.0 - 0.002, 1 / 12.0 + 0.002);
        var deciles = new int[10];
        foreach (var v in u)
            deciles[(int)(v * 10)]++;
        Assert.All(deciles, d => Assert.InRange(d, 30_000 - 600, 30_000 + 600));
    }

    [Fact]
    public void MultiplicativeNoiseScalesByOneToBAndShiftsByMinusAToA()
    {
        var noise = new StepNoise(0.5, 1.5, NoiseKind.Multiplicative, new Rng(2));
        var zeros = new Tensor(1000, 4);
        var shifts = noise.Forward(zeros).ToArray();     // 0·s + μ = μ
        Assert.All(shifts, v => Assert.InRange(v, -0.5f, 0.5f));
        Assert.InRange(shifts.Average(v => (double)v), -0.03, 0.03);
        var ones = new Tensor(1000, 4);
        ones.Fill(1f);
        var scaled = noise.Forward(ones).ToArray();      // s + μ
        Assert.All(scaled, v => Assert.InRange(v, 0.5f, 2f));
        Assert.InRange(scaled.Average(v => (double)v), 1.25 - 0.03, 1.25 + 0.03);
    }
}

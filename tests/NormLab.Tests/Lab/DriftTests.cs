using NormLab.Lab.Measures;

namespace NormLab.Tests.Lab;

public sealed class DriftTests
{
    [Fact]
    public void PercentilesInterpolateBetweenRanksLikeNumPy()
    {
        // numpy.percentile([1, 2, 3, 4, 5], [15, 50, 85]) = [1.6, 3.0, 4.4]
        double[] v = [5, 3, 1, 4, 2];
        Assert.Equal(1.6, Stats.Percentile(v, 15), 12);
        Assert.Equal(3.0, Stats.Percentile(v, 50), 12);
        Assert.Equal(4.4, Stats.Percentile(v, 85), 12);
        Assert.Equal(1.0, Stats.Percentile(v, 0), 12);
        Assert.Equal(5.0, Stats.Percentile(v, 100), 12);
    }

    [Fact]
    public void PercentilesOfAColumnOfAMatrix()
    {
        // Column 1 of a 5×2 matrix holds 10, 20, 30, 40, 50.
        float[] m = [0, 10, 0, 50, 0, 30, 0, 20, 0, 40];
        var (p15, p50, p85) = Drift.Percentiles(m, 5, 2, 1);
        Assert.Equal(16, p15, 5);
        Assert.Equal(30, p50, 5);
        Assert.Equal(44, p85, 5);
    }

    [Fact]
    public void AStillDistributionHasNoDrift()
    {
        double[] p15 = [-1, -1, -1], p50 = [0, 0, 0], p85 = [1, 1, 1];
        Assert.Equal(0, Drift.Of(p15, p50, p85));
    }

    [Fact]
    public void DriftSumsMedianMovesAndSpreadChangesOverTheFinalSpread()
    {
        // Median 0 → 1 → 3 (moves 1 + 2), spread 2 → 4 → 4 (change 2 + 0); final spread 4: (3 + 2) / 4.
        double[] p50 = [0, 1, 3], p15 = [-1, -1, 1], p85 = [1, 3, 5];
        Assert.Equal(5.0 / 4.0, Drift.Of(p15, p50, p85), 12);
    }

    [Fact]
    public void DriftIsScaleFree()
    {
        double[] p15 = [-1, -1, 1], p50 = [0, 1, 3], p85 = [1, 3, 5];
        double scaled = Drift.Of(p15.Select(v => 1000 * v).ToArray(), p50.Select(v => 1000 * v).ToArray(), p85.Select(v => 1000 * v).ToArray());
        Assert.Equal(Drift.Of(p15, p50, p85), scaled, 12);
    }

    [Fact]
    public void SeriesOfDifferentLengthsAreRejected()
    {
        var e = Assert.Throws<ArgumentException>(() => Drift.Of(new double[3], new double[2], new double[3]));
        Assert.Contains("differ in length", e.Message);
    }

    [Fact]
    public void MeanAndStdAcrossSeedsUseTheStepsEverySeedLogged()
    {
        var a = new NormLab.Lab.ArmResult { Arm = "x", Seed = 1 };
        var b = new NormLab.Lab.ArmResult { Arm = "x", Seed = 2 };
        a.Log(10, "acc", 0.5); a.Log(20, "acc", 0.7); a.Log(30, "acc", 0.9);
        b.Log(10, "acc", 0.7); b.Log(20, "acc", 0.9);
        var (steps, mean, std) = Stats.AcrossSeeds([a, b], "acc");
        Assert.Equal([10.0, 20.0], steps);
        Assert.Equal(0.6, mean[0], 12);
        Assert.Equal(0.8, mean[1], 12);
        Assert.Equal(Math.Sqrt(0.02), std[0], 12);
    }
}

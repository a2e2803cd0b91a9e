using NormLab.Lab.Measures;

namespace NormLab.Tests.Lab;

public sealed class CurvesTests
{
    private static readonly double[] Steps = [100, 200, 300, 400, 500];

    [Fact]
    public void StepsToReachIsTheFirstStepAtOrAboveTheTarget()
    {
        double[] accuracy = [0.5, 0.7, 0.9, 0.8, 0.95];
        Assert.Equal(300, Curves.StepsToReach(Steps, accuracy, 0.9));
        Assert.Equal(300, Curves.StepsToReach(Steps, accuracy, 0.85));
        Assert.Equal(100, Curves.StepsToReach(Steps, accuracy, 0.1));
        Assert.Equal(500, Curves.StepsToReach(Steps, accuracy, 0.95));
        Assert.True(double.IsNaN(Curves.StepsToReach(Steps, accuracy, 0.96)));
    }

    [Fact]
    public void PeakIsTheHighestValueAtItsFirstStep()
    {
        Assert.Equal((300.0, 0.9), Curves.Peak(Steps, [0.5, 0.7, 0.9, 0.9, 0.6]));
        Assert.Equal((100.0, 0.1), Curves.Peak(Steps, [0.1, 0.1, 0.1, 0.1, 0.1]));
    }

    [Fact]
    public void MismatchedLengthsAreRejected()
    {
        Assert.Throws<ArgumentException>(() => Curves.StepsToReach(Steps, [0.5], 0.4));
        Assert.Throws<ArgumentException>(() => Curves.Peak(Steps, [0.5]));
    }
}

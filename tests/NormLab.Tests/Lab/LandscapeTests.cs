using NormLab.Lab.Measures;

namespace NormLab.Tests.Lab;

/// <summary>
/// The landscape measures on losses with closed forms: on L(w) = ½wᵀAw the loss along −g is the parabola
/// L(0) − η‖g‖² + ½η²gᵀAg, Δ(η) = η‖Ag‖ and β_eff = ‖Ag‖/‖g‖ (the curvature along g: the eigenvalue when g is an eigenvector).
/// </summary>
public sealed class LandscapeTests
{
    private static readonly double[,] A = { { 3, 1, 0 }, { 1, 2, 0 }, { 0, 0, 0.5 } };

    private static double Quadratic(double[,] a, ReadOnlySpan<float> w, Span<float> grad)
    {
        double loss = 0;
        for (int i = 0; i < w.Length; i++)
        {
            double gi = 0;
            for (int j = 0; j < w.Length; j++)
                gi += a[i, j] * w[j];
            grad[i] = (float)gi;
            loss += 0.5 * w[i] * gi;
        }
        return loss;
    }

    private static double[] Times(double[,] a, double[] v) =>
        Enumerable.Range(0, v.Length).Select(i => Enumerable.Range(0, v.Length).Sum(j => a[i, j] * v[j])).ToArray();

    private static double Dot(double[] u, double[] v) => u.Zip(v, (x, y) => x * y).Sum();

    [Fact]
    public void OnAQuadraticTheLossAlongTheGradientIsTheParabolaAndBetaIsTheCurvatureAlongG()
    {
        float[] w = [1f, -1f, 2f];
        double[] wd = [1, -1, 2];
        double[] g = Times(A, wd), ag = Times(A, g);
        double l0 = 0.5 * Dot(wd, Times(A, wd));
        double Parabola(double eta) => l0 - eta * Dot(g, g) + 0.5 * eta * eta * Dot(g, ag);
        double[] etas = [0.05, 0.1, 0.2, 0.3, 0.4];

        var s = Landscape.Measure((x, gr) => Quadratic(A, x, gr), w, etas);

        var along = etas.Select(Parabola).ToArray();
        Assert.Equal(l0, s.Loss, 5);
        Assert.Equal(Math.Sqrt(Dot(g, g)), s.GradientNorm, 5);
        Assert.Equal(along.Min(), s.LossMin, 4);
        Assert.Equal(along.Max(), s.LossMax, 4);
        Assert.Equal(along.Max() - along.Min(), s.LossRange, 4);
        Assert.Equal(0.05 * Math.Sqrt(Dot(ag, ag)), s.DeltaMin, 4);
        Assert.Equal(0.4 * Math.Sqrt(Dot(ag, ag)), s.DeltaMax, 4);
        Assert.Equal(Math.Sqrt(Dot(ag, ag) / Dot(g, g)), s.BetaEffective, 4);
        Assert.Equal([1f, -1f, 2f], w); // the point itself is not moved
    }

    [Fact]
    public void AlongAnEigenvectorBetaIsItsEigenvalueAndNeverExceedsTheLargest()
    {
        double[,] diag = { { 4, 0 }, { 0, 1 } };
        Assert.Equal(4, Landscape.Measure((x, g) => Quadratic(diag, x, g), [1f, 0f], [0.1, 0.2]).BetaEffective, 5);
        Assert.Equal(1, Landscape.Measure((x, g) => Quadratic(diag, x, g), [0f, 3f], [0.1, 0.2]).BetaEffective, 5);
        var mixed = Landscape.Measure((x, g) => Quadratic(diag, x, g), [1f, 1f], [0.1, 0.2]).BetaEffective;
        Assert.Equal(Math.Sqrt(257.0 / 17.0), mixed, 5); // g = (4, 1), Ag = (16, 1)
        Assert.InRange(mixed, 1, 4);
    }

    [Fact]
    public void BetaIsTheMaximumOverTheStepSizesNotTheLastOne()
    {
        // L = w⁴/4 at w = 1: g = 1, ∇L(1 − η) = (1 − η)³, so Δ(η)/η = 3 − 3η + η², largest at the smallest η.
        static double Quartic(ReadOnlySpan<float> w, Span<float> g)
        {
            g[0] = w[0] * w[0] * w[0];
            return Math.Pow(w[0], 4) / 4;
        }
        var s = Landscape.Measure(Quartic, [1f], [0.5, 0.1]);
        Assert.Equal(3 - 0.3 + 0.01, s.BetaEffective, 5);
        Assert.Equal(Math.Pow(0.5, 4) / 4, s.LossMin, 6);
        Assert.Equal(Math.Pow(0.9, 4) / 4, s.LossMax, 6);
        Assert.Equal(1 - Math.Pow(0.9, 3), s.DeltaMin, 5);
        Assert.Equal(1 - Math.Pow(0.5, 3), s.DeltaMax, 5);
    }

    [Fact]
    public void ALossThatBlowsUpCountsAsInfiniteVariation()
    {
        static double Blows(ReadOnlySpan<float> w, Span<float> g)
        {
            g[0] = 1;
            return w[0] < 0 ? double.NaN : w[0];
        }
        var s = Landscape.Measure(Blows, [0.15f], [0.1, 0.2]);
        Assert.Equal(double.PositiveInfinity, s.LossMax);
        Assert.Equal(0.05, s.LossMin, 6);
    }

    [Fact]
    public void StepSizesMustBePositive() =>
        Assert.Throws<ArgumentException>(() => Landscape.Measure((x, g) => Quadratic(A, x, g), [1f, 1f, 1f], [0.1, 0]));
}

namespace NormLab.Lab.Measures;

/// <summary>
/// The landscape along the gradient at one step (literature.md §2.5, Santurkar et al. Fig. 4), on the step's batch.
/// With g = ∇L(w), over the step sizes η ∈ H: the loss L(w − ηg) (its min and max: "loss variation"), the gradient change
/// Δ(η) = ‖∇L(w − ηg) − g‖₂ (min and max: "gradient predictiveness") and β_eff = max_η Δ(η)/‖ηg‖₂ ("effective"
/// β-smoothness). A loss or gradient that is not finite counts as +∞ (the step blew the loss up).
/// </summary>
/// <param name="Loss">L(w).</param>
/// <param name="GradientNorm">‖g‖₂.</param>
/// <param name="LossMin">min over H of L(w − ηg).</param>
/// <param name="LossMax">max over H of L(w − ηg).</param>
/// <param name="DeltaMin">min over H of Δ(η).</param>
/// <param name="DeltaMax">max over H of Δ(η).</param>
/// <param name="BetaEffective">max over H of Δ(η)/‖ηg‖₂.</param>
public sealed record LandscapeSample(double Loss, double GradientNorm, double LossMin, double LossMax, double DeltaMin, double DeltaMax, double BetaEffective)
{
    /// <summary>The loss variation: max − min of L(w − ηg) over H.</summary>
    public double LossRange => LossMax - LossMin;
}

/// <summary>Measures the loss landscape along the gradient (see <see cref="LandscapeSample"/>).</summary>
public static class Landscape
{
    /// <summary>
    /// Measures at <paramref name="w"/> over the step sizes <paramref name="etas"/> (positive): 1 + |H| evaluations of
    /// <paramref name="f"/>. <paramref name="w"/> is not changed; what <paramref name="f"/> leaves behind is the caller's.
    /// </summary>
    public static LandscapeSample Measure(LossGradient f, ReadOnlySpan<float> w, IReadOnlyList<double> etas)
    {
        if (etas.Count == 0 || etas.Any(e => !(e > 0)))
            throw new ArgumentException($"Landscape: step sizes must be positive, got [{string.Join(", ", etas)}].");
        var g = new float[w.Length];
        var moved = new float[w.Length];
        var grad = new float[w.Length];
        double loss = f(w, g), gNorm = Vec.Norm(g);
        double lossMin = double.PositiveInfinity, lossMax = double.NegativeInfinity;
        double deltaMin = double.PositiveInfinity, deltaMax = double.NegativeInfinity, beta = double.NegativeInfinity;
        foreach (double eta in etas)
        {
            Vec.Step(moved, w, g, eta);
            double l = Finite(f(moved, grad));
            double delta = Finite(Vec.Distance(grad, g));
            lossMin = Math.Min(lossMin, l);
            lossMax = Math.Max(lossMax, l);
            deltaMin = Math.Min(deltaMin, delta);
            deltaMax = Math.Max(deltaMax, delta);
            beta = Math.Max(beta, delta / (eta * gNorm));
        }
        return new LandscapeSample(loss, gNorm, lossMin, lossMax, deltaMin, deltaMax, beta);
    }

    private static double Finite(double v) => double.IsNaN(v) ? double.PositiveInfinity : v;
}

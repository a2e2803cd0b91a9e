namespace NormLab.Lab.Measures;

/// <summary>Reading learning curves: when a curve first reaches a level, and its highest point.</summary>
public static class Curves
{
    /// <summary>The first step at which <paramref name="values"/> is ≥ <paramref name="target"/> (NaN when it never is).</summary>
    public static double StepsToReach(IReadOnlyList<double> steps, IReadOnlyList<double> values, double target)
    {
        if (steps.Count != values.Count)
            throw new ArgumentException($"StepsToReach: {steps.Count} steps but {values.Count} values.");
        for (int k = 0; k < values.Count; k++)
            if (values[k] >= target)
                return steps[k];
        return double.NaN;
    }

    /// <summary>The highest value of a curve and the first step where it occurs ((NaN, NaN) for an empty curve).</summary>
    public static (double Step, double Value) Peak(IReadOnlyList<double> steps, IReadOnlyList<double> values)
    {
        if (steps.Count != values.Count)
            throw new ArgumentException($"Peak: {steps.Count} steps but {values.Count} values.");
        (double Step, double Value) best = (double.NaN, double.NaN);
        for (int k = 0; k < values.Count; k++)
            if (double.IsNaN(best.Value) || values[k] > best.Value)
                best = (steps[k], values[k]);
        return best;
    }
}

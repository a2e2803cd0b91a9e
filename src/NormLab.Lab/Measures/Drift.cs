namespace NormLab.Lab.Measures;

/// <summary>
/// How much a distribution moves over training, from its 15th/50th/85th percentiles recorded at successive times
/// (literature.md §6 E2): drift = Σ_t |Δ median| + |Δ(p85 − p15)|, divided by the final spread p85 − p15, so that
/// a layer's scale does not decide the comparison.
/// </summary>
public static class Drift
{
    /// <summary>The normalized drift of percentile series p15, p50, p85 (same length, in time order).</summary>
    public static double Of(ReadOnlySpan<double> p15, ReadOnlySpan<double> p50, ReadOnlySpan<double> p85)
    {
        if (p15.Length != p50.Length || p50.Length != p85.Length)
            throw new ArgumentException($"Drift: percentile series differ in length ({p15.Length}, {p50.Length}, {p85.Length}).");
        if (p50.Length < 2)
            return 0;
        double total = 0;
        for (int t = 1; t < p50.Length; t++)
            total += Math.Abs(p50[t] - p50[t - 1]) + Math.Abs((p85[t] - p15[t]) - (p85[t - 1] - p15[t - 1]));
        double spread = p85[^1] - p15[^1];
        return spread > 0 ? total / spread : double.PositiveInfinity;
    }

    /// <summary>The 15th, 50th and 85th percentiles of column <paramref name="unit"/> of a [rows, columns] matrix.</summary>
    public static (double P15, double P50, double P85) Percentiles(ReadOnlySpan<float> matrix, int rows, int columns, int unit)
    {
        var column = new double[rows];
        for (int i = 0; i < rows; i++)
            column[i] = matrix[i * columns + unit];
        Array.Sort(column);
        return (Stats.PercentileOfSorted(column, 15), Stats.PercentileOfSorted(column, 50), Stats.PercentileOfSorted(column, 85));
    }
}

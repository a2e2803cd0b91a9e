using System.Globalization;

namespace NormLab.Lab;

/// <summary>Number formatting for reports (invariant culture).</summary>
public static class Fmt
{
    /// <summary>A fraction as a percentage with <paramref name="decimals"/> decimals ("97.12 %").</summary>
    public static string Pct(double fraction, int decimals = 2) => (100 * fraction).ToString("F" + decimals, CultureInfo.InvariantCulture) + " %";

    /// <summary>Fixed-point.</summary>
    public static string F(double v, int decimals = 3) => v.ToString("F" + decimals, CultureInfo.InvariantCulture);

    /// <summary>General format with 3 significant digits.</summary>
    public static string G(double v) => v.ToString("G3", CultureInfo.InvariantCulture);

    /// <summary>Mean ± std of fractions as percentages.</summary>
    public static string PctMeanStd(IEnumerable<double> fractions, int decimals = 2)
    {
        var a = fractions.ToArray();
        return (100 * Measures.Stats.Mean(a)).ToString("F" + decimals, CultureInfo.InvariantCulture) + " ± "
            + (100 * Measures.Stats.Std(a)).ToString("F" + decimals, CultureInfo.InvariantCulture) + " %";
    }

    /// <summary>Mean ± std.</summary>
    public static string MeanStd(IEnumerable<double> values, int decimals = 3)
    {
        var a = values.ToArray();
        return F(Measures.Stats.Mean(a), decimals) + " ± " + F(Measures.Stats.Std(a), decimals);
    }

    /// <summary>An integer with thousands separators.</summary>
    public static string N(long v) => v.ToString("N0", CultureInfo.InvariantCulture);
}

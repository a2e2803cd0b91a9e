namespace NormLab.Lab.Measures;

/// <summary>Summary statistics the reports use.</summary>
public static class Stats
{
    /// <summary>Arithmetic mean (NaN for no values).</summary>
    public static double Mean(IEnumerable<double> values)
    {
        double sum = 0;
        int n = 0;
        foreach (var v in values)
        {
            sum += v;
            n++;
        }
        return n == 0 ? double.NaN : sum / n;
    }

    /// <summary>Sample standard deviation (n − 1; 0 for one value, NaN for none).</summary>
    public static double Std(IEnumerable<double> values)
    {
        var a = values.ToArray();
        if (a.Length == 0)
            return double.NaN;
        if (a.Length == 1)
            return 0;
        double m = a.Average();
        return Math.Sqrt(a.Sum(v => (v - m) * (v - m)) / (a.Length - 1));
    }

    /// <summary>
    /// The <paramref name="p"/>-th percentile (0..100) with linear interpolation between closest ranks (NumPy's default).
    /// </summary>
    public static double Percentile(ReadOnlySpan<double> values, double p)
    {
        if (values.Length == 0)
            return double.NaN;
        var sorted = values.ToArray();
        Array.Sort(sorted);
        return PercentileOfSorted(sorted, p);
    }

    /// <summary>Percentile of an already sorted array.</summary>
    public static double PercentileOfSorted(ReadOnlySpan<double> sorted, double p)
    {
        double rank = p / 100 * (sorted.Length - 1);
        int lo = (int)Math.Floor(rank), hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (rank - lo) * (sorted[hi] - sorted[lo]);
    }

    /// <summary>Median.</summary>
    public static double Median(IEnumerable<double> values) => Percentile(values.ToArray(), 50);

    /// <summary>Mean ± std as text.</summary>
    public static string MeanStd(IEnumerable<double> values, string format = "F4")
    {
        var a = values.ToArray();
        return $"{Mean(a).ToString(format, System.Globalization.CultureInfo.InvariantCulture)} ± {Std(a).ToString(format, System.Globalization.CultureInfo.InvariantCulture)}";
    }

    /// <summary>A percentage with one decimal, mean ± std over seeds, from fractions.</summary>
    public static string Percent(IEnumerable<double> fractions)
    {
        var a = fractions.Select(f => 100 * f).ToArray();
        return string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{Mean(a):F2} ± {Std(a):F2} %");
    }

    /// <summary>
    /// Mean and std over seeds, step by step, of <paramref name="metric"/>; steps are those every seed logged.
    /// </summary>
    public static (double[] Steps, double[] Mean, double[] Std) AcrossSeeds(IReadOnlyList<ArmResult> seeds, string metric)
    {
        var series = seeds.Select(r => r.Series(metric)).ToArray();
        if (series.Length == 0)
            return ([], [], []);
        var steps = series.Select(s => s.Steps.ToHashSet()).Aggregate((a, b) => { a.IntersectWith(b); return a; }).Order().ToArray();
        var mean = new double[steps.Length];
        var std = new double[steps.Length];
        for (int k = 0; k < steps.Length; k++)
        {
            var at = series.Select(s => s.Values[Array.IndexOf(s.Steps, steps[k])]).ToArray();
            mean[k] = Mean(at);
            std[k] = Std(at);
        }
        return (steps, mean, std);
    }
}

using System.Text.Json.Serialization;

namespace NormLab.Lab;

/// <summary>
/// Everything one arm logged for one seed: values by step (series) and single values (scalars). Saved as JSON next to the
/// report, so an interrupted lab run resumes without redoing finished arms.
/// </summary>
public sealed class ArmResult
{
    /// <summary>The arm's name (e.g. "bn", "baseline lr×5").</summary>
    public string Arm { get; init; } = "";

    /// <summary>The seed.</summary>
    public ulong Seed { get; init; }

    /// <summary>Step → metric → value.</summary>
    public SortedDictionary<long, SortedDictionary<string, double>> Rows { get; init; } = [];

    /// <summary>Single values (final accuracy, divergence step, timings).</summary>
    public SortedDictionary<string, double> Scalars { get; init; } = [];

    /// <summary>Wall-clock seconds the arm took.</summary>
    public double Seconds { get; set; }

    /// <summary>Logs <paramref name="value"/> of <paramref name="metric"/> at <paramref name="step"/>.</summary>
    public void Log(long step, string metric, double value)
    {
        if (!Rows.TryGetValue(step, out var row))
            Rows[step] = row = [];
        row[metric] = value;
    }

    /// <summary>Sets a single value.</summary>
    public void Set(string name, double value) => Scalars[name] = value;

    /// <summary>A single value (NaN when absent).</summary>
    public double Scalar(string name) => Scalars.TryGetValue(name, out var v) ? v : double.NaN;

    /// <summary>The steps at which <paramref name="metric"/> was logged and its values, in step order.</summary>
    public (double[] Steps, double[] Values) Series(string metric)
    {
        var hits = Rows.Where(r => r.Value.ContainsKey(metric)).ToArray();
        return (hits.Select(r => (double)r.Key).ToArray(), hits.Select(r => r.Value[metric]).ToArray());
    }

    /// <summary>The last logged value of <paramref name="metric"/> (NaN when never logged).</summary>
    public double Last(string metric)
    {
        var (_, v) = Series(metric);
        return v.Length == 0 ? double.NaN : v[^1];
    }

    /// <summary>Metric names logged in any row.</summary>
    [JsonIgnore]
    public IEnumerable<string> Metrics => Rows.Values.SelectMany(r => r.Keys).Distinct();
}

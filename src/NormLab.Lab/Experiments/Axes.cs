namespace NormLab.Lab.Experiments;

/// <summary>Axis choices for the experiments' charts.</summary>
internal static class Axes
{
    /// <summary>
    /// A log axis only where the values span more than two decades: the lab's log ticks label whole decades, so a
    /// narrower range would show a single labelled tick.
    /// </summary>
    public static bool Log(IEnumerable<double> values)
    {
        var positive = values.Where(v => double.IsFinite(v) && v > 0).ToArray();
        return positive.Length > 0 && positive.Max() / positive.Min() > 100;
    }
}

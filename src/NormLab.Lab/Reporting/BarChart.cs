using ScottPlot;

namespace NormLab.Lab.Reporting;

/// <summary>A bar chart of one value per category (mean over seeds, with ± std error bars), saved as PNG and SVG.</summary>
public sealed class BarChart
{
    /// <summary>The title.</summary>
    public required string Title { get; init; }

    /// <summary>The y axis label, with units.</summary>
    public required string YLabel { get; init; }

    /// <summary>(category, mean, std) in display order.</summary>
    public List<(string Label, double Mean, double Std)> Bars { get; } = [];

    /// <summary>Horizontal reference lines (e.g. chance, or BatchNorm's value) with labels.</summary>
    public List<(double Y, string Label)> HorizontalLines { get; } = [];

    /// <summary>Renders to <paramref name="folder"/>/<paramref name="stem"/>.png and .svg.</summary>
    public void Save(string folder, string stem, int width = 900, int height = 540)
    {
        PlotOutput.Save(Build, folder, stem, width, height);
    }

    private Plot Build(bool svg)
    {
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        var bars = Bars.Select((b, i) => new Bar
        {
            Position = i,
            Value = double.IsFinite(b.Mean) ? b.Mean : 0,
            Error = double.IsFinite(b.Std) ? b.Std : 0,
            FillColor = palette.GetColor(i),
        }).ToList();
        plot.Add.Bars(bars);
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, Bars.Count).Select(i => (double)i).ToArray(), Bars.Select(b => b.Label).ToArray());
        plot.Axes.Bottom.TickLabelStyle.Rotation = Bars.Count > 6 ? -35 : 0;
        plot.Axes.Bottom.TickLabelStyle.Alignment = Bars.Count > 6 ? Alignment.MiddleRight : Alignment.UpperCenter;
        foreach (var (y, label) in HorizontalLines)
            PlotOutput.ReferenceLine(plot, y, label, svg);
        plot.Axes.Margins(bottom: 0);
        plot.Title(Title);
        plot.YLabel(YLabel);
        if (HorizontalLines.Count > 0)
            plot.ShowLegend(Alignment.UpperRight);
        return plot;
    }
}

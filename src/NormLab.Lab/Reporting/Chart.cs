using ScottPlot;

namespace NormLab.Lab.Reporting;

/// <summary>A line of a chart: mean over seeds, with an optional shaded band (± std, or a min–max range).</summary>
/// <param name="Label">Legend text.</param>
/// <param name="X">X values.</param>
/// <param name="Y">Y values.</param>
/// <param name="Low">Lower edge of the band (none when null).</param>
/// <param name="High">Upper edge of the band.</param>
/// <param name="Dashed">Draws the line dashed (e.g. a second group of arms).</param>
/// <param name="Color">Palette index (the series' position when null), so related lines can share a colour.</param>
public sealed record Series(string Label, double[] X, double[] Y, double[]? Low = null, double[]? High = null, bool Dashed = false, int? Color = null)
{
    /// <summary>A mean line with a ± std band.</summary>
    public static Series MeanStd(string label, double[] x, double[] mean, double[] std, bool dashed = false, int? color = null) =>
        new(label, x, mean, mean.Zip(std, (m, s) => m - s).ToArray(), mean.Zip(std, (m, s) => m + s).ToArray(), dashed, color);
}

/// <summary>A line chart saved as PNG and SVG with ScottPlot: title, labelled axes with units, legend.</summary>
public sealed class Chart
{
    /// <summary>The title.</summary>
    public required string Title { get; init; }

    /// <summary>The x axis label, with units.</summary>
    public required string XLabel { get; init; }

    /// <summary>The y axis label, with units.</summary>
    public required string YLabel { get; init; }

    /// <summary>The lines.</summary>
    public List<Series> Lines { get; } = [];

    /// <summary>Logarithmic y axis (non-positive values are dropped).</summary>
    public bool LogY { get; init; }

    /// <summary>Logarithmic x axis (non-positive values are dropped).</summary>
    public bool LogX { get; init; }

    /// <summary>Draws markers at the points (for sparse x values such as batch sizes).</summary>
    public bool Markers { get; init; }

    /// <summary>Labels only whole numbers on the x axis (layer indices, counts).</summary>
    public bool IntegerX { get; init; }

    /// <summary>Puts the legend to the right of the data area instead of inside it (for charts whose lines fill the whole area).</summary>
    public bool LegendOutside { get; init; }

    /// <summary>Fixed x ticks (position, label), e.g. batch sizes on a log₂ axis; automatic ticks when null.</summary>
    public IReadOnlyList<(double X, string Label)>? XTicks { get; init; }

    /// <summary>Where the legend sits (lower right unless the lines need that corner).</summary>
    public Alignment Legend { get; init; } = Alignment.LowerRight;

    /// <summary>Horizontal reference lines (e.g. chance accuracy) with labels.</summary>
    public List<(double Y, string Label)> HorizontalLines { get; } = [];

    /// <summary>Adds a line; returns this chart.</summary>
    public Chart Add(Series s)
    {
        Lines.Add(s);
        return this;
    }

    /// <summary>Renders the chart to <paramref name="folder"/>/<paramref name="stem"/>.png and .svg.</summary>
    public void Save(string folder, string stem, int width = 900, int height = 540)
    {
        PlotOutput.Save(Build, folder, stem, width, height);
    }

    // In SVG a dashed line is drawn solid and thinner (see PlotOutput).
    private Plot Build(bool svg)
    {
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        for (int i = 0; i < Lines.Count; i++)
        {
            var s = Lines[i];
            var color = palette.GetColor(s.Color ?? i);
            var keep = Enumerable.Range(0, s.X.Length).Where(k => Usable(s.X[k], LogX) && Usable(s.Y[k], LogY)).ToArray();
            if (keep.Length == 0)
                continue;
            double[] xs = keep.Select(k => Tx(s.X[k], LogX)).ToArray();
            double[] ys = keep.Select(k => Tx(s.Y[k], LogY)).ToArray();
            if (s.Low is not null && s.High is not null)
            {
                var band = keep.Where(k => Usable(s.Low[k], LogY) && Usable(s.High[k], LogY)).ToArray();
                if (band.Length > 1)
                {
                    var fill = plot.Add.FillY(band.Select(k => Tx(s.X[k], LogX)).ToArray(),
                        band.Select(k => Tx(s.Low[k], LogY)).ToArray(), band.Select(k => Tx(s.High[k], LogY)).ToArray());
                    fill.FillColor = color.WithAlpha(0.18);
                    fill.LineWidth = 0;
                }
            }
            var line = plot.Add.Scatter(xs, ys);
            line.Color = color;
            line.LineWidth = 2;
            line.MarkerSize = Markers ? 7 : 0;
            line.LegendText = s.Label;
            if (s.Dashed && svg)
                line.LineWidth = 1;
            else if (s.Dashed)
                line.LinePattern = LinePattern.Dashed;
        }
        foreach (var (y, label) in HorizontalLines)
            if (Usable(y, LogY))
                PlotOutput.ReferenceLine(plot, Tx(y, LogY), label, svg);
        plot.Title(Title);
        plot.XLabel(XLabel);
        plot.YLabel(YLabel);
        if (LogY)
            plot.Axes.Left.TickGenerator = LogTicks();
        if (LogX)
            plot.Axes.Bottom.TickGenerator = LogTicks();
        else if (IntegerX)
            plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        if (XTicks is not null)
            plot.Axes.Bottom.SetTicks(XTicks.Select(t => Tx(t.X, LogX)).ToArray(), XTicks.Select(t => t.Label).ToArray());
        if (LegendOutside)
            plot.ShowLegend(Edge.Right);
        else
            plot.ShowLegend(Legend);
        return plot;
    }

    private static ScottPlot.TickGenerators.NumericAutomatic LogTicks() => new()
    {
        MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
        IntegerTicksOnly = true,
        LabelFormatter = v => LogLabel(Math.Pow(10, v)),
    };

    // Powers of ten read as 0.001 … 1000, and beyond as 1e4 (not "1E+03").
    private static string LogLabel(double v) => v is >= 1e-3 and < 1e4
        ? v.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture)
        : "1e" + Math.Round(Math.Log10(v)).ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static bool Usable(double v, bool log) => double.IsFinite(v) && (!log || v > 0);

    private static double Tx(double v, bool log) => log ? Math.Log10(v) : v;
}

using ScottPlot;

namespace NormLab.Lab.Reporting;

/// <summary>
/// What every chart shares: one plot built for PNG and one for SVG, and reference lines. Skia's SVG backend has no
/// dash effects (it prints "Unsupported path effect" and draws solid lines), so the SVG build draws patterns differently.
/// </summary>
internal static class PlotOutput
{
    /// <summary>Saves <paramref name="build"/>(svg: false) as STEM.png and <paramref name="build"/>(svg: true) as STEM.svg.</summary>
    public static void Save(Func<bool, Plot> build, string folder, string stem, int width, int height)
    {
        build(false).SavePng(Path.Combine(folder, stem + ".png"), width, height);
        build(true).SaveSvg(Path.Combine(folder, stem + ".svg"), width, height);
    }

    /// <summary>A grey horizontal reference line (dotted in PNG, thin and solid in SVG).</summary>
    public static void ReferenceLine(Plot plot, double y, string label, bool svg)
    {
        var h = plot.Add.HorizontalLine(y);
        h.LinePattern = svg ? LinePattern.Solid : LinePattern.Dotted;
        h.LineWidth = svg ? 0.75f : 1;
        h.Color = Colors.Gray;
        h.LegendText = label;
    }
}

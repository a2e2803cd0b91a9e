using System.Text;

namespace NormLab.Lab.Reporting;

/// <summary>The body of an experiment's report.md: setup, tables, plots, and the choices that were ours.</summary>
public sealed class ReportBuilder
{
    private readonly StringBuilder _body = new();
    private readonly List<string> _choices = [];
    private readonly List<string> _plots = [];
    private readonly List<ReportTable> _tables = [];
    private string _heading = "";

    /// <summary>A report whose plots go to <paramref name="folder"/>.</summary>
    public ReportBuilder(string folder) => Folder = folder;

    /// <summary>Where plots are written.</summary>
    public string Folder { get; }

    /// <summary>The body so far, as markdown.</summary>
    public string Body => _body.ToString();

    /// <summary>Details that the paper does not give and we chose (listed under their own heading).</summary>
    public IReadOnlyList<string> Choices => _choices;

    /// <summary>The tables written so far, each under the heading it follows (the CLI prints them).</summary>
    public IReadOnlyList<ReportTable> Tables => _tables;

    /// <summary>File stems of the plots written so far.</summary>
    public IReadOnlyList<string> Plots => _plots;

    /// <summary>Adds a section heading.</summary>
    public ReportBuilder Heading(string text)
    {
        _heading = text;
        _body.Append("\n## ").AppendLine(text).AppendLine();
        return this;
    }

    /// <summary>Adds a paragraph of markdown.</summary>
    public ReportBuilder Text(string markdown)
    {
        _body.AppendLine(markdown).AppendLine();
        return this;
    }

    /// <summary>Adds a bullet list.</summary>
    public ReportBuilder Bullets(IEnumerable<string> items)
    {
        foreach (var item in items)
            _body.Append("- ").AppendLine(item);
        _body.AppendLine();
        return this;
    }

    /// <summary>Records a detail that is our choice because the paper does not give it.</summary>
    public ReportBuilder Choice(string text)
    {
        _choices.Add(text);
        return this;
    }

    /// <summary>Adds a markdown table.</summary>
    public ReportBuilder Table(IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string>> rows)
    {
        rows = rows.Select(r => (IReadOnlyList<string>)r.ToArray()).ToArray();
        _tables.Add(new ReportTable(_heading, headers.ToArray(), rows.Select(r => r.ToArray()).ToArray()));
        _body.Append("| ").Append(string.Join(" | ", headers)).AppendLine(" |");
        _body.Append('|').Append(string.Concat(headers.Select(_ => "---|"))).AppendLine();
        foreach (var row in rows)
            _body.Append("| ").Append(string.Join(" | ", row.Select(c => c.Replace("|", "\\|")))).AppendLine(" |");
        _body.AppendLine();
        return this;
    }

    /// <summary>Saves a bar chart as STEM.png and STEM.svg and shows the PNG in the report.</summary>
    public ReportBuilder Plot(BarChart chart, string stem, string? caption = null)
    {
        chart.Save(Folder, stem);
        return Show(stem, caption ?? chart.Title, caption);
    }

    /// <summary>Saves <paramref name="chart"/> as STEM.png and STEM.svg and shows the PNG in the report.</summary>
    public ReportBuilder Plot(Chart chart, string stem, string? caption = null)
    {
        chart.Save(Folder, stem);
        return Show(stem, caption ?? chart.Title, caption);
    }

    private ReportBuilder Show(string stem, string alt, string? caption)
    {
        _plots.Add(stem);
        _body.Append("![").Append(alt).Append("](").Append(stem).AppendLine(".png)").AppendLine();
        if (caption is not null)
            _body.Append('*').Append(caption).AppendLine("*").AppendLine();
        return this;
    }
}

/// <summary>A table of a report: the heading it sits under, its column headers and its rows.</summary>
/// <param name="Heading">The section heading above it.</param>
/// <param name="Headers">Column headers.</param>
/// <param name="Rows">Cells, row by row.</param>
public sealed record ReportTable(string Heading, string[] Headers, string[][] Rows);

using System.Net;
using System.Text;
using System.Text.RegularExpressions;

namespace NormLab.Lab.Reporting;

/// <summary>
/// The lab book: every experiment that has been run, gathered into OUT/index.md and a self-contained OUT/index.html
/// (reports rendered, plots embedded) with a summary table: experiment, claim, published, ours, verdict.
/// </summary>
public static partial class LabBook
{
    /// <summary>Writes index.md and index.html; returns their paths, or throws when nothing has been run.</summary>
    public static (string Markdown, string Html) Write(string outDir)
    {
        var summaries = Lab.Summaries(outDir);
        if (summaries.Count == 0)
            throw new ArgumentException($"no experiment results under '{outDir}' (run `normlab lab NAME --out {outDir}` first)");
        string md = Markdown(summaries);
        string mdPath = Path.Combine(outDir, "index.md"), htmlPath = Path.Combine(outDir, "index.html");
        File.WriteAllText(mdPath, md);
        File.WriteAllText(htmlPath, Html(outDir, summaries));
        return (mdPath, htmlPath);
    }

    /// <summary>The summary table as markdown (also what the README shows); links point to NAME/report.md relative to <paramref name="linkPrefix"/>.</summary>
    public static string SummaryTable(IReadOnlyList<ExperimentSummary> summaries, string linkPrefix = "")
    {
        var sb = new StringBuilder();
        sb.AppendLine("| experiment | claim | published | ours | verdict |").AppendLine("|---|---|---|---|---|");
        foreach (var s in summaries)
            sb.Append("| [").Append(s.Name).Append("](").Append(linkPrefix).Append(s.Name).Append("/report.md) | ").Append(Cell(s.Claim)).Append(" | ")
              .Append(Cell(s.Published)).Append(" | ").Append(Cell(s.Ours)).Append(" | **").Append(s.Verdict.Text()).Append("** (").Append(s.Budget).AppendLine(") |");
        return sb.ToString();
    }

    private static string Cell(string s) => s.Replace("|", "\\|").Replace("\n", " ");

    private static string Markdown(IReadOnlyList<ExperimentSummary> summaries)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# NormLab lab book").AppendLine();
        sb.AppendLine("What the literature claims about batch normalization, tested on real data; each verdict comes from a criterion fixed before the run. Regenerate with `normlab lab all` then `normlab report`.").AppendLine();
        sb.Append(SummaryTable(summaries)).AppendLine();
        int reproduced = summaries.Count(s => s.Verdict == Verdict.Reproduced), partly = summaries.Count(s => s.Verdict == Verdict.Partly),
            not = summaries.Count(s => s.Verdict == Verdict.NotReproduced);
        sb.AppendLine($"{summaries.Count} experiment(s): {reproduced} reproduced, {partly} partly, {not} not reproduced, {summaries.Count - reproduced - partly - not} exploratory.");
        return sb.ToString();
    }

    private static string Html(string outDir, IReadOnlyList<ExperimentSummary> summaries)
    {
        var sb = new StringBuilder();
        sb.AppendLine("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>NormLab lab book</title><style>")
          .AppendLine("body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;line-height:1.45}")
          .AppendLine("table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}th{background:#f3f3f3}")
          .AppendLine("img{max-width:100%}code{background:#f3f3f3;padding:1px 3px}section{border-top:2px solid #444;margin-top:3em}")
          .AppendLine(".reproduced{color:#176f2c;font-weight:bold}.partly{color:#9a6700;font-weight:bold}.not{color:#b3261e;font-weight:bold}")
          .AppendLine("</style></head><body>");
        sb.AppendLine("<h1>NormLab lab book</h1><p>What the literature claims about batch normalization, tested on real data; each verdict comes from a criterion fixed before the run.</p>");
        sb.AppendLine("<table><tr><th>experiment</th><th>claim</th><th>published</th><th>ours</th><th>verdict</th></tr>");
        foreach (var s in summaries)
            sb.Append("<tr><td><a href=\"#").Append(s.Name).Append("\">").Append(E(s.Name)).Append("</a></td><td>").Append(E(s.Claim)).Append("</td><td>")
              .Append(E(s.Published)).Append("</td><td>").Append(E(s.Ours)).Append("</td><td class=\"").Append(Css(s.Verdict)).Append("\">")
              .Append(E(s.Verdict.Text())).Append(" (").Append(s.Budget).AppendLine(")</td></tr>");
        sb.AppendLine("</table>");
        foreach (var s in summaries)
        {
            string folder = Path.Combine(outDir, s.Name);
            string report = Path.Combine(folder, "report.md");
            sb.Append("<section id=\"").Append(s.Name).AppendLine("\">");
            sb.AppendLine(File.Exists(report) ? ToHtml(File.ReadAllText(report), folder) : $"<h2>{E(s.Title)}</h2><p>(report.md missing)</p>");
            sb.AppendLine("</section>");
        }
        sb.AppendLine("</body></html>");
        return sb.ToString();
    }

    private static string Css(Verdict v) => v switch { Verdict.Reproduced => "reproduced", Verdict.Partly => "partly", Verdict.NotReproduced => "not", _ => "" };

    private static string E(string s) => WebUtility.HtmlEncode(s);

    /// <summary>Renders the markdown the lab writes (headings, paragraphs, bullets, tables, images, bold, italics, code) with images embedded.</summary>
    internal static string ToHtml(string markdown, string folder)
    {
        var sb = new StringBuilder();
        var lines = markdown.Replace("\r", "").Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i];
            if (line.StartsWith('#'))
            {
                int level = line.TakeWhile(c => c == '#').Count();
                sb.Append($"<h{level}>").Append(Inline(line[level..].Trim(), folder)).AppendLine($"</h{level}>");
            }
            else if (line.StartsWith("| "))
            {
                sb.AppendLine("<table>");
                bool header = true;
                for (; i < lines.Length && lines[i].StartsWith('|'); i++)
                {
                    if (lines[i].StartsWith("|---") || lines[i].StartsWith("|:--"))
                        continue;
                    var cells = CellSplit().Split(lines[i].Trim().Trim('|')).Select(c => c.Trim().Replace("\\|", "|"));
                    string tag = header ? "th" : "td";
                    sb.Append("<tr>").Append(string.Concat(cells.Select(c => $"<{tag}>{Inline(c, folder)}</{tag}>"))).AppendLine("</tr>");
                    header = false;
                }
                i--;
                sb.AppendLine("</table>");
            }
            else if (line.StartsWith("- "))
            {
                sb.AppendLine("<ul>");
                for (; i < lines.Length && lines[i].StartsWith("- "); i++)
                    sb.Append("<li>").Append(Inline(lines[i][2..], folder)).AppendLine("</li>");
                i--;
                sb.AppendLine("</ul>");
            }
            else if (line.Trim().Length > 0)
                sb.Append("<p>").Append(Inline(line, folder)).AppendLine("</p>");
        }
        return sb.ToString();
    }

    private static string Inline(string text, string folder)
    {
        var parts = new List<string>();
        string s = E(text);
        s = Image().Replace(s, m =>
        {
            string file = Path.Combine(folder, WebUtility.HtmlDecode(m.Groups[2].Value));
            return File.Exists(file)
                ? $"<img alt=\"{m.Groups[1].Value}\" src=\"data:image/png;base64,{Convert.ToBase64String(File.ReadAllBytes(file))}\">"
                : $"[missing plot {m.Groups[2].Value}]";
        });
        s = Link().Replace(s, "<a href=\"#$2\">$1</a>");
        s = Code().Replace(s, "<code>$1</code>");
        s = Bold().Replace(s, "<strong>$1</strong>");
        s = Italic().Replace(s, "<em>$1</em>");
        return s;
    }

    [GeneratedRegex(@"(?<!\\)\|")]
    private static partial Regex CellSplit();

    [GeneratedRegex(@"!\[([^\]]*)\]\(([^)]+\.png)\)")]
    private static partial Regex Image();

    [GeneratedRegex(@"(?<!!)\[([^\]]+)\]\(([^)/]+)/report\.md\)")]
    private static partial Regex Link();

    [GeneratedRegex(@"`([^`]+)`")]
    private static partial Regex Code();

    [GeneratedRegex(@"\*\*([^*]+)\*\*")]
    private static partial Regex Bold();

    [GeneratedRegex(@"(?<![*\w])\*([^*]+)\*(?![*\w])")]
    private static partial Regex Italic();
}

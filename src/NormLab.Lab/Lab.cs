using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace NormLab.Lab;

/// <summary>
/// What an experiment's run concluded, saved as summary.json beside its report (the lab book reads these). Seconds is the
/// time the arms took to compute, also when they were loaded from an earlier, interrupted run.
/// </summary>
public sealed record ExperimentSummary(string Name, string Title, string Claim, string Published, string Ours, Verdict Verdict,
    string Criterion, IReadOnlyList<Check> Checks, string Budget, int Seeds, double Seconds, string Date, IReadOnlyList<string> Plots,
    IReadOnlyList<Reporting.ReportTable> Tables);

/// <summary>The experiments and how one runs: arms, metrics.csv, plots, report.md and summary.json.</summary>
public static class Lab
{
    /// <summary>Every experiment, in the lab's order (found by reflection: an experiment is a file).</summary>
    public static IReadOnlyList<Experiment> All { get; } = typeof(Lab).Assembly.GetTypes()
        .Where(t => t.IsSubclassOf(typeof(Experiment)) && !t.IsAbstract && t.GetConstructor(Type.EmptyTypes) is not null)
        .Select(t => (Experiment)Activator.CreateInstance(t)!)
        .OrderBy(e => e.Order).ThenBy(e => e.Name, StringComparer.Ordinal)
        .ToArray();

    /// <summary>The experiment called <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentException">No experiment has that name.</exception>
    public static Experiment Find(string name) => All.FirstOrDefault(e => e.Name == name)
        ?? throw new ArgumentException($"unknown experiment '{name}' (known: {string.Join(", ", All.Select(e => e.Name))}, all)");

    /// <summary>
    /// Runs <paramref name="experiment"/> (finished arms of an earlier run with the same budget are loaded, not redone) and
    /// writes OUT/NAME/metrics.csv, the plots, report.md and summary.json.
    /// </summary>
    public static ExperimentSummary Run(Experiment experiment, LabOptions options, LabData data)
    {
        var clock = Stopwatch.StartNew();
        var run = new LabRun(experiment, options, data);
        var finding = experiment.Run(run);
        run.WriteMetrics();
        var summary = new ExperimentSummary(experiment.Name, experiment.Title, experiment.Claim, experiment.Published, finding.Ours,
            finding.Verdict, experiment.Criterion, finding.Checks, options.Budget.ToString().ToLowerInvariant(), options.Seeds,
            Math.Round(Math.Max(clock.Elapsed.TotalSeconds, run.Results.Sum(r => r.Seconds)), 1), DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture), run.Report.Plots,
            run.Report.Tables);
        File.WriteAllText(Path.Combine(run.Folder, "report.md"), Render(summary, run));
        File.WriteAllText(Path.Combine(run.Folder, "summary.json"), JsonSerializer.Serialize(summary, SummaryJson));
        options.Log($"{experiment.Name}: {finding.Verdict.Text()} — {finding.Ours} ({clock.Elapsed.TotalSeconds:F0} s); report {Path.Combine(run.Folder, "report.md")}");
        return summary;
    }

    internal static readonly JsonSerializerOptions SummaryJson = new()
    {
        WriteIndented = true,
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() },
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    private static string Render(ExperimentSummary s, LabRun run)
    {
        var md = new StringBuilder();
        md.Append("# ").AppendLine(s.Title).AppendLine();
        md.Append("`normlab lab ").Append(s.Name).Append(s.Budget == "full" ? " --full" : s.Budget == "tiny" ? " (tiny test budget)" : "")
          .Append("` · budget **").Append(s.Budget).Append("** · ").Append(s.Seeds).Append(" seed(s) per arm · ")
          .Append(s.Seconds.ToString("F0", CultureInfo.InvariantCulture)).Append(" s · ").AppendLine(s.Date).AppendLine();
        md.AppendLine("## The claim").AppendLine().AppendLine(s.Claim).AppendLine();
        md.AppendLine("## Published and ours").AppendLine();
        md.AppendLine("| | result |").AppendLine("|---|---|");
        md.Append("| published | ").Append(s.Published.Replace("|", "\\|")).AppendLine(" |");
        md.Append("| ours | ").Append(s.Ours.Replace("|", "\\|")).AppendLine(" |").AppendLine();
        md.Append("## Verdict: ").AppendLine(s.Verdict.Text()).AppendLine();
        md.Append("Criterion, fixed before the run (`literature.md` §6 or the issue): ").AppendLine(s.Criterion).AppendLine();
        if (s.Checks.Count > 0)
        {
            md.AppendLine("| requirement | measured | holds |").AppendLine("|---|---|---|");
            foreach (var c in s.Checks)
                md.Append("| ").Append(c.Requirement.Replace("|", "\\|")).Append(" | ").Append(c.Measured.Replace("|", "\\|")).Append(" | ")
                  .AppendLine(c.Passed ? "yes |" : "no |");
            md.AppendLine();
        }
        if (s.Budget != "full")
            md.AppendLine($"This is the **{s.Budget}** budget (fewer steps than the paper); `--full` runs the paper-scale budget.").AppendLine();
        md.Append(run.Report.Body);
        if (run.Report.Choices.Count > 0)
        {
            md.AppendLine().AppendLine("## Our choices (the paper does not give these)").AppendLine();
            foreach (var c in run.Report.Choices)
                md.Append("- ").AppendLine(c);
            md.AppendLine();
        }
        md.AppendLine("## Files").AppendLine();
        md.AppendLine("`metrics.csv` (one row per arm × seed × step), the plots as PNG and SVG, `summary.json`, and `arms/` (each finished arm, so an interrupted run resumes).");
        return md.ToString();
    }

    /// <summary>Summaries of every experiment that has a summary.json under <paramref name="outDir"/>, in the lab's order.</summary>
    public static IReadOnlyList<ExperimentSummary> Summaries(string outDir)
    {
        var found = new List<ExperimentSummary>();
        if (!Directory.Exists(outDir))
            return found;
        foreach (var dir in Directory.GetDirectories(outDir))
        {
            string file = Path.Combine(dir, "summary.json");
            if (!File.Exists(file))
                continue;
            try
            {
                if (JsonSerializer.Deserialize<ExperimentSummary>(File.ReadAllText(file), SummaryJson) is { } s)
                    found.Add(s);
            }
            catch (JsonException e)
            {
                throw new NormLabFormatException($"{file}: not a lab summary ({e.Message}).");
            }
        }
        var order = All.Select(e => e.Name).ToList();
        return found.OrderBy(s => order.IndexOf(s.Name) is var i && i < 0 ? int.MaxValue : i).ThenBy(s => s.Name, StringComparer.Ordinal).ToArray();
    }
}

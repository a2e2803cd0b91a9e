using System.Text.Json;
using NormLab.Lab;

namespace NormLab.Tests.Lab;

/// <summary>
/// Every experiment of the lab runs end to end on its tiny budget: the files it must write exist and are well formed,
/// and the verdict follows from the criterion's checks (not the scientific outcome, which the tiny budget cannot show).
/// </summary>
[Collection("lab")]
public sealed class LabExperimentTests
{
    public static TheoryData<string> Names()
    {
        var data = new TheoryData<string>();
        foreach (var e in NormLab.Lab.Lab.All)
            data.Add(e.Name);
        return data;
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void RunsEndToEndAndJudgesByItsChecks(string name)
    {
        using var dir = new LabFolder();
        var lines = new List<string>();
        var summary = LabHarness.RunTiny(name, dir.Path, lines);
        string folder = Path.Combine(dir.Path, name);

        Assert.True(File.Exists(Path.Combine(folder, "report.md")));
        Assert.True(File.Exists(Path.Combine(folder, "summary.json")));
        string report = File.ReadAllText(Path.Combine(folder, "report.md"));
        Assert.Contains("## Verdict: " + summary.Verdict.Text(), report);
        Assert.Contains(summary.Published.Replace("|", "\\|"), report);
        Assert.Contains("tiny", report);

        // metrics.csv: a header with arm, seed, step, then one row per arm × seed × step, every row as wide as the header.
        var csv = File.ReadAllLines(Path.Combine(folder, "metrics.csv"));
        Assert.StartsWith("arm,seed,step,", csv[0]);
        Assert.True(csv.Length > 1, "metrics.csv has no rows");
        int columns = csv[0].Split(',').Length;
        Assert.All(csv.Skip(1), row => Assert.Equal(columns, SplitCsv(row).Length));

        // Plots: every one the report shows exists as PNG and SVG, and is a real image.
        Assert.NotEmpty(summary.Plots);
        foreach (var stem in summary.Plots)
        {
            Assert.Contains($"({stem}.png)", report);
            var png = File.ReadAllBytes(Path.Combine(folder, stem + ".png"));
            Assert.True(png.Length > 1000 && png[1] == (byte)'P' && png[2] == (byte)'N' && png[3] == (byte)'G', $"{stem}.png is not a PNG");
            Assert.Contains("<svg", File.ReadAllText(Path.Combine(folder, stem + ".svg")));
        }

        // The verdict is the criterion's: all checks hold → reproduced, none → not, some → partly; exploratory has none.
        var read = JsonSerializer.Deserialize<ExperimentSummary>(File.ReadAllText(Path.Combine(folder, "summary.json")), NormLab.Lab.Lab.SummaryJson)!;
        Assert.Equal(summary.Verdict, read.Verdict);
        if (summary.Verdict == Verdict.Exploratory)
            Assert.Empty(summary.Checks);
        else
        {
            Assert.NotEmpty(summary.Checks);
            Assert.Equal(Verdicts.FromChecks(summary.Checks), summary.Verdict);
        }
        Assert.False(string.IsNullOrWhiteSpace(summary.Ours));
    }

    private static string[] SplitCsv(string row)
    {
        var cells = new List<string>();
        var cell = new System.Text.StringBuilder();
        bool quoted = false;
        foreach (char c in row)
        {
            if (c == '"')
                quoted = !quoted;
            else if (c == ',' && !quoted)
            {
                cells.Add(cell.ToString());
                cell.Clear();
            }
            else
                cell.Append(c);
        }
        cells.Add(cell.ToString());
        return [.. cells];
    }
}

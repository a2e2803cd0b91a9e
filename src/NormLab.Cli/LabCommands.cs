using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using NormLab.Lab;
using NormLab.Lab.Reporting;

namespace NormLab.Cli;

/// <summary><c>normlab lab NAME</c> and <c>normlab report</c>.</summary>
internal static class LabCommands
{
    public static Command Lab(TextWriter log, TextWriter err, bool interactive)
    {
        var name = new Argument<string>("name") { Description = $"experiment: {string.Join(", ", NormLab.Lab.Lab.All.Select(e => e.Name))}, or all" };
        var quick = new Option<bool>("--quick") { Description = "a few minutes per experiment on two cores (the default)" };
        var full = new Option<bool>("--full") { Description = "the paper-scale budget (e.g. 50,000 steps for ioffe-mnist)" };
        var seeds = new Option<int>("--seeds") { Description = "seeds per arm (results are mean ± std)", DefaultValueFactory = _ => 3 };
        var outDir = new Option<string>("--out") { Description = "lab folder; each experiment writes OUT/NAME", DefaultValueFactory = _ => "lab" };
        var threads = new Option<int>("--threads") { Description = "worker threads (results are the same for any number)", DefaultValueFactory = _ => Environment.ProcessorCount };
        var restart = new Option<bool>("--restart") { Description = "redo every arm instead of resuming from the finished ones" };
        var cmd = new Command("lab", "Run an experiment of the lab: arms over several seeds, metrics.csv, plots and report.md with a verdict.")
        {
            name, quick, full, seeds, outDir, threads, restart,
        };
        cmd.SetAction(p => Commands.Guard(err, () =>
        {
            if (p.GetValue(quick) && p.GetValue(full))
                throw new ArgumentException("give at most one of --quick and --full");
            int n = p.GetValue(seeds);
            if (n is < 1 or > 100)
                throw new ArgumentException($"--seeds must be between 1 and 100, got {n}");
            if (p.GetValue(threads) is < 1 or > 1024)
                throw new ArgumentException($"--threads must be between 1 and 1024, got {p.GetValue(threads)}");
            string which = p.GetValue(name)!;
            var experiments = which == "all" ? NormLab.Lab.Lab.All : [NormLab.Lab.Lab.Find(which)];
            Threading.Team.SetSize(p.GetValue(threads));
            string output = p.GetValue(outDir)!;
            var budget = p.GetValue(full) ? Budget.Full : Budget.Quick;
            string dataRoot = Path.GetDirectoryName(Datasets.Locate("mnist-10k"))!;
            var data = new LabData(dataRoot);
            if (p.GetValue(restart))
                foreach (var e in experiments)
                    if (Directory.Exists(Path.Combine(output, e.Name, "arms")))
                        Directory.Delete(Path.Combine(output, e.Name, "arms"), recursive: true);
            var summaries = new List<ExperimentSummary>();
            if (!interactive)
                foreach (var e in experiments)
                    summaries.Add(NormLab.Lab.Lab.Run(e, new LabOptions(output, budget, n, dataRoot) { Log = log.WriteLine }, data));
            else
                AnsiConsole.Progress()
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                    .Start(ctx =>
                    {
                        foreach (var e in experiments)
                        {
                            var task = ctx.AddTask(Markup.Escape(e.Name), maxValue: 1);
                            long shown = 0;
                            var options = new LabOptions(output, budget, n, dataRoot)
                            {
                                Log = line => AnsiConsole.MarkupLine(Markup.Escape(line)),
                                Progress = s =>
                                {
                                    long now = Environment.TickCount64;
                                    if (now - shown < 200)
                                        return;
                                    shown = now;
                                    task.Value = s.Fraction;
                                    string eta = s.Eta is { } t ? $", {t:hh\\:mm\\:ss} left" : "";
                                    task.Description = Markup.Escape(string.Create(CultureInfo.InvariantCulture, $"{e.Name}: {s.Arm}, seed {s.Seed}{eta}"));
                                },
                            };
                            summaries.Add(NormLab.Lab.Lab.Run(e, options, data));
                            task.Value = 1;
                            task.Description = Markup.Escape(e.Name);
                        }
                    });
            // The experiments' own tables first (for ioffe-mnist: accuracy with and without BN), then the verdicts.
            foreach (var s in summaries)
                foreach (var t in s.Tables)
                    PrintTable(log, interactive, $"{s.Name}: {t.Heading}", t.Headers, t.Rows);
            if (interactive)
            {
                var table = new Table().RoundedBorder().AddColumns("experiment", "ours", "verdict");
                foreach (var s in summaries)
                    table.AddRow(Markup.Escape(s.Name), Markup.Escape(s.Ours), Markup.Escape(s.Verdict.Text()));
                AnsiConsole.Write(table);
            }
            else
                foreach (var s in summaries)
                    log.WriteLine($"{s.Name}: {s.Verdict.Text()}: {s.Ours}");
            var (md, html) = LabBook.Write(output);
            log.WriteLine($"reports in {output}/NAME/report.md; lab book {md} and {html}");
            return 0;
        }));
        return cmd;
    }

    private static void PrintTable(TextWriter log, bool interactive, string title, string[] headers, string[][] rows)
    {
        if (interactive)
        {
            var table = new Table().RoundedBorder().Title(Markup.Escape(title)).AddColumns(headers.Select(h => new TableColumn(Markup.Escape(h))).ToArray());
            foreach (var row in rows)
                table.AddRow(row.Select(Markup.Escape).ToArray());
            AnsiConsole.Write(table);
            return;
        }
        log.WriteLine(title);
        log.WriteLine("| " + string.Join(" | ", headers) + " |");
        log.WriteLine("|" + string.Concat(headers.Select(_ => "---|")));
        foreach (var row in rows)
            log.WriteLine("| " + string.Join(" | ", row) + " |");
    }

    public static Command Report(TextWriter log, TextWriter err)
    {
        var outDir = new Option<string>("--out") { Description = "the lab folder given to normlab lab", DefaultValueFactory = _ => "lab" };
        var cmd = new Command("report", "Gather every experiment run so far into one lab book: OUT/index.md and a self-contained OUT/index.html.") { outDir };
        cmd.SetAction(p => Commands.Guard(err, () =>
        {
            var (md, html) = LabBook.Write(p.GetValue(outDir)!);
            log.WriteLine($"lab book: {md} and {html}");
            return 0;
        }));
        return cmd;
    }
}

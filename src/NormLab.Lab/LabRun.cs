using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using NormLab.Lab.Reporting;

namespace NormLab.Lab;

/// <summary>Where a lab run stands, for a progress display.</summary>
/// <param name="Experiment">The experiment's name.</param>
/// <param name="Arm">The arm running now.</param>
/// <param name="Seed">Its seed.</param>
/// <param name="Fraction">Fraction of the experiment done (0..1).</param>
/// <param name="Eta">Estimated time left (null until something has been measured).</param>
public readonly record struct LabProgress(string Experiment, string Arm, ulong Seed, double Fraction, TimeSpan? Eta);

/// <summary>Options of a lab run.</summary>
/// <param name="Out">The lab folder; an experiment writes into Out/NAME.</param>
/// <param name="Budget">Tiny, quick or full.</param>
/// <param name="Seeds">Seeds per arm (the seeds are 1..Seeds).</param>
/// <param name="DataRoot">A folder holding mnist-10k/ and fashion-mnist/ (IDX files).</param>
public sealed record LabOptions(string Out, Budget Budget, int Seeds, string DataRoot)
{
    /// <summary>Receives one line per finished arm and other news.</summary>
    public Action<string> Log { get; init; } = _ => { };

    /// <summary>Receives progress (throttled by the caller).</summary>
    public Action<LabProgress>? Progress { get; init; }
}

/// <summary>
/// One experiment's run: its folder, budget and seeds, the data, the arms (cached on disk as they finish), the report
/// being written, and the metrics table.
/// </summary>
public sealed class LabRun
{
    private readonly List<ArmResult> _results = [];
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private int _planned = 1, _started;
    private double _currentFraction;
    private string _currentArm = "";
    private ulong _currentSeed;

    /// <summary>Creates the run for <paramref name="experiment"/>; its folder is created.</summary>
    public LabRun(Experiment experiment, LabOptions options, LabData data)
    {
        Experiment = experiment;
        Options = options;
        Data = data;
        Folder = Path.Combine(options.Out, experiment.Name);
        Directory.CreateDirectory(Path.Combine(Folder, "arms"));
        Seeds = Enumerable.Range(1, options.Seeds).Select(s => (ulong)s).ToArray();
        Report = new ReportBuilder(Folder);
    }

    /// <summary>The experiment.</summary>
    public Experiment Experiment { get; }

    /// <summary>The options.</summary>
    public LabOptions Options { get; }

    /// <summary>Tiny, quick or full.</summary>
    public Budget Budget => Options.Budget;

    /// <summary>The seeds every arm runs with.</summary>
    public IReadOnlyList<ulong> Seeds { get; }

    /// <summary>The shipped datasets (loaded once per process).</summary>
    public LabData Data { get; }

    /// <summary>This experiment's output folder.</summary>
    public string Folder { get; }

    /// <summary>The report's body (setup, tables, plots, choices); the lab adds the claim, published result and verdict.</summary>
    public ReportBuilder Report { get; }

    /// <summary>Every arm result so far (all seeds), in run order.</summary>
    public IReadOnlyList<ArmResult> Results => _results;

    /// <summary>Picks a value by budget.</summary>
    public T Pick<T>(T tiny, T quick, T full) => Budget switch { Budget.Tiny => tiny, Budget.Quick => quick, _ => full };

    /// <summary>Declares how many arm × seed runs follow (for the progress display's fraction and ETA).</summary>
    public void Plan(int armRuns) => _planned = Math.Max(1, armRuns);

    /// <summary>
    /// Runs <paramref name="body"/> for one arm and seed, or loads its result when a previous run of the same budget
    /// finished it. The body logs into the given <see cref="ArmResult"/> and reports its progress (0..1) through the callback.
    /// </summary>
    public ArmResult Arm(string arm, ulong seed, Action<ArmResult, Action<double>> body)
    {
        string file = Path.Combine(Folder, "arms", $"{Budget.ToString().ToLowerInvariant()}-{Slug(arm)}-seed{seed}.json");
        _currentArm = arm;
        _currentSeed = seed;
        _currentFraction = 0;
        ArmResult? result = null;
        if (File.Exists(file))
        {
            try
            {
                result = JsonSerializer.Deserialize<ArmResult>(File.ReadAllText(file));
            }
            catch (JsonException)
            {
                result = null;   // a damaged cache entry is simply recomputed
            }
            if (result is not null && (result.Arm != arm || result.Seed != seed))
                result = null;
            if (result is not null)
                Options.Log($"{Experiment.Name}: {arm}, seed {seed}: done before, loaded from {file}");
        }
        if (result is null)
        {
            result = new ArmResult { Arm = arm, Seed = seed };
            var clock = Stopwatch.StartNew();
            Report1(0);
            body(result, Report1);
            result.Seconds = clock.Elapsed.TotalSeconds;
            string tmp = file + ".tmp";
            File.WriteAllText(tmp, JsonSerializer.Serialize(result, JsonOptions));
            File.Move(tmp, file, overwrite: true);
            Options.Log(string.Create(CultureInfo.InvariantCulture, $"{Experiment.Name}: {arm}, seed {seed}: {result.Seconds:F1} s"));
        }
        _started++;
        _results.Add(result);
        return result;
    }

    /// <summary>Runs an arm for every seed.</summary>
    public ArmResult[] ArmAllSeeds(string arm, Action<ArmResult, ulong, Action<double>> body) =>
        Seeds.Select(seed => Arm(arm, seed, (r, p) => body(r, seed, p))).ToArray();

    private void Report1(double fraction)
    {
        _currentFraction = Math.Clamp(fraction, 0, 1);
        if (Options.Progress is null)
            return;
        double done = Math.Min(1, (_started + _currentFraction) / _planned);
        TimeSpan? eta = done > 0.001 ? TimeSpan.FromSeconds(_clock.Elapsed.TotalSeconds * (1 - done) / done) : null;
        Options.Progress(new LabProgress(Experiment.Name, _currentArm, _currentSeed, done, eta));
    }

    /// <summary>Writes metrics.csv: one row per arm × seed × step, a column per metric (empty where an arm did not log it).</summary>
    public string WriteMetrics()
    {
        string path = Path.Combine(Folder, "metrics.csv");
        var metrics = _results.SelectMany(r => r.Metrics).Distinct().ToArray();
        using var w = new StreamWriter(path);
        w.WriteLine("arm,seed,step," + string.Join(",", metrics));
        foreach (var r in _results)
            foreach (var (step, row) in r.Rows)
                w.WriteLine(string.Join(",", new[] { Csv(r.Arm), r.Seed.ToString(CultureInfo.InvariantCulture), step.ToString(CultureInfo.InvariantCulture) }
                    .Concat(metrics.Select(m => row.TryGetValue(m, out var v) ? v.ToString("R", CultureInfo.InvariantCulture) : ""))));
        return path;
    }

    /// <summary>Results of one arm, all seeds.</summary>
    public ArmResult[] Of(string arm) => _results.Where(r => r.Arm == arm).ToArray();

    private static string Csv(string s) => s.Contains(',') || s.Contains('"') ? "\"" + s.Replace("\"", "\"\"") + "\"" : s;

    private static string Slug(string s) => new(s.Select(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' ? c : '_').ToArray());

    internal static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = false, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };
}

using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using Perfolizer.Horology;

namespace NormLab.Benchmarks;

/// <summary>One measured figure: a workload on one side at one thread count, in one round of the comparison.</summary>
public sealed record Result(string Side, string Workload, int Threads, string Malloc, double MedianMs, double OtherLoad, long? AllocatedBytes,
    int Round = 0);

/// <summary>
/// NormLab and PyTorch side by side: for each group of workloads, NormLab under BenchmarkDotNet, then the PyTorch peer on
/// the same workloads, group after group, so that both sides of a row run minutes apart at most on this noisy machine.
/// With <c>--rounds R</c> the compared groups run R times over, and each row reports the median of its R speedups and
/// their range: the machine's speed drifts over minutes, and one round's verdict on a row near its target is a coin toss.
/// Writes docs/benchmarks.md (the table) and docs/benchmarks.json (every figure).
/// </summary>
public static class Compare
{
    private static readonly string[] Groups = ["stream", "bn2d", "bn1d", "gemm", "step", "fold", "family"];

    public static int Run(string[] args)
    {
        string root = RepoRoot();
        string peer = Path.Combine(root, "bench/NormLab.Peer/bin/Release/net10.0/linux-x64/NormLab.Peer");
        string output = Path.Combine(root, "docs");
        var groups = Groups.ToList();
        bool quick = false;
        int rounds = 1;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--peer": peer = args[++i]; break;
                case "--out": output = args[++i]; break;
                case "--groups": groups = args[++i].Split(',').ToList(); break;
                case "--quick": quick = true; break;
                case "--rounds" when i + 1 < args.Length && int.TryParse(args[i + 1], out rounds) && rounds >= 1: i++; break;
                case "--rounds": Console.Error.WriteLine("compare: --rounds takes a whole number of at least 1"); return 2;
                default: Console.Error.WriteLine($"compare: unknown option {args[i]}"); return 2;
            }
        }
        if (!File.Exists(peer))
        {
            Console.Error.WriteLine($"compare: the PyTorch peer is not built ({peer}); run scripts/bench.sh, which builds it.");
            return 2;
        }
        var results = new List<Result>();
        // NormLab only, once: the roofline first, folding BN and the norm family (issue 6) last.
        static bool Alone(string group) => group is "stream" or "fold" or "family";
        foreach (var group in groups.Where(g => g == "stream"))
            results.AddRange(RunNormLab(group, quick, 0));
        for (int round = 0; round < rounds; round++)
            foreach (var group in groups.Where(g => !Alone(g)))
            {
                results.AddRange(RunNormLab(group, quick, round));
                foreach (int threads in new[] { 1, 2 })
                {
                    results.AddRange(RunPeer(peer, group, threads, "reuse", quick, round));
                    if (group.StartsWith("bn", StringComparison.Ordinal))
                        results.AddRange(RunPeer(peer, group, threads, "default", quick, round));
                }
            }
        foreach (var group in groups.Where(g => Alone(g) && g != "stream"))
            results.AddRange(RunNormLab(group, quick, 0));
        Directory.CreateDirectory(output);
        File.WriteAllText(Path.Combine(output, "benchmarks.json"), JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true }));
        string table = Report.Markdown(results);
        File.WriteAllText(Path.Combine(output, "benchmarks.md"), table);
        Console.WriteLine(table);
        return 0;
    }

    private static IEnumerable<Result> RunNormLab(string group, bool quick, int round)
    {
        var type = group switch
        {
            "stream" => typeof(StreamBenchmarks),
            "bn2d" => typeof(BatchNorm2dBenchmarks),
            "bn1d" => typeof(BatchNorm1dBenchmarks),
            "gemm" => typeof(GemmBenchmarks),
            "step" => typeof(StepBenchmarks),
            "fold" => typeof(FoldBenchmarks),
            "family" => typeof(FamilyBenchmarks),
            _ => throw new ArgumentException($"unknown group {group}"),
        };
        var job = Job.Default.WithToolchain(InProcessEmitToolchain.Instance).WithLaunchCount(1)
            .WithWarmupCount(quick ? 1 : 3).WithIterationCount(quick ? 3 : 11)
            .WithIterationTime(TimeInterval.FromMilliseconds(quick ? 25 : 100));
        var config = ManualConfig.CreateEmpty().AddJob(job).AddDiagnoser(MemoryDiagnoser.Default).AddLogger(NullLogger.Instance)
            .AddColumnProvider(DefaultColumnProviders.Instance).WithArtifactsPath(Path.Combine(Path.GetTempPath(), "normlab-bdn"));
        Console.Error.WriteLine($"NormLab: {group}, round {round + 1} ...");
        var before = CpuSample.Now();
        var summary = BenchmarkRunner.Run(type, config);
        double load = CpuSample.OtherLoad(before, CpuSample.Now());
        foreach (var report in summary.Reports)
        {
            if (report.ResultStatistics is not { } stats)
                continue;
            var p = report.BenchmarkCase.Parameters;
            yield return new Result("normlab", (string)p["Workload"], (int)p["Threads"], "", stats.Median / 1e6, load,
                report.GcStats.GetBytesAllocatedPerOperation(report.BenchmarkCase), round);
        }
    }

    private static IEnumerable<Result> RunPeer(string peer, string group, int threads, string malloc, bool quick, int round)
    {
        Console.Error.WriteLine($"PyTorch: {group}, {threads} thread(s), malloc {malloc}, round {round + 1} ...");
        var psi = new ProcessStartInfo(peer) { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { "bench", "--threads", threads.ToString(CultureInfo.InvariantCulture), "--group", group, "--malloc", malloc,
            "--seconds", quick ? "0.3" : "1.5" })
            psi.ArgumentList.Add(a);
        var before = CpuSample.Now();
        using var process = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {peer}");
        var lines = new List<string>();
        while (process.StandardOutput.ReadLine() is { } line)
            lines.Add(line);
        process.WaitForExit();
        double load = CpuSample.OtherLoad(before, CpuSample.Now());
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"the peer failed (exit {process.ExitCode}) on {group}");
        foreach (var line in lines.Where(l => l.StartsWith('{')))
        {
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            yield return new Result("pytorch", r.GetProperty("workload").GetString()!, threads, malloc, r.GetProperty("median_ms").GetDouble(), load, null, round);
        }
    }

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "NormLab.slnx")))
                return dir.FullName;
        return Directory.GetCurrentDirectory();
    }
}

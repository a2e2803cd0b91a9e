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
/// NormLab and PyTorch side by side: each workload at each thread count is timed on NormLab (BenchmarkDotNet) and at once
/// on PyTorch (a peer process that stays up and answers one request per row), so that both figures of a row are taken
/// seconds apart, under the same load from the machine's neighbours, which comes and goes over tens of seconds.
/// With <c>--rounds R</c> every row is timed R times over, and reports the median of its R speedups and their range.
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
        var compared = groups.Where(g => !Alone(g)).ToList();
        if (compared.Count > 0)
        {
            using var reuse = new PeerServer(peer, "reuse");
            using var plain = compared.Any(IsBatchNorm) ? new PeerServer(peer, "default") : null;
            double seconds = quick ? 0.3 : 1.5;
            WarmUp(compared.SelectMany(Workloads.Group), quick ? 0.05 : 0.2);
            for (int round = 0; round < rounds; round++)
                foreach (var group in compared)
                    foreach (var workload in Workloads.Group(group))
                        foreach (int threads in new[] { 1, 2 })
                        {
                            WorkloadBenchmark.Only = (workload.Name, threads);
                            try
                            {
                                results.AddRange(RunNormLab(group, quick, round));
                            }
                            finally
                            {
                                WorkloadBenchmark.Only = null;
                            }
                            results.Add(reuse.Run(workload.Name, threads, seconds, round));
                            if (plain is not null && IsBatchNorm(group))
                                results.Add(plain.Run(workload.Name, threads, seconds, round));
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

    // Every compared workload run for a moment at each thread count before any row is timed: each row has a
    // BenchmarkDotNet run of its own, and the first rows would otherwise meet methods still in their first JIT tier.
    private static void WarmUp(IEnumerable<Workload> workloads, double seconds)
    {
        Console.Error.WriteLine("NormLab: warming up ...");
        foreach (var workload in workloads)
            foreach (int threads in new[] { 1, 2 })
            {
                NormLab.Threading.Team.SetSize(threads);
                var run = workload.Make();
                var clock = Stopwatch.StartNew();
                do
                    run();
                while (clock.Elapsed.TotalSeconds < seconds);
            }
    }

    private static bool IsBatchNorm(string group) => group.StartsWith("bn", StringComparison.Ordinal);

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
        string what = WorkloadBenchmark.Only is { } only ? $"{only.Workload}, {only.Threads} thread(s)" : group;
        Console.Error.WriteLine($"NormLab: {what}, round {round + 1} ...");
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

    /// <summary>The PyTorch peer's <c>serve</c> mode: one process per malloc setting (mallopt is process-wide), kept up
    /// for the whole comparison, so that a row costs no libtorch start-up.</summary>
    private sealed class PeerServer : IDisposable
    {
        private readonly Process _process;
        private readonly string _malloc;

        public PeerServer(string peer, string malloc)
        {
            _malloc = malloc;
            var psi = new ProcessStartInfo(peer) { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
            foreach (var a in new[] { "serve", "--malloc", malloc })
                psi.ArgumentList.Add(a);
            _process = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {peer}");
        }

        public Result Run(string workload, int threads, double seconds, int round)
        {
            Console.Error.WriteLine($"PyTorch: {workload}, {threads} thread(s), malloc {_malloc}, round {round + 1} ...");
            var before = CpuSample.Now(_process.Id);
            _process.StandardInput.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{workload} {threads} {seconds}"));
            _process.StandardInput.Flush();
            string? line;
            while ((line = _process.StandardOutput.ReadLine()) is not null && !line.StartsWith('{'))
            {
            }
            double load = CpuSample.OtherLoad(before, CpuSample.Now(_process.Id));
            if (line is null)
                throw new InvalidOperationException($"the PyTorch peer (malloc {_malloc}) stopped on {workload}");
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            if (r.TryGetProperty("error", out var error))
                throw new InvalidOperationException($"the PyTorch peer refused {workload}: {error.GetString()}");
            return new Result("pytorch", workload, threads, _malloc, r.GetProperty("median_ms").GetDouble(), load, null, round);
        }

        public void Dispose()
        {
            _process.StandardInput.Close();
            if (!_process.WaitForExit(10_000))
                _process.Kill();
            _process.Dispose();
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

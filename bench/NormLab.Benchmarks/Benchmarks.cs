using BenchmarkDotNet.Attributes;
using NormLab.Threading;

namespace NormLab.Benchmarks;

/// <summary>Times one workload of a group (its name is the parameter) on a team of 1 or 2 threads.</summary>
[MemoryDiagnoser]
public abstract class WorkloadBenchmark
{
    private Action _run = () => { };

    /// <summary>Limits the next run to one workload at one thread count (the comparison times each row on its own, right
    /// before PyTorch's); null runs every workload of the group at 1 and 2 threads.</summary>
    public static (string Workload, int Threads)? Only { get; set; }

    [ParamsSource(nameof(ThreadCounts))]
    public int Threads { get; set; }

    public static IEnumerable<int> ThreadCounts => Only is { } only ? [only.Threads] : [1, 2];

    public abstract string Workload { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        Team.SetSize(Threads);
        _run = Workloads.All.Single(w => w.Name == Workload).Make();
        _run(); // first use sizes every buffer
    }

    [Benchmark]
    public void Run() => _run();

    protected static IEnumerable<string> Names(string group) =>
        Workloads.Group(group).Select(w => w.Name).Where(name => Only is not { } only || only.Workload == name);
}

public class StreamBenchmarks : WorkloadBenchmark
{
    [ParamsSource(nameof(All))]
    public override string Workload { get; set; } = "";

    public static IEnumerable<string> All => Names("stream");
}

public class BatchNorm2dBenchmarks : WorkloadBenchmark
{
    [ParamsSource(nameof(All))]
    public override string Workload { get; set; } = "";

    public static IEnumerable<string> All => Names("bn2d");
}

public class BatchNorm1dBenchmarks : WorkloadBenchmark
{
    [ParamsSource(nameof(All))]
    public override string Workload { get; set; } = "";

    public static IEnumerable<string> All => Names("bn1d");
}

public class GemmBenchmarks : WorkloadBenchmark
{
    [ParamsSource(nameof(All))]
    public override string Workload { get; set; } = "";

    public static IEnumerable<string> All => Names("gemm");
}

public class FoldBenchmarks : WorkloadBenchmark
{
    [ParamsSource(nameof(All))]
    public override string Workload { get; set; } = "";

    public static IEnumerable<string> All => Names("fold");
}

public class StepBenchmarks : WorkloadBenchmark
{
    [ParamsSource(nameof(All))]
    public override string Workload { get; set; } = "";

    public static IEnumerable<string> All => Names("step");
}

public class FamilyBenchmarks : WorkloadBenchmark
{
    [ParamsSource(nameof(All))]
    public override string Workload { get; set; } = "";

    public static IEnumerable<string> All => Names("family");
}

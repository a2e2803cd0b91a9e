using System.Globalization;
using System.Text;

namespace NormLab.Benchmarks;

/// <summary>The comparison table in Markdown: ratios first, then throughput against the measured roofline.</summary>
public static class Report
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>The issue's targets, as PyTorch time ÷ NormLab time on two threads.</summary>
    public static double? Target(string workload) => workload switch
    {
        _ when workload.StartsWith("bn2d/train+backward/", StringComparison.Ordinal) => 3,
        _ when workload.StartsWith("bn2d/train/", StringComparison.Ordinal) => 4,
        _ when workload.StartsWith("bn2d/eval/", StringComparison.Ordinal) => 1.3,
        "bn1d/train+backward/60x100" => 10,
        _ when workload.StartsWith("bn1d/", StringComparison.Ordinal) && !workload.EndsWith("/60x100", StringComparison.Ordinal) => 2,
        _ when workload.StartsWith("gemm/", StringComparison.Ordinal) => 1.5,
        "step/mlp-bn" or "step/mlp" => 3,
        "step/cnn-bn" => 2,
        "step/cnn" => 1.5,
        _ => null,
    };

    public static string Markdown(IReadOnlyList<Result> results)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# NormLab vs PyTorch: benchmarks");
        sb.AppendLine();
        sb.AppendLine(Inv, $"Measured {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC on {Machine()}; regenerate with `scripts/bench.sh`.");
        sb.AppendLine("NormLab: BenchmarkDotNet medians (in process, MemoryDiagnoser). PyTorch 2.10 CPU through TorchSharp: medians of timed samples,");
        sb.AppendLine("with freed blocks reused (`mallopt(M_MMAP_MAX, 0)` and no trimming of the heap) so that kernel meets kernel; the *default malloc* column is what a");
        sb.AppendLine("TorchSharp user gets. Each row is timed on NormLab and right after on PyTorch (a peer process that stays up), so that");
        sb.AppendLine("both figures of a row meet the same load from the machine's neighbours.");
        sb.AppendLine("Speedup = PyTorch time ÷ NormLab time; the target column is the issue's, on two threads.");
        sb.AppendLine("*Load* is the share of the machine's CPU that other processes used while that side ran (this machine is shared).");
        sb.AppendLine();

        IEnumerable<Result> Of(string workload, int threads, string side, string malloc) =>
            results.Where(r => r.Side == side && r.Workload == workload && r.Threads == threads && (side == "normlab" || r.Malloc == malloc));
        // Over the rounds: the median of each side's medians, and the median and range of the per-round speedups.
        double Median(string workload, int threads, string side = "normlab", string malloc = "") =>
            MedianOf(Of(workload, threads, side, malloc).Select(r => r.MedianMs));
        (double Median, double Low, double High, int Rounds) Speedup(string workload, int threads)
        {
            var ours = Of(workload, threads, "normlab", "").ToDictionary(r => r.Round, r => r.MedianMs);
            var ratios = Of(workload, threads, "pytorch", "reuse").Where(r => ours.ContainsKey(r.Round))
                .Select(r => r.MedianMs / ours[r.Round]).ToList();
            return ratios.Count == 0 ? (double.NaN, double.NaN, double.NaN, 0) : (MedianOf(ratios), ratios.Min(), ratios.Max(), ratios.Count);
        }
        int rounds = results.Select(r => r.Round).DefaultIfEmpty(0).Max() + 1;
        if (rounds > 1)
        {
            sb.AppendLine(Inv, $"Every compared row was timed {rounds} times over; times are the medians over the rounds, the");
            sb.AppendLine("speedup is the median of the rounds' speedups with their range in brackets, and the verdict is on that median.");
            sb.AppendLine();
        }
        var all = Workloads.All.ToDictionary(w => w.Name);
        double Rate(string name, int threads)
        {
            var w = all[name];
            double seconds = Median(name, threads) / 1e3;
            return w.Flops > 0 ? w.Flops / seconds / 1e9 : w.Bytes / seconds / 1e9;
        }

        sb.AppendLine("## Roofline");
        sb.AppendLine();
        sb.AppendLine("| measure | 1 thread | 2 threads |");
        sb.AppendLine("|---|---|---|");
        foreach (var w in Workloads.Group("stream"))
            sb.AppendLine(Inv, $"| {w.Name} | {Rate(w.Name, 1):F1} {(w.Flops > 0 ? "GFLOP/s" : "GB/s")} | {Rate(w.Name, 2):F1} {(w.Flops > 0 ? "GFLOP/s" : "GB/s")} |");
        sb.AppendLine();

        var fold = Workloads.Group("fold").Select(w => w.Name).Where(n => results.Any(r => r.Workload == n)).ToList();
        if (fold.Count == 2)
        {
            sb.AppendLine("## Folding BatchNorm into the convolutions (NormLab only; the CNN in eval mode, batch 128)");
            sb.AppendLine();
            sb.AppendLine("| threads | with BN ms | folded ms | speedup |");
            sb.AppendLine("|---|---|---|---|");
            foreach (int threads in new[] { 1, 2 })
            {
                double plain = Median(fold[0], threads), folded = Median(fold[1], threads);
                sb.AppendLine(Inv, $"| {threads} | {Ms(plain)} | {Ms(folded)} | {plain / folded:F2}× |");
            }
            sb.AppendLine();
        }

        var family = Workloads.Group("family").Select(w => w.Name).Where(n => results.Any(r => r.Workload == n)).ToList();
        if (family.Contains("family/cnn-batch"))
        {
            sb.AppendLine("## The normalization family (NormLab only; a training step of the CNN, batch 128, with each `--norm`)");
            sb.AppendLine();
            sb.AppendLine("| --norm | 1 thread ms | × BN | 2 threads ms | × BN |");
            sb.AppendLine("|---|---|---|---|---|");
            foreach (var name in family)
            {
                sb.Append(Inv, $"| {name["family/cnn-".Length..]} |");
                foreach (int threads in new[] { 1, 2 })
                    sb.Append(Inv, $" {Ms(Median(name, threads))} | {Median(name, threads) / Median("family/cnn-batch", threads):F2}× |");
                sb.AppendLine();
            }
            sb.AppendLine();
        }

        foreach (var (group, title) in new[] { ("bn2d", "BatchNorm2d"), ("bn1d", "BatchNorm1d"), ("gemm", "SGEMM"), ("step", "Training steps") })
        {
            var names = Workloads.Group(group).Select(w => w.Name).Where(n => results.Any(r => r.Workload == n)).ToList();
            if (names.Count == 0)
                continue;
            bool bn = group.StartsWith("bn", StringComparison.Ordinal), gemm = group == "gemm";
            sb.AppendLine(Inv, $"## {title}");
            sb.AppendLine();
            sb.Append("| workload | threads | NormLab ms | PyTorch ms | speedup | target |");
            sb.Append(bn ? " PyTorch default malloc ms | GB/s | % of roofline |" : gemm ? " GFLOP/s | % of FMA peak |" : " NormLab steps/s |");
            sb.AppendLine(" NormLab B/op | load NormLab / PyTorch |");
            sb.Append("|---|---|---|---|---|---|");
            sb.Append(bn ? "---|---|---|" : gemm ? "---|---|" : "---|");
            sb.AppendLine("---|---|");
            foreach (var name in names)
                foreach (int threads in new[] { 1, 2 })
                {
                    double ours = Median(name, threads), theirs = Median(name, threads, "pytorch", "reuse");
                    var speedup = Speedup(name, threads);
                    double? target = threads == 2 ? Target(name) : null;
                    string verdict = target is { } t ? $"≥ {t:0.#}× {(speedup.Median >= t ? "✓" : "✗")}" : "";
                    string range = speedup.Rounds > 1 ? $" [{speedup.Low:F2}–{speedup.High:F2}]" : "";
                    long? allocated = Of(name, threads, "normlab", "").Max(r => r.AllocatedBytes);
                    double ourLoad = MedianOf(Of(name, threads, "normlab", "").Select(r => r.OtherLoad));
                    double theirLoad = MedianOf(Of(name, threads, "pytorch", "reuse").Select(r => r.OtherLoad));
                    sb.Append(Inv, $"| {name} | {threads} | {Ms(ours)} | {Ms(theirs)} | {speedup.Median:F2}×{range} | {verdict} |");
                    if (bn)
                    {
                        double gbs = Rate(name, threads), roof = Rate("stream/copy-nontemporal", threads);
                        sb.Append(Inv, $" {Ms(Median(name, threads, "pytorch", "default"))} | {gbs:F1} | {100 * gbs / roof:F0} % |");
                    }
                    else if (gemm)
                    {
                        double gflops = Rate(name, threads), peak = Rate("stream/fma-peak", threads);
                        sb.Append(Inv, $" {gflops:F1} | {100 * gflops / peak:F0} % |");
                    }
                    else
                        sb.Append(Inv, $" {1e3 / ours:F0} |");
                    sb.AppendLine(Inv, $" {allocated?.ToString(Inv) ?? "?"} | {100 * ourLoad:F0} % / {100 * theirLoad:F0} % |");
                }
            sb.AppendLine();
        }
        return sb.ToString();
    }

    private static double MedianOf(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count == 0 ? double.NaN : sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }

    private static string Ms(double ms) => double.IsNaN(ms) ? "—" : ms >= 1 ? ms.ToString("F2", Inv) : ms.ToString("G3", Inv);

    private static string Machine() => NormLab.Benchmarks.CpuSample.Description();
}

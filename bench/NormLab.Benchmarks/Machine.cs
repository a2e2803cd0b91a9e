using System.Globalization;

namespace NormLab.Benchmarks;

/// <summary>
/// How busy the machine is with other processes: CPU time from /proc/stat minus this process's own and its waited-for
/// children's (the peer), over a window. The machine is shared, so every figure is reported with the load it ran under.
/// </summary>
public readonly record struct CpuSample(long Busy, long Total, long Own)
{
    /// <summary>The machine's counters now; the CPU time of <paramref name="child"/> (a process this one runs but has not
    /// waited for, such as the PyTorch peer's server) counts as this process's own.</summary>
    public static CpuSample Now(int? child = null)
    {
        if (!File.Exists("/proc/stat"))
            return default;
        var cpu = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1)
            .Select(v => long.Parse(v, CultureInfo.InvariantCulture)).ToArray();
        long idle = cpu[3] + cpu[4];
        long total = cpu.Take(8).Sum();
        // /proc/self/stat: fields 14-17 are utime, stime, cutime, cstime; the name (field 2) may hold spaces, so split after ')'.
        string self = File.ReadAllText("/proc/self/stat");
        var fields = self[(self.LastIndexOf(')') + 2)..].Split(' ');
        long own = Enumerable.Range(11, 4).Sum(i => long.Parse(fields[i], CultureInfo.InvariantCulture));
        if (child is { } pid && File.Exists($"/proc/{pid}/stat"))
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            var childFields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            own += Enumerable.Range(11, 2).Sum(i => long.Parse(childFields[i], CultureInfo.InvariantCulture));
        }
        return new CpuSample(total - idle, total, own);
    }

    /// <summary>Share of the machine's CPU capacity used by other processes between two samples (0 to 1).</summary>
    public static double OtherLoad(CpuSample before, CpuSample after)
    {
        long total = after.Total - before.Total;
        if (total <= 0)
            return double.NaN;
        return Math.Clamp((double)(after.Busy - before.Busy - (after.Own - before.Own)) / total, 0, 1);
    }

    public static string Description()
    {
        string model = File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "?"
            : "?";
        string isa = System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "AVX-512"
            : System.Runtime.Intrinsics.X86.Fma.IsSupported ? "AVX2 + FMA (no AVX-512)" : "no AVX2";
        return $"{model}, {Environment.ProcessorCount} cores, {isa}, .NET {Environment.Version}";
    }
}

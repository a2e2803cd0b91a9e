using System.Diagnostics;
using System.Reflection;
using TorchSharp;

namespace NormLab.Peer;

/// <summary>
/// Settings that make libtorch's CPU results bit-reproducible: one thread, MKL's conditional
/// numerical reproducibility in its most portable mode, and ATen / oneDNN kernels pinned to
/// the baseline instruction set so that another x86-64 machine computes the same bits.
/// They must be in the environment before libtorch loads; .NET cannot change the native
/// environment of a running process, so <see cref="RelaunchIfNeeded"/> re-runs the program.
/// </summary>
internal static class PeerEnvironment
{
    public static readonly IReadOnlyList<(string Name, string Value)> Pinned =
    [
        ("MKL_CBWR", "COMPATIBLE"),
        ("OMP_NUM_THREADS", "1"),
        ("MKL_NUM_THREADS", "1"),
        ("ATEN_CPU_CAPABILITY", "default"),
        ("ONEDNN_MAX_CPU_ISA", "SSE41"),
        ("DNNL_MAX_CPU_ISA", "SSE41"),
    ];

    private const string RelaunchedMarker = "NORMLAB_PEER_RELAUNCHED";

    /// <summary>Null when the environment is already pinned; else the child's exit code.</summary>
    public static int? RelaunchIfNeeded(string[] args)
    {
        var missing = Pinned.Where(p => Environment.GetEnvironmentVariable(p.Name) != p.Value).ToList();
        if (missing.Count == 0)
        {
            return null;
        }
        if (Environment.GetEnvironmentVariable(RelaunchedMarker) == "1")
        {
            throw new InvalidOperationException(
                "environment still not pinned after relaunch: " + string.Join(", ", missing.Select(m => m.Name)));
        }
        string exe = Environment.ProcessPath ?? throw new InvalidOperationException("no process path");
        var psi = new ProcessStartInfo(exe) { UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(exe) == "dotnet")
        {
            psi.ArgumentList.Add(Assembly.GetExecutingAssembly().Location);
        }
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }
        foreach (var (name, value) in Pinned)
        {
            psi.Environment[name] = value;
        }
        psi.Environment[RelaunchedMarker] = "1";
        using var child = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {exe}");
        child.WaitForExit();
        return child.ExitCode;
    }

    /// <summary>Call once before any tensor work.</summary>
    public static void InitTorch()
    {
        torch.set_num_threads(1);
        torch.set_num_interop_threads(1);
    }

    public static string TorchVersion => torch.__version__;

    public static string TorchSharpVersion =>
        typeof(torch).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(torch).Assembly.GetName().Version?.ToString() ?? "unknown";
}

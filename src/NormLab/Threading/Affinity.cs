using System.Runtime.InteropServices;

namespace NormLab.Threading;

/// <summary>Pins a thread to one CPU (Linux only; elsewhere, or if the call fails, the thread stays unpinned).</summary>
/// <remarks>
/// Two team workers that the scheduler puts on one core make every parallel call wait for a time slice; pinning worker k
/// to the k-th CPU this process may use keeps them apart. The caller's thread is left alone: it belongs to the user.
/// </remarks>
internal static partial class Affinity
{
    private const int MaskBytes = 128; // 1024 CPUs

    public static void PinCurrentThread(int index)
    {
        if (!OperatingSystem.IsLinux())
            return;
        try
        {
            Span<byte> allowed = stackalloc byte[MaskBytes];
            if (SchedGetAffinity(0, MaskBytes, ref MemoryMarshal.GetReference(allowed)) != 0)
                return;
            var cpus = new List<int>();
            for (int cpu = 0; cpu < MaskBytes * 8; cpu++)
                if ((allowed[cpu / 8] & (1 << (cpu % 8))) != 0)
                    cpus.Add(cpu);
            if (cpus.Count < 2)
                return;
            int chosen = cpus[index % cpus.Count];
            Span<byte> mask = stackalloc byte[MaskBytes];
            mask.Clear();
            mask[chosen / 8] = (byte)(1 << (chosen % 8));
            _ = SchedSetAffinity(0, MaskBytes, ref MemoryMarshal.GetReference(mask));
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
        }
    }

    [LibraryImport("libc", EntryPoint = "sched_getaffinity")]
    private static partial int SchedGetAffinity(int pid, nint size, ref byte mask);

    [LibraryImport("libc", EntryPoint = "sched_setaffinity")]
    private static partial int SchedSetAffinity(int pid, nint size, ref byte mask);
}

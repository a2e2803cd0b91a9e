namespace NormLab.Tests.Support;

/// <summary>Measures what a steady-state step allocates on the calling thread.</summary>
internal static class Allocations
{
    /// <summary>Bytes allocated by <paramref name="repeats"/> calls of <paramref name="step"/> after <paramref name="warmup"/> calls.</summary>
    /// <remarks>A collection before measuring clears what the runtime caches weakly (e.g. reflection's per-type caches
    /// behind <c>GetType().Name</c>), as other tests running in parallel do at random: per-step code must not rely on them.</remarks>
    /// <remarks>The least of three measurements: a test in another class that resizes the thread team moves work onto
    /// this thread, whose pools (ArrayPool's per-thread buckets, a kernel's per-thread buffer) then fill once. A step
    /// that allocates allocates in every measurement; a resize lands in one.</remarks>
    public static long Steady(Action step, int warmup = 3, int repeats = 5)
    {
        for (int i = 0; i < warmup; i++)
            step();
        long least = long.MaxValue;
        for (int attempt = 0; attempt < 3 && least > 0; attempt++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < repeats; i++)
                step();
            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        return least;
    }
}

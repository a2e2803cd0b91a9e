using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace NormLab.Threading;

/// <summary>
/// The library's one team of worker threads. <see cref="For{TArgs}"/> splits <c>[0, count)</c> statically into
/// <see cref="Size"/> contiguous ranges; the calling thread runs the first, each worker one of the others. A size above
/// the number of cores keeps its split, but the ranges are dealt round-robin to one thread per core: more runnable threads
/// than cores would make every call wait for a time slice.
/// </summary>
/// <remarks>
/// <para>Why not <c>Parallel.For</c>: a parallel call here must cost about a microsecond, and on a shared two-core machine
/// thread-pool workers that sleep at once when idle cost 0.5–8 ms per call. The workers spin for a short while after each
/// call (so that the next call of a training step, microseconds later, finds them awake), then block; each is pinned to its own core.</para>
/// <para>Determinism: the split depends on <see cref="Size"/>, so a body must give the same result for any split of
/// <c>[0, count)</c> — each index writes its own outputs, and any reduction across indices runs over a fixed grouping
/// chosen by the caller (never over the thread ranges). Then results are bit-identical whatever the team size.</para>
/// <para>Calls never nest and never overlap: a call from inside a body, or from a second thread while the team is busy,
/// runs its whole range on the calling thread, which gives the same result by the rule above.</para>
/// <para>No allocation per call: the body is a static function pointer and its arguments a struct on the caller's stack.</para>
/// </remarks>
public static unsafe class Team
{
    private static readonly long SpinTicks = Stopwatch.Frequency / 200; // 5 ms of spinning before a worker blocks
    private static readonly object Gate = new();
    private static Worker[] _workers = [];
    private static int _size = 1;
    private static int _threads = 1;
    private static int _busy;
    [ThreadStatic] private static bool _inBody;

    // The job being run; written by the caller before it publishes a new generation.
    private static void* _args;
    private static delegate*<void*, int, int, void> _body;
    private static int _count;
    private static long _generation;
    private static int _pending;
    private static long[] _claims = new long[1]; // per part: the generation of the last call that claimed it
    private static int _sleepers;
    private static Exception? _failure;

    static Team() => SetSize(Environment.ProcessorCount);

    /// <summary>Number of threads a parallel call uses, the caller included (1 = everything on the calling thread).</summary>
    public static int Size => _size;

    /// <summary>Sets the team size (the CLI's <c>--threads</c>); waits for a running call to finish first.</summary>
    public static void SetSize(int threads)
    {
        if (threads < 1 || threads > 1024)
            throw new ArgumentOutOfRangeException(nameof(threads), threads, "The number of threads must be between 1 and 1024.");
        // Taking the team (not Gate: a running call may need Gate to wake sleepers) serializes with calls and other resizes.
        var spin = new SpinWait();
        while (Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
            spin.SpinOnce();
        try
        {
            int running = Math.Min(threads, Environment.ProcessorCount);
            for (int t = _workers.Length; t < running - 1; t++)
                Array.Resize(ref _workers, t + 1);
            for (int t = 0; t < running - 1; t++)
                _workers[t] ??= new Worker(t + 1);
            if (_claims.Length < threads)
            {
                // New parts start as claimed by the last call, so a late worker of that call cannot take them.
                var claims = new long[threads];
                claims.AsSpan().Fill(Volatile.Read(ref _generation));
                _claims.CopyTo(claims, 0);
                _claims = claims;
            }
            _size = threads;
            _threads = running;
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>
    /// Runs <paramref name="body"/>(args, begin, end) over a static split of <c>[0, count)</c> and returns when all ranges
    /// are done. <paramref name="args"/> must be a local of the caller (it is read through a pointer by the workers).
    /// An exception thrown by any range is rethrown here, as it would be if the whole range ran on the caller.
    /// </summary>
    public static void For<TArgs>(int count, ref TArgs args, delegate*<ref TArgs, int, int, void> body)
        where TArgs : allows ref struct
    {
        if (count <= 0)
            return;
        int size = _size;
        if (size == 1 || count == 1 || _inBody || Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            RunInline(count, ref args, body);
            return;
        }
        size = _size; // SetSize may have run between the read above and taking the team
        int threads = _threads;
        try
        {
            _args = Unsafe.AsPointer(ref args);
            _body = (delegate*<void*, int, int, void>)body;
            _count = count;
            _failure = null;
            Volatile.Write(ref _pending, size);
            long generation = Interlocked.Increment(ref _generation);
            if (Volatile.Read(ref _sleepers) > 0)
                lock (Gate)
                    Monitor.PulseAll(Gate);
            _inBody = true;
            try
            {
                // The caller's own parts first, then any part no worker has started (a worker the scheduler has not run
                // yet must not hold the call up; who runs a part does not change its result).
                for (int part = 0; part < size; part += threads)
                    RunPart(generation, part, size, count);
                for (int part = 0; part < size; part++)
                    RunPart(generation, part, size, count);
            }
            finally
            {
                _inBody = false;
                var spin = new SpinWait();
                while (Volatile.Read(ref _pending) > 0)
                    spin.SpinOnce(sleep1Threshold: -1);
            }
            if (_failure is { } failure)
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
        }
        finally
        {
            _args = null;
            Volatile.Write(ref _busy, 0);
        }
    }

    // Runs part `part` of call `generation` unless someone has claimed it; records the first failure.
    private static void RunPart(long generation, int part, int size, int count)
    {
        var claims = _claims;
        long old = Volatile.Read(ref claims[part]);
        if (old >= generation || Interlocked.CompareExchange(ref claims[part], generation, old) != old)
            return;
        try
        {
            int begin = RangeEnd(part - 1, count, size), end = RangeEnd(part, count, size);
            if (begin < end)
                _body(_args, begin, end);
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _failure, e, null);
        }
        finally
        {
            Interlocked.Decrement(ref _pending);
        }
    }

    private static void RunInline<TArgs>(int count, ref TArgs args, delegate*<ref TArgs, int, int, void> body)
        where TArgs : allows ref struct
    {
        bool outer = !_inBody;
        _inBody = true;
        try
        {
            body(ref args, 0, count);
        }
        finally
        {
            if (outer)
                _inBody = false;
        }
    }

    /// <summary>End of range <paramref name="part"/> of a static split of <c>[0, count)</c> into <paramref name="parts"/>.</summary>
    public static int RangeEnd(int part, int count, int parts) => (int)((long)count * (part + 1) / parts);

    private sealed class Worker
    {
        private readonly int _index;
        private long _seen;

        // Created while the caller holds the team, so no call is in flight: the worker starts from the current generation
        // (reading it on the new thread could skip a call published before the thread got going).
        public Worker(int index)
        {
            _index = index;
            _seen = Volatile.Read(ref _generation);
            var thread = new Thread(Loop, maxStackSize: 1 << 20) { IsBackground = true, Name = $"NormLab team {index}" };
            thread.Start();
        }

        private void Loop()
        {
            Affinity.PinCurrentThread(_index);
            _inBody = true; // a worker never starts a nested parallel call
            long seen = _seen;
            while (true)
            {
                seen = WaitForWork(seen);
                // A worker that wakes up late may see a newer call's fields; its claims, stamped with the generation it
                // saw, then all fail, so it never runs a part of a call it did not read.
                int size = _size, threads = _threads, count = _count;
                if (_index < threads)
                    for (int part = _index; part < Math.Min(size, _claims.Length); part += threads)
                        RunPart(seen, part, size, count);
            }
        }

        private static long WaitForWork(long seen)
        {
            long start = Stopwatch.GetTimestamp();
            var spin = new SpinWait();
            while (Volatile.Read(ref _generation) == seen)
            {
                if (Stopwatch.GetTimestamp() - start < SpinTicks)
                {
                    Thread.SpinWait(20);
                    continue;
                }
                // Announce the sleep before re-checking, so a caller that publishes work after the check sees a sleeper.
                lock (Gate)
                {
                    Interlocked.Increment(ref _sleepers);
                    while (Volatile.Read(ref _generation) == seen)
                        Monitor.Wait(Gate);
                    Interlocked.Decrement(ref _sleepers);
                }
                spin.Reset();
            }
            return Volatile.Read(ref _generation);
        }
    }
}

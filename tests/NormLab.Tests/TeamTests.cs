using NormLab.Tests.Support;
using NormLab.Threading;

namespace NormLab.Tests;

/// <summary>
/// The thread team: every index runs exactly once, errors come back to the caller, nested and concurrent calls stay
/// correct, and a call allocates nothing.
/// </summary>
[Collection(TeamSize.Collection)]
public unsafe class TeamTests
{
    private ref struct Marks
    {
        public Span<int> Hits;
        public int ThrowAt;
    }

    private static void Mark(ref Marks m, int begin, int end)
    {
        for (int i = begin; i < end; i++)
        {
            if (i == m.ThrowAt)
                throw new InvalidOperationException($"index {i}");
            Interlocked.Increment(ref m.Hits[i]);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    public void EveryIndexRunsExactlyOnce(int threads)
    {
        using var _ = new TeamSize(threads);
        foreach (int count in new[] { 1, 2, 3, 7, 64, 1001 })
        {
            var hits = new int[count];
            var m = new Marks { Hits = hits, ThrowAt = -1 };
            for (int rep = 0; rep < 50; rep++)
                Team.For(count, ref m, &Mark);
            Assert.All(hits, h => Assert.Equal(50, h));
        }
    }

    private static void RecordThread(ref Marks m, int begin, int end)
    {
        for (int i = begin; i < end; i++)
        {
            m.Hits[i] = Environment.CurrentManagedThreadId;
            // Long enough for an awake worker to claim its part before the caller, done with its own, takes it over.
            long until = System.Diagnostics.Stopwatch.GetTimestamp() + System.Diagnostics.Stopwatch.Frequency / 20_000;
            while (System.Diagnostics.Stopwatch.GetTimestamp() < until)
                Thread.SpinWait(10);
        }
    }

    [Fact]
    public void WorkersRunTheOtherRanges()
    {
        // Other tests use the team at the same time, a call that finds it busy runs inline, and the caller takes over the
        // parts of a worker that has not started: try until a worker runs its own part.
        using var _ = new TeamSize(2);
        var ids = new int[2];
        var m = new Marks { Hits = ids, ThrowAt = -1 };
        var clock = System.Diagnostics.Stopwatch.StartNew(); // a loaded machine may keep the worker off a core for a while
        while (ids.Distinct().Count() < 2 && clock.Elapsed < TimeSpan.FromSeconds(20))
            Team.For(2, ref m, &RecordThread);
        Assert.NotEqual(ids[0], ids[1]);
    }

    [Fact]
    public void AnExceptionInAnyRangeReachesTheCaller()
    {
        using var _ = new TeamSize(2);
        InvalidOperationException? e = null;
        try
        {
            var m = new Marks { Hits = new int[100], ThrowAt = 99 }; // the last range, run by a worker
            Team.For(100, ref m, &Mark);
        }
        catch (InvalidOperationException caught)
        {
            e = caught;
        }
        Assert.NotNull(e);
        Assert.Contains("index 99", e.Message);
        // The team still works afterwards.
        var hits = new int[10];
        var ok = new Marks { Hits = hits, ThrowAt = -1 };
        Team.For(10, ref ok, &Mark);
        Assert.All(hits, h => Assert.Equal(1, h));
    }

    private ref struct Nest
    {
        public Span<int> Hits;
    }

    private static void Outer(ref Nest n, int begin, int end)
    {
        for (int i = begin; i < end; i++)
        {
            var inner = new Marks { Hits = n.Hits.Slice(i * 10, 10), ThrowAt = -1 };
            Team.For(10, ref inner, &Mark); // runs inline: calls never nest
        }
    }

    [Fact]
    public void NestedAndConcurrentCallsRunEveryIndexOnce()
    {
        using var _ = new TeamSize(2);
        var hits = new int[80];
        var n = new Nest { Hits = hits };
        Team.For(8, ref n, &Outer);
        Assert.All(hits, h => Assert.Equal(1, h));

        var perThread = Enumerable.Range(0, 4).Select(_ => new int[500]).ToArray();
        Parallel.For(0, 4, t =>
        {
            var m = new Marks { Hits = perThread[t], ThrowAt = -1 };
            for (int rep = 0; rep < 200; rep++)
                Team.For(500, ref m, &Mark);
        });
        Assert.All(perThread.SelectMany(h => h), h => Assert.Equal(200, h));
    }

    [Fact]
    public void ACallAllocatesNothing()
    {
        using var _ = new TeamSize(2);
        var hits = new int[256];
        void Call()
        {
            var m = new Marks { Hits = hits, ThrowAt = -1 };
            Team.For(256, ref m, &Mark);
        }
        Assert.Equal(0, Allocations.Steady(Call, warmup: 1, repeats: 1000));
    }

    [Fact]
    public void SizeIsValidated()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Team.SetSize(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => Team.SetSize(-3));
    }
}

/// <summary>Sets the team size for a test and restores it; tests that change it share one collection so they run one at a time.</summary>
public sealed class TeamSize : IDisposable
{
    public const string Collection = "team size";
    private readonly int _previous = Team.Size;

    public TeamSize(int threads) => Team.SetSize(threads);

    public void Dispose() => Team.SetSize(_previous);
}

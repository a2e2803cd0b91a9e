using NormLab.Cli;
using NormLab.Distributed;

namespace NormLab.Tests.Distributed;

/// <summary>
/// <c>normlab selftest-mpi</c>'s logic on ranks as threads (CI runs the command itself under mpirun, see .ci/run): it
/// passes on a correct group and reports failures, with exit code 1 on every rank, on a group that does not communicate.
/// </summary>
public class SelfTestTests
{
    [Fact]
    public void PassesAndSummarizesOnRankZero()
    {
        var outputs = InProcessGroup.Run(2, comm =>
        {
            var log = new StringWriter();
            var err = new StringWriter();
            return (Code: SelfTestCommand.Run(comm, log, err), Out: log.ToString(), Err: err.ToString());
        });
        Assert.All(outputs, o => Assert.Equal((0, ""), (o.Code, o.Err)));
        Assert.Matches(@"^selftest-mpi: InProcessGroup rank 0 of 2 — \d+ checks per rank, all passed; the closest value came within \d+ % of its tolerance", outputs[0].Out);
        Assert.Equal("", outputs[1].Out);
    }

    [Fact]
    public void ReportsEveryFailureWhenRanksDoNotReallyExchange()
    {
        var outputs = InProcessGroup.Run(2, comm =>
        {
            var log = new StringWriter();
            var err = new StringWriter();
            return (Code: SelfTestCommand.Run(new LocalOnly(comm), log, err), Out: log.ToString(), Err: err.ToString());
        });
        Assert.All(outputs, o => Assert.Equal(1, o.Code));
        Assert.Contains("failed", outputs[0].Out);
        foreach (string check in new[] { "AllReduceSum(float)", "AllGather(long)", "unequal [N, 11], parts [2, 3]: outputs", "running statistics", "converted cnn" })
            Assert.Contains(check, outputs[0].Err);
        Assert.Contains("rank 1 of 2: FAILED", outputs[1].Err);
    }

    [Fact]
    public void TheCommandIsHiddenFromHelp()
    {
        var (code, output, _) = CliTests.Run("--help");
        Assert.Equal(0, code);
        Assert.DoesNotContain("selftest-mpi", output);
    }

    /// <summary>
    /// Joins every collective (so the ranks stay in step) but keeps only its own values, as if each rank were alone; the
    /// failure count is the one thing it really adds up, so that every rank agrees on the exit code.
    /// </summary>
    private sealed class LocalOnly(ICommunicator inner) : ICommunicator
    {
        public int Rank => inner.Rank;
        public int Size => inner.Size;

        public void AllReduceSum(Span<float> values) => Keep(values, v => inner.AllReduceSum(v));

        public void AllReduceSum(Span<double> values) => Keep(values, v => inner.AllReduceSum(v));

        public void AllReduceSum(Span<long> values) => inner.AllReduceSum(values);

        public void AllGather(ReadOnlySpan<float> send, Span<float> receive) => Own(send, receive, (s, r) => inner.AllGather(s, r));

        public void AllGather(ReadOnlySpan<double> send, Span<double> receive) => Own(send, receive, (s, r) => inner.AllGather(s, r));

        public void AllGather(ReadOnlySpan<long> send, Span<long> receive) => Own(send, receive, (s, r) => inner.AllGather(s, r));

        public void Broadcast(Span<float> values, int root = 0) => Keep(values, v => inner.Broadcast(v, root));

        public void Broadcast(Span<double> values, int root = 0) => Keep(values, v => inner.Broadcast(v, root));

        public void Broadcast(Span<long> values, int root = 0) => Keep(values, v => inner.Broadcast(v, root));

        public void Barrier() => inner.Barrier();

        private static void Keep<T>(Span<T> values, Action<T[]> call)
        {
            call(values.ToArray());
        }

        private void Own<T>(ReadOnlySpan<T> send, Span<T> receive, Action<T[], T[]> call)
        {
            call(send.ToArray(), new T[receive.Length]);
            for (int r = 0; r < Size; r++)
                send.CopyTo(receive.Slice(r * send.Length));
        }
    }
}

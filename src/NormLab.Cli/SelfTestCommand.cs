using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using NormLab.Distributed;

namespace NormLab.Cli;

/// <summary>
/// <c>normlab selftest-mpi</c> (hidden): run under <c>mpirun -np K</c>, every rank runs <see cref="DistributedChecks"/>
/// over Open MPI; rank 0 prints the summary, every rank prints its failures, and the exit code is 1 on every rank if
/// any check failed anywhere. CI runs it at np = 2 to prove the real engine, not only the in-process one.
/// </summary>
internal static class SelfTestCommand
{
    public static Command Build(TextWriter log, TextWriter err)
    {
        var cmd = new Command("selftest-mpi", "Check the MPI communicator and SyncBatchNorm on every rank (run under mpirun).") { Hidden = true };
        cmd.SetAction(_ => Commands.Guard(err, () =>
        {
            var world = MpiCommunicator.World();
            int code = Run(world, log, err);
            // Finalizing synchronizes the ranks, so only when every rank got here; a rank that threw exits without it and
            // mpirun ends the job.
            world.Dispose();
            return code;
        }));
        return cmd;
    }

    /// <summary>Runs the checks on this rank; returns the exit code, the same on every rank.</summary>
    public static int Run(ICommunicator comm, TextWriter log, TextWriter err)
    {
        var results = DistributedChecks.Run(comm);
        foreach (var failed in results.Where(r => !r.Passed))
            err.WriteLine($"normlab: selftest-mpi: rank {comm.Rank} of {comm.Size}: FAILED {failed.Name}: {failed.Detail}");
        long[] failures = [results.Count(r => !r.Passed)];
        comm.AllReduceSum(failures);
        var worst = new double[comm.Size];
        comm.AllGather([results.Where(r => r.Passed).Select(r => r.ToleranceUsed).DefaultIfEmpty(0).Max()], worst);
        double latency = AllReduceMicroseconds(comm);
        if (comm.Rank == 0)
            log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"selftest-mpi: {comm} — {results.Count} checks per rank, {(failures[0] == 0 ? "all passed" : $"{failures[0]} failed")}; " +
                $"the closest value came within {worst.Max():P0} of its tolerance ({DistributedChecks.Rtol:0e0} relative to the largest value); " +
                $"an 8-float all-reduce takes {latency:0.00} µs"));
        return failures[0] == 0 ? 0 : 1;
    }

    // Mean over 500 calls after 50 to warm up, on each rank's clock (rank 0 reports its own).
    private static double AllReduceMicroseconds(ICommunicator comm)
    {
        Span<float> values = stackalloc float[8];
        for (int i = 0; i < 50; i++)
            comm.AllReduceSum(values);
        comm.Barrier();
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < 500; i++)
            comm.AllReduceSum(values);
        return clock.Elapsed.TotalMicroseconds / 500;
    }
}

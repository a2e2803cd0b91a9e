using NormLab.Distributed;

namespace NormLab.Tests.Distributed;

/// <summary>The in-process group's collectives: rank order, the same bits everywhere, errors instead of hangs.</summary>
public class CommunicatorTests
{
    [Fact]
    public void AllReduceSumAddsInRankOrderSoEveryRankGetsTheSameBits()
    {
        // In float, (1e8 + 1) − 1e8 = 0 but 1e8 + (1 − 1e8) = 1 … only rank order gives 0, on every rank and every run.
        float[] parts = [1e8f, 1f, -1e8f];
        for (int run = 0; run < 3; run++)
        {
            var sums = InProcessGroup.Run(3, comm =>
            {
                float[] values = [parts[comm.Rank], comm.Rank];
                comm.AllReduceSum(values);
                return values;
            });
            Assert.All(sums, s => Assert.Equal([0f, 3f], s));
        }
    }

    [Fact]
    public void GatherAndBroadcastFollowRanks()
    {
        var results = InProcessGroup.Run(4, comm =>
        {
            var gathered = new long[8];
            comm.AllGather([comm.Rank, 10L * comm.Rank], gathered);
            double[] broadcast = [comm.Rank, -comm.Rank];
            comm.Broadcast(broadcast, root: 2);
            comm.Barrier();
            return (gathered, broadcast, comm.Rank, comm.Size);
        });
        for (int r = 0; r < 4; r++)
        {
            Assert.Equal([0L, 0, 1, 10, 2, 20, 3, 30], results[r].gathered);
            Assert.Equal([2.0, -2.0], results[r].broadcast);
            Assert.Equal((r, 4), (results[r].Rank, results[r].Size));
        }
    }

    [Fact]
    public void RanksThatCallDifferentCollectivesGetAnErrorNotAHang()
    {
        var e = Assert.Throws<ArgumentException>(() => InProcessGroup.Run(2, comm => comm.AllReduceSum(new float[comm.Rank + 3])));
        Assert.Contains("rank 0 AllReduceSum(Single, 3 values), rank 1 AllReduceSum(Single, 4 values)", e.Message);
        var order = Assert.Throws<ArgumentException>(() => InProcessGroup.Run(2, comm =>
        {
            if (comm.Rank == 0)
                comm.Barrier();
            else
                comm.Broadcast(new double[2], root: 1);
        }));
        Assert.Contains("rank 0 Barrier, rank 1 Broadcast(Double, 2 values, root 1)", order.Message);
        var left = Assert.Throws<InvalidOperationException>(() => InProcessGroup.Run(3, comm =>
        {
            if (comm.Rank != 1)
                comm.Barrier();
        }));
        Assert.Contains("never join", left.Message);
    }

    [Fact]
    public void AFailingRankEndsTheGroupWithItsOwnException()
    {
        var e = Assert.Throws<FormatException>(() => InProcessGroup.Run(3, comm =>
        {
            comm.Barrier();
            if (comm.Rank == 2)
                throw new FormatException("rank 2 broke");
            comm.Barrier(); // ranks 0 and 1 wait here for a rank that will never come
        }));
        Assert.Equal("rank 2 broke", e.Message);
    }

    [Fact]
    public void BadArgumentsAreNamed()
    {
        foreach (var comm in new ICommunicator[] { SingleProcess.Instance })
        {
            Assert.Contains("need a receive buffer of 3, got 2", Assert.Throws<ArgumentException>(() => comm.AllGather(new float[3], new float[2])).Message);
            Assert.Contains("root 1 is not a rank of a group of 1", Assert.Throws<ArgumentOutOfRangeException>(() => comm.Broadcast(new float[1], 1)).Message);
        }
        var gather = Assert.Throws<ArgumentException>(() => InProcessGroup.Run(2, comm => comm.AllGather(new double[2], new double[2])));
        Assert.Contains("2 ranks sending 2 values each need a receive buffer of 4, got 2", gather.Message);
        var overlap = Assert.Throws<ArgumentException>(() => InProcessGroup.Run(2, comm =>
        {
            var buffer = new float[4];
            comm.AllGather(buffer.AsSpan(0, 2), buffer);
        }));
        Assert.Contains("overlaps", overlap.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => InProcessGroup.Run(0, _ => { }));
    }

    [Fact]
    public void SingleProcessIsAGroupOfOne()
    {
        var comm = SingleProcess.Instance;
        Assert.Equal((0, 1), (comm.Rank, comm.Size));
        double[] values = [1.5, 2];
        comm.AllReduceSum(values);
        comm.Broadcast(values);
        var gathered = new double[2];
        comm.AllGather(values, gathered);
        Assert.Equal([1.5, 2.0], gathered);
        Assert.Equal([1.5, 2.0], values);
    }

    [Fact]
    public void CollectivesAllocateNothingOnceWarm()
    {
        var allocated = InProcessGroup.Run(2, comm =>
        {
            var values = new double[64];
            var gathered = new double[128];
            return Support.Allocations.Steady(() =>
            {
                comm.AllReduceSum(values);
                comm.AllGather(values, gathered);
                comm.Broadcast(values, 1);
                comm.Barrier();
            }, warmup: 3, repeats: 50);
        });
        Assert.Equal([0L, 0L], allocated);
    }
}

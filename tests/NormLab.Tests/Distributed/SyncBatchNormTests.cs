using NormLab.Cli;
using NormLab.Distributed;
using NormLab.Models;
using NormLab.Tests.Support;

namespace NormLab.Tests.Distributed;

public class SyncBatchNormTests
{
    // Every check of `normlab selftest-mpi` (outputs, input and parameter gradients, running statistics, eval outputs for
    // unequal parts, one sample on a rank, an empty rank, data offset by 1e4; the error for one value per channel; two
    // converted networks), on ranks as threads.
    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void EqualsBatchNormOnTheConcatenatedBatch(int ranks)
    {
        var results = InProcessGroup.Run(ranks, DistributedChecks.Run);
        Assert.All(results, r => Assert.Equal(results[0].Count, r.Count));
        var failed = results.SelectMany((r, rank) => r.Where(c => !c.Passed).Select(c => $"rank {rank}: {c.Name}: {c.Detail}")).ToList();
        Assert.True(failed.Count == 0, string.Join("\n", failed));
        Assert.Contains(results[0], r => r.Name.Contains("empty last rank [N, 4, 5, 6]") && r.Name.EndsWith("input gradients"));
    }

    [Fact]
    public void MergingFloatSumsAndSumsOfSquaresWouldFailOnOffsetData()
    {
        // The naive merge, Σx and Σx² per rank in float, then var = E[x²] − E[x]²: data near 1e4 with spread 1e-2 lose
        // their variance to cancellation. The test data of the offset check do defeat it, so that check means something.
        var x = new Tensor(9, 2);
        Init.Normal(x, new Rng(100), 1.0);
        foreach (ref float v in x.Span)
            v = 1e4f + 0.01f * v;
        var parts = new[] { x.Slice(0, 4), x.Slice(4, 5) };
        float sum = 0, squares = 0;
        foreach (var part in parts)
            for (int i = 0; i < part.Dim(0); i++)
            {
                float v = part[i, 0];
                sum += v;
                squares += v * v;
            }
        double naive = squares / 9.0 - Math.Pow(sum / 9.0, 2);
        var column = Enumerable.Range(0, 9).Select(i => (double)x[i, 0]).ToArray();
        double exact = column.Select(v => Math.Pow(v - column.Average(), 2)).Average();
        Assert.True(Math.Abs(naive - exact) > exact, $"naive {naive}, exact {exact}");

        var reference = new BatchNorm1d(2);
        reference.Forward(x);
        var running = InProcessGroup.Run(2, comm =>
        {
            var sync = new SyncBatchNorm(2, communicator: comm);
            sync.Forward(parts[comm.Rank]);
            return sync.RunningVar!.ToArray();
        });
        foreach (var r in running)
            TensorAssert.Close("running variance", reference.RunningVar!.Span, r, rtol: 1e-5, atol: 0);
    }

    [Fact]
    public void OneRankIsBatchNormBitForBit()
    {
        var bn = new BatchNorm2d(3);
        var sync = new SyncBatchNorm(3);
        var x = TensorAssert.Randn(1, 4, 3, 5, 5);
        var dy = TensorAssert.Randn(2, 4, 3, 5, 5);
        for (int step = 0; step < 2; step++)
        {
            Assert.Equal(bn.Forward(x).ToArray(), sync.Forward(x).ToArray());
            Assert.Equal(bn.Backward(dy).ToArray(), sync.Backward(dy).ToArray());
        }
        Assert.Equal(bn.Weight!.Grad.ToArray(), sync.Weight!.Grad.ToArray());
        Assert.Equal(bn.RunningVar!.ToArray(), sync.RunningVar!.ToArray());
        Assert.Same(SingleProcess.Instance, sync.Communicator);
    }

    [Fact]
    public void TrainingCommunicatesOncePerPassAndEvalNever()
    {
        var counts = InProcessGroup.Run(2, inner =>
        {
            var comm = new Counting(inner);
            var sync = new SyncBatchNorm(4, communicator: comm);
            var x = TensorAssert.Randn(3, 3, 4, 2, 2);
            sync.Forward(x);
            sync.Backward(x);
            var training = (comm.Gathers, comm.Reductions);
            sync.Eval();
            sync.Forward(x);
            sync.Backward(x);
            sync.Train();
            sync.Freeze();
            sync.Forward(x);
            sync.Backward(x);
            return (training, after: (comm.Gathers, comm.Reductions));
        });
        Assert.All(counts, c => Assert.Equal(((1, 1), (1, 1)), (c.training, c.after)));
    }

    [Fact]
    public void OneValuePerChannelOverAllRanksIsBatchNormsErrorOnEveryRank()
    {
        var messages = InProcessGroup.Run(3, comm =>
        {
            var sync = new SyncBatchNorm(5, communicator: comm);
            var e = Assert.Throws<ArgumentException>(() => sync.Forward(new Tensor(comm.Rank == 1 ? 1 : 0, 5)));
            return e.Message;
        });
        Assert.Equal(
            "SyncBatchNorm: expected more than 1 value per channel when training, got input of shape [0, 5] on rank 0 and 1 value per channel over all 3 ranks.",
            messages[0]);
        Assert.All(messages, m => Assert.StartsWith("SyncBatchNorm: expected more than 1 value per channel when training", m));
    }

    [Fact]
    public void TakesAnyInputWithChannelsInDimensionOne()
    {
        var sync = new SyncBatchNorm(3);
        foreach (int[] shape in new[] { new[] { 4, 3 }, [4, 3, 5], [2, 3, 2, 2], [2, 3, 2, 2, 2] })
            Assert.Equal(shape, sync.Forward(TensorAssert.Randn(1, shape)).Shape.ToArray());
        Assert.Equal("SyncBatchNorm: expected at least 2D input [N, C, *], got 1D input of shape [3].",
            Assert.Throws<ArgumentException>(() => sync.Forward(new Tensor(3))).Message);
        Assert.Contains("expected 3 channels in dimension 1", Assert.Throws<ArgumentException>(() => sync.Forward(new Tensor(2, 4))).Message);
    }

    [Fact]
    public void ConvertSharesStateKeepsNamesAndSettings()
    {
        var model = Zoo.ResNet(NormKind.Batch, blocksPerStage: 1, rng: new Rng(2));
        model.Forward(TensorAssert.Randn(3, 2, 1, 28, 28));
        var frozen = model.Modules().OfType<BatchNorm>().Last().Freeze();
        model.Eval();
        var converted = SyncBatchNorm.ConvertSyncBatchNorm(model, SingleProcess.Instance);

        Assert.Equal(model.NamedParameters().Select(p => p.Name), converted.NamedParameters().Select(p => p.Name));
        Assert.Equal(model.NamedBuffers().Select(b => b.Name), converted.NamedBuffers().Select(b => b.Name));
        Assert.All(model.Parameters().Zip(converted.Parameters()), pair => Assert.Same(pair.First, pair.Second));
        Assert.All(model.NamedBuffers().Zip(converted.NamedBuffers()), pair => Assert.Same(pair.First.Value, pair.Second.Value));
        var before = model.Modules().OfType<BatchNorm>().ToList();
        var after = converted.Modules().OfType<BatchNorm>().ToList();
        Assert.Equal(before.Count, after.Count);
        Assert.All(after, bn => Assert.IsType<SyncBatchNorm>(bn));
        Assert.All(before.Zip(after), pair =>
        {
            Assert.Equal(pair.First.ToString().Replace("BatchNorm2d", "SyncBatchNorm"), pair.Second.ToString());
            Assert.Equal((1L, false, pair.First.Frozen), (pair.Second.NumBatchesTracked, pair.Second.Training, pair.Second.Frozen));
        });
        Assert.True(frozen.Frozen && after[^1].Frozen);
        Assert.Same(model.Modules().OfType<Linear>().Single(), converted.Modules().OfType<Linear>().Single());
        Assert.False(converted.NeedsInputGradient);
        Assert.Equal(model.Forward(TensorAssert.Randn(4, 2, 1, 28, 28)).ToArray(), converted.Forward(TensorAssert.Randn(4, 2, 1, 28, 28)).ToArray());

        var plain = new Sequential(new Linear(3, 3, rng: new Rng(1)), new ReLU());
        Assert.Same(plain, SyncBatchNorm.ConvertSyncBatchNorm(plain, SingleProcess.Instance));
    }

    [Fact]
    public void NormSyncBuildsTheZoosNetworksWithIt()
    {
        Assert.Equal(NormKind.Sync, ModelSpec.ParseNorm("sync"));
        Assert.Contains("sync", ModelSpec.Norms);
        var spec = new ModelSpec("cnn", NormKind.Sync, NormPosition.Before, 0.1, false);
        Assert.Equal(spec, ModelSpec.FromMetadata(spec.ToMetadata(), "checkpoint"));
        Assert.Equal(3, spec.Build(new Rng(1)).Modules().OfType<SyncBatchNorm>().Count());
    }

    [Fact]
    public void ASynchronizedTrainingStepAllocatesNothing()
    {
        var allocated = InProcessGroup.Run(2, comm =>
        {
            var model = SyncBatchNorm.ConvertSyncBatchNorm(Zoo.Mlp(20, [32, 32], 10, ActivationKind.ReLU, NormKind.Batch, rng: new Rng(3)), comm);
            var x = TensorAssert.Randn(4 + comm.Rank, 10 + comm.Rank, 20);
            var labels = Enumerable.Range(0, x.Dim(0)).Select(i => i % 10).ToArray();
            return AllocationTests.StepAllocations(model, new Sgd(model.Parameters(), 0.01, momentum: 0.9), x, labels);
        });
        Assert.Equal([0L, 0L], allocated);
    }

    /// <summary>Counts the collectives a layer calls.</summary>
    private sealed class Counting(ICommunicator inner) : ICommunicator
    {
        public int Gathers { get; private set; }
        public int Reductions { get; private set; }
        public int Rank => inner.Rank;
        public int Size => inner.Size;
        public void AllReduceSum(Span<float> values)
        {
            Reductions++;
            inner.AllReduceSum(values);
        }
        public void AllReduceSum(Span<double> values)
        {
            Reductions++;
            inner.AllReduceSum(values);
        }
        public void AllReduceSum(Span<long> values)
        {
            Reductions++;
            inner.AllReduceSum(values);
        }
        public void AllGather(ReadOnlySpan<float> send, Span<float> receive)
        {
            Gathers++;
            inner.AllGather(send, receive);
        }
        public void AllGather(ReadOnlySpan<double> send, Span<double> receive)
        {
            Gathers++;
            inner.AllGather(send, receive);
        }
        public void AllGather(ReadOnlySpan<long> send, Span<long> receive)
        {
            Gathers++;
            inner.AllGather(send, receive);
        }
        public void Broadcast(Span<float> values, int root = 0) => inner.Broadcast(values, root);
        public void Broadcast(Span<double> values, int root = 0) => inner.Broadcast(values, root);
        public void Broadcast(Span<long> values, int root = 0) => inner.Broadcast(values, root);
        public void Barrier() => inner.Barrier();
    }
}

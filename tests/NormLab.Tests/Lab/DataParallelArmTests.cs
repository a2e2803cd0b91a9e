using NormLab.Data;
using NormLab.Lab;
using NormLab.Lab.Experiments;
using NormLab.Tests.Support;

namespace NormLab.Tests.Lab;

/// <summary>The lab's data-parallel arms (small-batch's SyncBN arm): K ranks × B/K images equal one process at batch B.</summary>
public class DataParallelArmTests
{
    [Fact]
    public void EightRanksOfTwoImagesEqualBatchNormAtSixteen()
    {
        var train = ImageDataset.LoadIdx(TinyMnist.Path, "train");
        var test = ImageDataset.LoadIdx(TinyMnist.Path, "t10k");
        TrainSetup Setup(int ranks) => new()
        {
            Build = rng => NarrowCnn.Build(c => new BatchNorm2d(c), rng, 4, 8), Train = train, Test = test, Batch = 16, Steps = 20, EvalEvery = 10,
            Lr = 0.05, Momentum = 0.9, Ranks = ranks,
        };
        var (one, eight) = (new ArmResult(), new ArmResult());
        var single = Training.Run(Setup(1), 3, one);
        var parallel = Training.Run(Setup(8), 3, eight);
        Assert.IsType<SyncBatchNorm>(parallel.Layers[1]);
        Assert.IsNotType<SyncBatchNorm>(single.Layers[1]);
        // Logged once (rank 0), at the same steps, with the same values up to float reassociation.
        Assert.Equal(one.Rows.Keys, eight.Rows.Keys);
        foreach (var (step, row) in one.Rows)
            foreach (var (metric, value) in row)
                Assert.True(Math.Abs(eight.Rows[step][metric] - value) <= 1e-4 * Math.Abs(value) + 1e-9, $"step {step} {metric}: {eight.Rows[step][metric]} with 8 ranks, {value} in one process");
        foreach (var (e, a) in single.Parameters().Zip(parallel.Parameters()))
        {
            double scale = e.Value.ToArray().Max(v => Math.Abs((double)v)), diff = e.Value.ToArray().Zip(a.Value.ToArray(), (x, y) => Math.Abs((double)x - y)).Max();
            Assert.True(diff <= 1e-4 * scale, $"{e.Name}: largest difference {diff:E2} of {scale:E2}");
        }
    }
}

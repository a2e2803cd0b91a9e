using NormLab.Cli;
using NormLab.Distributed;
using NormLab.Models;
using NormLab.Tests.Support;
using Xunit.Abstractions;

namespace NormLab.Tests.Distributed;

/// <summary><c>normlab train --distributed threads</c> against one process on the same global batch.</summary>
public class DataParallelTrainingTests(ITestOutputHelper output)
{
    // Float sums in another order (the ranks' partial sums) drift apart over training; measured worst after 200 steps is
    // printed by the test, well inside this.
    private const double Rtol = 1e-4;

    private static string TempDir() => TempDirs.Create("normlab-dp");

    private static string[] Train(string norm, int steps, string outDir, params string[] extra) =>
    [
        "train", "--model", "ioffe-mlp", "--norm", norm, "--data", TinyMnist.Path, "--batch", "10", "--lr", "0.5", "--momentum", "0.5",
        "--steps", steps.ToString(System.Globalization.CultureInfo.InvariantCulture), "--eval-every", "100", "--seed", "5", "--out", outDir,
        .. extra.Contains("--threads") ? extra : [.. extra, "--threads", "1"],
    ];

    private static (int Code, string Out, string Err) Ok(string[] args)
    {
        var r = CliTests.Run(args);
        Assert.True(r.Code == 0, r.Err);
        return r;
    }

    private static Dictionary<string, float[]> Model(string dir) =>
        SafeTensors.Read(Path.Combine(dir, TrainRun.ModelName)).Tensors
            .ToDictionary(t => t.Key, t => t.Value.DType == "F32" ? t.Value.ToFloats() : t.Value.ToInt64s().Select(v => (float)v).ToArray());

    [Fact]
    public void ShardsAreDisjointCoverTheBatchInRankOrderAndDifferByAtMostOne()
    {
        for (int batch = 0; batch <= 20; batch++)
            for (int size = 1; size <= 8; size++)
            {
                int next = 0;
                var counts = new List<int>();
                for (int rank = 0; rank < size; rank++)
                {
                    var (start, count) = DataParallel.Shard(batch, rank, size);
                    Assert.Equal(next, start);
                    next = start + count;
                    counts.Add(count);
                }
                Assert.Equal(batch, next);
                Assert.True(counts.Max() - counts.Min() <= 1, $"batch {batch} over {size}: {string.Join(", ", counts)}");
            }
        Assert.Equal((3, 3), DataParallel.Shard(10, 1, 3));
        Assert.Equal((6, 4), DataParallel.Shard(10, 2, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => DataParallel.Shard(10, 3, 3));
    }

    [Fact]
    public void ThreeRanksOnUnequalShardsEqualOneProcessOverTwoHundredSteps()
    {
        string single = TempDir(), parallel = TempDir();
        var one = Ok(Train("batch", 200, single, "--json"));
        var three = Ok(Train("sync", 200, parallel, "--json", "--distributed", "threads", "--world-size", "3"));
        Assert.Contains("3 ranks (threads)", three.Out);
        Assert.Contains("step 200/200", three.Out);

        double worst = 0;
        var expected = Model(single);
        var actual = Model(parallel);
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, e) in expected)
        {
            double scale = e.Max(v => Math.Abs((double)v)), diff = e.Zip(actual[name], (a, b) => Math.Abs((double)a - b)).Max();
            worst = Math.Max(worst, diff / Math.Max(scale, 1e-12));
            Assert.True(diff <= Rtol * scale + 1e-12, $"{name}: largest difference {diff:E2} of largest value {scale:E2}");
        }
        using var a = System.Text.Json.JsonDocument.Parse(one.Out.TrimEnd().Split('\n')[^1]);
        using var b = System.Text.Json.JsonDocument.Parse(three.Out.TrimEnd().Split('\n')[^1]);
        foreach (var key in new[] { "train_loss", "train_accuracy", "test_loss", "test_accuracy" })
        {
            double x = a.RootElement.GetProperty(key).GetDouble(), y = b.RootElement.GetProperty(key).GetDouble();
            worst = Math.Max(worst, Math.Abs(x - y) / Math.Abs(x));
            Assert.True(Math.Abs(x - y) <= Rtol * Math.Abs(x), $"{key}: {y} with 3 ranks, {x} in one process");
        }
        output.WriteLine($"largest relative difference after 200 steps (weights, running statistics, losses, accuracies): {worst:E2}");
        // Only rank 0 wrote: one metrics row per evaluation, as in one process.
        Assert.Equal(File.ReadAllLines(Path.Combine(single, "metrics.csv")).Length, File.ReadAllLines(Path.Combine(parallel, "metrics.csv")).Length);
        Assert.Contains("\"world_size\": 3", File.ReadAllText(Path.Combine(parallel, "config.json")));
    }

    [Fact]
    public void RanksAsThreadsGiveTheSameBitsOnEveryRunAndWithTheSharedTeamBusy()
    {
        // --threads 2: the ranks call the one thread team at once; a call that finds it busy runs on its own thread,
        // which gives the same bits by the team's determinism rule.
        string[] dirs = [TempDir(), TempDir(), TempDir()];
        Ok(Train("sync", 30, dirs[0], "--distributed", "threads", "--world-size", "2"));
        Ok(Train("sync", 30, dirs[1], "--distributed", "threads", "--world-size", "2"));
        Ok(Train("sync", 30, dirs[2], "--distributed", "threads", "--world-size", "2", "--threads", "2"));
        var first = Model(dirs[0]);
        foreach (var dir in dirs.Skip(1))
            foreach (var (name, values) in Model(dir))
                Assert.True(values.AsSpan().SequenceEqual(first[name]), $"{name} differs between runs");
    }

    [Fact]
    public void EveryRankResumesFromRankZerosCheckpointExactly()
    {
        string whole = TempDir(), split = TempDir();
        string[] ranks = ["--distributed", "threads", "--world-size", "3"];
        Ok(Train("sync", 30, whole, ranks));
        Ok(Train("sync", 12, split, ranks));
        var resumed = Ok(Train("sync", 30, split, [.. ranks, "--resume"]));
        Assert.Contains("resumed", resumed.Out);
        var expected = Model(whole);
        foreach (var (name, values) in Model(split))
            Assert.True(values.AsSpan().SequenceEqual(expected[name]), $"{name} differs between the whole and the resumed run");
    }

    [Fact]
    public void AStepOfShardingScalingAndTheFusedAllReduceAllocatesNothing()
    {
        InProcessGroup.Run(2, comm =>
        {
            var model = SyncBatchNorm.ConvertSyncBatchNorm(Zoo.Mlp(6, [8], 3, ActivationKind.ReLU, NormKind.Batch, rng: new Rng(1)), comm);
            var parallel = new DataParallel(model, comm);
            var loss = new SoftmaxCrossEntropy();
            var x = new Tensor(7, 6);
            Init.Normal(x, new Rng(2), 1.0);
            int[] labels = [0, 1, 2, 0, 1, 2, 0];
            var (start, count) = parallel.Shard(7);
            var shard = x.Slice(start, count);
            long bytes = Allocations.Steady(() =>
            {
                float l = loss.Forward(model.Forward(shard), labels.AsSpan(start, count));
                DataParallel.ScaleLossGradient(loss.Backward(), count, 7);
                model.Backward(loss.Backward());
                parallel.AllReduceGradients(l * count / 7, 0, false);
            });
            Assert.Equal(0, bytes);
            Assert.Equal(8, parallel.Reductions);
        });
    }

    [Theory]
    [InlineData("--distributed", "nccl", "unknown --distributed 'nccl'")]
    [InlineData("--world-size", "3", "--world-size goes with --distributed threads")]
    [InlineData("--distributed", "threads", "--world-size", "0", "--world-size must be between 1 and 1024")]
    [InlineData("--distributed", "threads", "--world-size", "11", "--batch 10 cannot be split over 11 ranks")]
    public void BadSettingsAreOneLineErrors(params string[] args)
    {
        string dir = TempDir();
        var (code, _, err) = CliTests.Run(Train("sync", 10, dir, args[..^1]));
        Assert.Equal(1, code);
        Assert.StartsWith("normlab: error: ", err);
        Assert.Contains(args[^1], err);
        Assert.Single(err.TrimEnd().Split('\n'));
    }
}

using NormLab.Models;
using NormLab.Tests.Support;

namespace NormLab.Tests;

public class CheckpointTests
{
    private static void Steps(Module model, Optimizer optimizer, int from, int count)
    {
        var loss = new SoftmaxCrossEntropy();
        for (int s = from; s < from + count; s++)
        {
            var x = TensorAssert.Randn(100 + s, 8, 784);
            int[] labels = Enumerable.Range(s, 8).Select(i => i % 10).ToArray();
            optimizer.ZeroGrad();
            loss.Forward(model.Forward(x), labels);
            model.Backward(loss.Backward());
            optimizer.Step();
        }
    }

    private static string TempFile() => Path.Combine(TempDirs.Create("normlab"), "ckpt.safetensors");

    [Theory]
    [InlineData("sgd")]
    [InlineData("adam")]
    public void ResumingGivesExactlyTheUninterruptedRun(string kind)
    {
        Optimizer Make(Module m) => kind == "sgd" ? new Sgd(m.Parameters(), 0.05, momentum: 0.9) : new Adam(m.Parameters(), 1e-3);
        var reference = Zoo.IoffeMlp(NormKind.Batch, rng: new Rng(1));
        var refOpt = Make(reference);
        Steps(reference, refOpt, 0, 6);

        var first = Zoo.IoffeMlp(NormKind.Batch, rng: new Rng(1));
        var firstOpt = Make(first);
        Steps(first, firstOpt, 0, 3);
        string path = TempFile();
        Checkpoint.SaveModel(path, first, new Dictionary<string, string> { ["model"] = "ioffe-mlp" });
        string state = path + ".resume";
        Checkpoint.SaveTrainingState(state, firstOpt, [("rng", new Rng(5).GetState().Select(u => (long)u).ToArray())]);

        var resumed = Zoo.IoffeMlp(NormKind.Batch, rng: new Rng(99));
        var resumedOpt = Make(resumed);
        var meta = Checkpoint.LoadModel(path, resumed);
        var extra = Checkpoint.LoadTrainingState(state, resumedOpt);
        Assert.Equal("ioffe-mlp", meta["model"]);
        Assert.Equal(new Rng(5).GetState().Select(u => (long)u), extra["rng"]);
        Assert.Equal(3, resumedOpt.StepCount);
        Assert.All(resumed.Modules().OfType<BatchNorm>(), bn => Assert.Equal(3, bn.NumBatchesTracked));
        Steps(resumed, resumedOpt, 3, 3);

        foreach (var ((name, a), (_, b)) in reference.NamedParameters().Zip(resumed.NamedParameters()))
            Assert.True(a.Value.ToArray().SequenceEqual(b.Value.ToArray()), $"{name} differs after resume");
        foreach (var ((name, a), (_, b)) in reference.NamedBuffers().Zip(resumed.NamedBuffers()))
            Assert.True(a.ToArray().SequenceEqual(b.ToArray()), $"{name} differs after resume");
    }

    [Fact]
    public void AFileThatDoesNotFitLeavesTheModelUntouched()
    {
        string path = TempFile();
        Checkpoint.SaveModel(path, Zoo.Mlp(784, [16], 10, ActivationKind.ReLU, NormKind.Batch, rng: new Rng(1)));
        var other = Zoo.Mlp(784, [32], 10, ActivationKind.ReLU, NormKind.Batch, rng: new Rng(2));
        var before = other.Parameters().Select(p => p.Value.ToArray()).ToList();
        var e = Assert.Throws<NormLabFormatException>(() => Checkpoint.LoadModel(path, other));
        Assert.Contains(path, e.Message);
        Assert.Contains("'0.weight'", e.Message);
        Assert.Equal(before, other.Parameters().Select(p => p.Value.ToArray()));
        var noBn = Zoo.Mlp(784, [16], 10, ActivationKind.ReLU, NormKind.None, rng: new Rng(2));
        Assert.Throws<NormLabFormatException>(() => Checkpoint.LoadModel(path, noBn));
        var same = Zoo.Mlp(784, [16], 10, ActivationKind.ReLU, NormKind.Batch, rng: new Rng(3));
        Assert.Contains("optim.step", Assert.Throws<NormLabFormatException>(() => Checkpoint.LoadTrainingState(path, new Adam(same.Parameters()))).Message);
    }
}

using System.Text.RegularExpressions;
using NormLab.Cli;
using NormLab.Models;
using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>NaN and ±∞: the per-step check, the replay that names the first module, and what --on-nan does with them.</summary>
public class NonFiniteTests
{
    [Fact]
    public void AllFiniteFindsEveryNonFiniteValueAnywhere()
    {
        for (int n = 0; n < 40; n++)
        {
            var values = Enumerable.Range(0, n).Select(i => i % 3 == 0 ? float.MaxValue : -float.Epsilon * i).ToArray();
            Assert.True(NonFinite.AllFinite(values), $"length {n}");
            for (int at = 0; at < n; at++)
                foreach (float bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
                {
                    var copy = (float[])values.Clone();
                    copy[at] = bad;
                    Assert.False(NonFinite.AllFinite(copy), $"{bad} at {at} of {n}");
                }
        }
    }

    // Linear(4, 3) → Sigmoid → Linear(3, 2) on a batch of 5, its last layer's weights set to w.
    private static (Sequential Model, Tensor Input) Network(float w)
    {
        var rng = new Rng(4);
        var model = new Sequential(new Linear(4, 3, rng: rng), new Sigmoid(), new Linear(3, 2, rng: rng));
        ((Linear)model[2]).Weight.Value.Fill(w);
        return (model, TensorAssert.Randn(6, 5, 4));
    }

    private static (float, Tensor) Gradient(Tensor output, float value)
    {
        var dy = new Tensor(output.Shape.ToArray());
        dy.Fill(value);
        return (1f, dy);
    }

    [Fact]
    public void LocateNamesTheFirstModuleWhoseOutputOrGradientIsNotFinite()
    {
        // Forward: three sigmoid outputs of about 0.5 times 3e38 overflow in the last layer.
        var (model, x) = Network(3e38f);
        Assert.Equal("the output of 2 (Linear)", NonFinite.Locate(model, x, y => Gradient(y, 1)));
        // Nested modules are named by their full state-dict name.
        var rng = new Rng(4);
        var nested = new Sequential(new Linear(4, 3, rng: rng), new Sequential(new Sigmoid(), new Linear(3, 2, rng: rng)));
        ((Linear)((Sequential)nested[1])[1]).Weight.Value.Fill(3e38f);
        Assert.Equal("the output of 1.1 (Linear)", NonFinite.Locate(nested, x, y => Gradient(y, 1)));

        // Backward: a finite forward, an output gradient of 3e38. With weights 0.1 the last layer's input gradient stays
        // finite (0.6e38) but its weight gradient, a sum over 5 samples of 3e38·0.5, does not; with weights 1e10 the input
        // gradient overflows first.
        (model, x) = Network(0.1f);
        Assert.Equal("the gradient of 2.weight (Linear)", NonFinite.Locate(model, x, y => Gradient(y, 3e38f)));
        (model, x) = Network(1e10f);
        Assert.Equal("the input gradient of 2 (Linear)", NonFinite.Locate(model, x, y => Gradient(y, 3e38f)));

        // The loss, the input, and nothing at all.
        (model, x) = Network(0.1f);
        Assert.Equal("the loss (NaN) of a finite output", NonFinite.Locate(model, x, y => (float.NaN, y)));
        Assert.Null(NonFinite.Locate(model, x, y => Gradient(y, 1)));
        x.Span[7] = float.NaN;
        Assert.Equal("the input batch", NonFinite.Locate(model, x, y => Gradient(y, 1)));
    }

    [Fact]
    public void LocatePutsBackTheHooksAndFirstInStateNamesTheEntry()
    {
        var (model, x) = Network(3e38f);
        int calls = 0;
        Action<Module, Tensor, Tensor> hook = (_, _, _) => calls++;
        model[1].ForwardHook = hook;
        NonFinite.Locate(model, x, y => Gradient(y, 1));
        Assert.Equal(1, calls);   // chained, not replaced
        Assert.Same(hook, model[1].ForwardHook);
        Assert.All(model.Modules(), m => Assert.Null(m.BackwardHook));
        Assert.Null(NonFinite.FirstInState(model));
        ((Linear)model[2]).Weight.Value.Span[3] = float.PositiveInfinity;
        Assert.Equal("2.weight (Linear)", NonFinite.FirstInState(model));
    }

    [Fact]
    public void SkipLeavesABadBatchOutAndTheStateAsBeforeIt()
    {
        var model = Zoo.IoffeMlp(NormKind.Batch, rng: new Rng(1));
        var optimizer = new Sgd(model.Parameters(), 0.1);
        var guard = new NanGuard(model, optimizer, OnNan.Skip);
        var loss = new SoftmaxCrossEntropy();
        int[] labels = [1, 2, 3, 4, 5, 6, 7, 8];
        bool Step(Tensor x)
        {
            guard.BeforeStep();
            optimizer.ZeroGrad();
            float l = loss.Forward(model.Forward(x), labels);
            if (float.IsFinite(l))
                model.Backward(loss.Backward());
            if (!guard.Passes(l))
                return false;
            guard.Passed();
            optimizer.Step();
            return true;
        }
        Assert.True(Step(TensorAssert.Randn(1, 8, 784)));
        var before = model.NamedParameters().Select(p => p.Parameter.Value.ToArray()).Concat(model.NamedBuffers().Select(b => b.Value.ToArray())).ToList();
        var bad = TensorAssert.Randn(2, 8, 784);
        bad.Span[100] = float.PositiveInfinity;
        for (int i = 1; i <= 2; i++)
        {
            Assert.False(Step(bad));
            Assert.Equal("the input batch", guard.Fail(bad, labels, loss));
            Assert.Equal(i, guard.SkipsInARow);
        }
        // The failed forward updated the running statistics with ∞; they are back, and so are the batch counters.
        var after = model.NamedParameters().Select(p => p.Parameter.Value.ToArray()).Concat(model.NamedBuffers().Select(b => b.Value.ToArray())).ToList();
        Assert.Equal(before, after);
        Assert.All(model.Modules().OfType<BatchNorm>(), bn => Assert.Equal(1, bn.NumBatchesTracked));
        Assert.Equal(1, optimizer.StepCount);
        Assert.True(Step(TensorAssert.Randn(3, 8, 784)));
        Assert.Equal(0, guard.SkipsInARow);
        Assert.True(guard.StateFinite());
        // What the guard does every step allocates nothing.
        Assert.Equal(0, Allocations.Steady(() =>
        {
            guard.BeforeStep();
            guard.Passes(1f);
            guard.StateFinite();
            guard.Passed();
        }));
    }

    private static string[] Train(string outDir, double lr, params string[] more) =>
    [
        "train", "--model", "mlp", "--norm", "none", "--data", TinyMnist.Path, "--batch", "10", "--steps", "30", "--eval-every", "10",
        "--checkpoint-every", "1", "--lr", lr.ToString("R", System.Globalization.CultureInfo.InvariantCulture), "--out", outDir, .. more,
    ];

    // The resume file's step, after checking that everything in it is finite and that it resumes a model.
    private static long GoodCheckpoint(string dir)
    {
        var (tensors, _) = SafeTensors.Read(Path.Combine(dir, TrainRun.ResumeName));
        Assert.All(tensors.Values.Where(t => t.DType == "F32"), t => Assert.True(NonFinite.AllFinite(t.ToFloats()), $"{t.Name} is not finite"));
        var model = Zoo.Mlp(784, [256, 256], 10, ActivationKind.ReLU, NormKind.None, rng: new Rng(0));
        Checkpoint.LoadTrainingState(Path.Combine(dir, TrainRun.ResumeName), new Sgd(model.Parameters(), 0.1), model);
        return tensors["optim.step"].ToInt64s()[0];
    }

    [Fact]
    public void ADivergingRunStopsAtTheStepNamesTheLayerAndKeepsTheLastGoodCheckpoint()
    {
        // A learning rate of 1000 sends a plain ReLU MLP's logits to infinity within a few steps.
        string dir = TempDirs.Create("normlab-nan");
        var (code, output, err) = CliTests.Run(Train(dir, 1000));
        Assert.Equal(1, code);
        var m = Regex.Match(err, @"^normlab: error: the loss became NaN at step (\d+) \(first non-finite value: the output of (\d+) \((\w+)\)\); " +
            @"stopped without saving: the last good checkpoint \(step (\d+)\) is kept in (.+)\. Try a smaller --lr, or --on-nan skip");
        Assert.True(m.Success, err);
        int step = int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(step - 1, int.Parse(m.Groups[4].Value, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(dir, m.Groups[5].Value);
        // The named module is the model's own layer of that index and type.
        var model = Zoo.Mlp(784, [256, 256], 10, ActivationKind.ReLU, NormKind.None, rng: new Rng(0));
        Assert.Equal(m.Groups[3].Value, model[int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture)].GetType().Name);
        Assert.Equal(step - 1, GoodCheckpoint(dir));
        Assert.DoesNotContain("   at ", err);

        // Skipping: every batch after the divergence is bad too, so it gives up after ten in a row, saying why.
        string skipDir = TempDirs.Create("normlab-nan");
        (code, output, err) = CliTests.Run(Train(skipDir, 1000, "--on-nan", "skip"));
        Assert.Equal(1, code);
        Assert.Equal(NanGuard.MaxSkipsInARow, Regex.Matches(output, $@"^step {step}: the loss became NaN .*; batch skipped, \d+ so far", RegexOptions.Multiline).Count);
        Assert.Contains($"{NanGuard.MaxSkipsInARow} batches in a row were non-finite (the last at step {step}", err);
        Assert.Equal(step - 1, GoodCheckpoint(skipDir));

        // An update that overflows the weights themselves (finite loss and gradients) is caught before its checkpoint.
        string updateDir = TempDirs.Create("normlab-nan");
        (code, _, err) = CliTests.Run(Train(updateDir, 30));
        Assert.Equal(1, code);
        m = Regex.Match(err, @"(\d+)\.weight \(Linear\) became non-finite by step (\d+); stopped without saving: the last good checkpoint \(step (\d+)\)");
        Assert.True(m.Success, err);
        Assert.Equal(int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture) - 1, GoodCheckpoint(updateDir));
    }
}

using NormLab.Models;
using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>Santurkar's noisy BatchNorm: the noise's statistics, its seed, eval mode, and gradients with the noise held fixed.</summary>
public class NoisyBatchNormTests
{
    [Fact]
    public void AdditiveNoiseHasAPerStepMeanInRangeAndAScaleBetweenOneAndB()
    {
        var x = TensorAssert.Randn(1, 4000, 3);
        var reference = new BatchNorm1d(3).Forward(x).ToArray();
        var noisy = new NoisyBatchNorm(new BatchNorm1d(3), a: 0.5, b: 1.25, rng: new Rng(5));
        var first = noisy.Forward(x).ToArray();
        for (int c = 0; c < 3; c++)
        {
            var noise = Enumerable.Range(0, 4000).Select(i => (double)first[i * 3 + c] - reference[i * 3 + c]).ToArray();
            double mean = noise.Average(), sd = Math.Sqrt(noise.Select(v => (v - mean) * (v - mean)).Average());
            Assert.InRange(mean, -0.5 - 0.1, 0.5 + 0.1);
            Assert.InRange(sd, 0.95, 1.3);
        }
        Assert.NotEqual(first, noisy.Forward(x).ToArray());                                     // a new distribution every step
        Assert.Equal(first, new NoisyBatchNorm(new BatchNorm1d(3), a: 0.5, b: 1.25, rng: new Rng(5)).Forward(x).ToArray()); // seeded
        noisy.Eval();
        var bnEval = new BatchNorm1d(3);
        bnEval.RunningMean!.CopyFrom(noisy.Inner.RunningMean!);
        bnEval.RunningVar!.CopyFrom(noisy.Inner.RunningVar!);
        bnEval.Eval();
        Assert.Equal(bnEval.Forward(x).ToArray(), noisy.Forward(x).ToArray());                  // no noise in eval
    }

    [Theory]
    [InlineData(NoiseKind.Additive)]
    [InlineData(NoiseKind.Multiplicative)]
    public void GradientsWithTheNoiseHeldFixedMatchFiniteDifferences(NoiseKind kind)
    {
        var rng = new Rng(21);
        var state = rng.GetState();
        var layer = new NoisyBatchNorm(new BatchNorm2d(3), a: 1, b: 2, kind: kind, rng: rng);
        GradCheck.Module(new Replayed(layer, rng, state), TensorAssert.Randn(3, 4, 3, 2, 2));
    }

    [Fact]
    public void StateDictNamesAreTheBatchNorms()
    {
        var model = Zoo.Cnn(NormKind.Noisy, rng: new Rng(1));
        var names = model.NamedParameters().Select(p => p.Name).Concat(model.NamedBuffers().Select(b => b.Name)).ToList();
        Assert.Contains("1.weight", names);
        Assert.Contains("1.running_var", names);
        string path = Path.Combine(TempDirs.Create("noisy"), "m.safetensors");
        model.Forward(TensorAssert.Randn(2, 4, 1, 28, 28));
        Checkpoint.SaveModel(path, model);
        Assert.Equal([1L], SafeTensors.Read(path).Tensors["1.num_batches_tracked"].ToInt64s());
    }
}

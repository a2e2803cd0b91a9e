using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>The noise of noisy BatchNorm on its own: NoisyBatchNorm is BatchNorm followed by exactly this noise.</summary>
public class StepNoiseTests
{
    [Theory]
    [InlineData(NoiseKind.Additive)]
    [InlineData(NoiseKind.Multiplicative)]
    public void NoisyBatchNormIsBatchNormThenStepNoise(NoiseKind kind)
    {
        var x = TensorAssert.Randn(2, 16, 3);
        var noisy = new NoisyBatchNorm(new BatchNorm1d(3), a: 1, b: 2, kind: kind, rng: new Rng(7));
        var bn = new BatchNorm1d(3);
        var noise = new StepNoise(1, 2, kind, new Rng(7));
        for (int step = 0; step < 2; step++)
            Assert.Equal(noise.Forward(bn.Forward(x)).ToArray(), noisy.Forward(x).ToArray());
        var dy = TensorAssert.Randn(3, 16, 3);
        Assert.Equal(bn.Backward(noise.Backward(dy)).ToArray(), noisy.Backward(dy).ToArray());
    }

    [Fact]
    public void EvalModeIsTheIdentityAndTrainingModeMovesEveryStep()
    {
        var x = TensorAssert.Randn(4, 10, 5);
        var noise = new StepNoise(0.5, 1.25, rng: new Rng(1));
        var first = noise.Forward(x).ToArray();
        Assert.NotEqual(x.ToArray(), first);
        Assert.NotEqual(first, noise.Forward(x).ToArray());
        noise.Eval();
        Assert.Equal(x.ToArray(), noise.Forward(x).ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => new StepNoise(1, 0.5));
    }

    [Fact]
    public void AdditiveGradientsPassThroughAndMultiplicativeOnesAreScaled()
    {
        var rng = new Rng(21);
        var state = rng.GetState();
        GradCheck.Module(new Replayed(new StepNoise(1, 2, NoiseKind.Multiplicative, rng), rng, state), TensorAssert.Randn(3, 4, 3, 2, 2));
        var add = new StepNoise(1, 2, NoiseKind.Additive, new Rng(2));
        var x = TensorAssert.Randn(5, 4, 3);
        add.Forward(x);
        var dy = TensorAssert.Randn(6, 4, 3);
        Assert.Equal(dy.ToArray(), add.Backward(dy).ToArray());
    }
}

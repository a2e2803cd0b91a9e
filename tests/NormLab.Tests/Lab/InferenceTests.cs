using NormLab.Lab.Measures;
using NormLab.Tests.Support;

namespace NormLab.Tests.Lab;

/// <summary>The remove-bn measures: BN taken out, the relative output difference, interleaved timing.</summary>
public sealed class InferenceTests
{
    [Fact]
    public void RelativeDifferenceIsTheWorstRowsErrorOverThatRowsScale()
    {
        float[] reference = [1f, -2f, 0.5f, 0.25f];
        float[] other = [1.1f, -2f, 0.5f, 0.3f];
        // Row 0: 0.1 / 2 = 0.05; row 1: 0.05 / 0.5 = 0.1.
        Assert.Equal(0.1, Inference.MaxRelativeDifference(reference, other, 2), 6);
        Assert.Equal(0, Inference.MaxRelativeDifference(reference, reference, 2));
        Assert.Equal(double.PositiveInfinity, Inference.MaxRelativeDifference([0f, 0f], [0f, 1e-3f], 2));
        Assert.Throws<ArgumentException>(() => Inference.MaxRelativeDifference(reference, other, 3));
    }

    [Fact]
    public void WithoutBatchNormIsTheNetworkWithIdentityInPlaceOfEachBatchNorm()
    {
        var first = new Linear(6, 5, rng: new Rng(1));
        var bn = new BatchNorm1d(5);
        var relu = new ReLU();
        var last = new Linear(5, 3, rng: new Rng(2));
        var inner = new BatchNorm1d(5);
        var model = new Sequential(first, bn, relu, new Residual(new Sequential(new Linear(5, 5, rng: new Rng(3)), inner)), last);
        var x = TensorAssert.Randn(7, 4, 6);

        // With BN's eval map the identity (mean 0, variance 1, γ 1, β 0, up to ε) the stripped net gives the same output.
        model.Eval();
        var stripped = Inference.WithoutBatchNorm(model);
        var expected = model.Forward(x).ToArray();
        var got = stripped.Forward(x).ToArray();
        for (int i = 0; i < expected.Length; i++)
            Assert.Equal(expected[i], got[i], 1e-4f);

        // Statistics far from the identity change the intact net but not the stripped one, which holds no BN at all.
        bn.RunningMean!.Fill(3f);
        bn.RunningVar!.Fill(4f);
        var moved = model.Forward(x).ToArray();
        var stillStripped = stripped.Forward(x).ToArray();
        Assert.Equal(got, stillStripped);
        Assert.NotEqual(got, moved);
        Assert.Empty(stripped.Modules().OfType<BatchNorm>());
        Assert.Equal(2, model.Modules().OfType<BatchNorm>().Count());
        Assert.Same(first, stripped[0]);
    }

    [Fact]
    public void WithoutBatchNormKeepsTheModelsMode()
    {
        var drop = new Dropout(0.5, new Rng(1));
        var model = new Sequential(new Linear(4, 4, rng: new Rng(1)), new BatchNorm1d(4), drop);
        model.Train();
        Inference.WithoutBatchNorm(model);
        Assert.True(drop.Training);
        model.Eval();
        Inference.WithoutBatchNorm(model);
        Assert.False(drop.Training);
    }

    [Fact]
    public void InterleavedTimingWarmsUpThenAlternatesTheOrder()
    {
        var calls = new List<char>();
        var (a, b) = Inference.Interleaved(() => calls.Add('a'), () => calls.Add('b'), warmup: 1, repetitions: 4);
        Assert.Equal("ab" + "ab" + "ba" + "ab" + "ba", new string([.. calls]));
        Assert.Equal(4, a.Length);
        Assert.Equal(4, b.Length);
        Assert.All(a.Concat(b), t => Assert.True(t >= 0));
    }

    [Fact]
    public void InterleavedTimingMeasuresMilliseconds()
    {
        // Sleep waits at least as long as asked, so the timer must report at least that (in ms, not ticks or seconds).
        var (slow, fast) = Inference.Interleaved(() => Thread.Sleep(30), () => { }, warmup: 0, repetitions: 2);
        Assert.All(slow, t => Assert.InRange(t, 29.5, 5000));
        Assert.All(fast, t => Assert.InRange(t, 0, 29));
    }
}

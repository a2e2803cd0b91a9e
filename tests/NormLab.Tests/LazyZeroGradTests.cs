using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>
/// ZeroGrad is lazy (Parameter.ZeroGrad): the gradient's memory keeps its old values until a reader clears it or a
/// linear layer's backward overwrites it. Stale values here are NaN, so that one that leaks shows.
/// </summary>
[Collection(TeamSize.Collection)]
public class LazyZeroGradTests
{
    public static TheoryData<int, int, int, bool> Shapes => new()
    {
        { 3, 5, 4, true }, { 3, 5, 4, false }, { 60, 784, 100, true }, { 60, 100, 10, false }, { 1, 7, 33, true },
    };

    [Fact]
    public void EveryWayOfZeroingReadsAsZeros()
    {
        var model = new Sequential(new Linear(4, 3, rng: new Rng(1)), new BatchNorm1d(3));
        var optimizer = new Sgd(model.Parameters(), 0.1);
        foreach (Action zero in new Action[] { optimizer.ZeroGrad, model.ZeroGrad, () => model.Parameters().First().ZeroGrad() })
        {
            foreach (var p in model.Parameters())
                p.Grad.Span.Fill(float.NaN);
            zero();
            var first = model.Parameters().First();
            Assert.All(first.Grad.ToArray(), g => Assert.Equal(0f, g));
        }
        optimizer.ZeroGrad();
        foreach (var p in model.Parameters())
            Assert.All(p.Grad.ToArray(), g => Assert.Equal(0f, g));
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void LinearBackwardAfterALazyZeroGivesTheBitsOfAClearedGradient(int n, int inFeatures, int outFeatures, bool bias)
    {
        foreach (int backwards in new[] { 1, 2 })
        {
            var (eagerW, eagerB) = Gradients(n, inFeatures, outFeatures, bias, backwards, lazy: false);
            var (lazyW, lazyB) = Gradients(n, inFeatures, outFeatures, bias, backwards, lazy: true);
            TensorAssert.Bits($"dW after {backwards} backward(s)", eagerW, lazyW);
            if (bias)
                TensorAssert.Bits($"db after {backwards} backward(s)", eagerB!, lazyB!);
        }
    }

    // The gradients of a linear layer after `backwards` backwards from stale NaN gradients zeroed lazily, or cleared at
    // once (through Grad, as before lazy zeroing), on two threads.
    private static (Tensor W, Tensor? B) Gradients(int n, int inFeatures, int outFeatures, bool bias, int backwards, bool lazy)
    {
        using var _ = new TeamSize(2);
        var layer = new Linear(inFeatures, outFeatures, bias, new Rng(3));
        foreach (var p in layer.Parameters())
        {
            p.Grad.Span.Fill(float.NaN);
            if (lazy)
                p.ZeroGrad();
            else
                p.Grad.Zero();
        }
        var x = TensorAssert.Randn(4, n, inFeatures);
        for (int b = 0; b < backwards; b++)
        {
            layer.Forward(x);
            layer.Backward(TensorAssert.Randn(5 + b, n, outFeatures));
        }
        return (layer.Weight.Grad, layer.Bias?.Grad);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void AStepAfterALazyZeroWithoutABackwardSeesZeroGradients(int threads)
    {
        using var _ = new TeamSize(threads);
        const int Length = 40_003; // updated by the team
        var start = TensorAssert.Randn(6, Length).ToArray();
        var p = new Parameter("w", Tensor.FromArray(start, Length), ParameterRole.Weight);
        var optimizer = new Sgd([p], 0.5, weightDecay: 0.1);
        p.Grad.Span.Fill(float.NaN);
        optimizer.ZeroGrad();
        optimizer.Step();
        var w = p.Value.Span;
        for (int i = 0; i < Length; i++)
            Assert.Equal(start[i] - 0.5f * (0f + 0.1f * start[i]), w[i]);
    }
}

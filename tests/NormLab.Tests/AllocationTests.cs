using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>A steady-state training step allocates nothing on the managed heap: modules reuse their buffers.</summary>
[Collection(TeamSize.Collection)]
public class AllocationTests
{
    /// <summary>Bytes allocated by five steady training steps (after three warm-up steps); <paramref name="also"/> runs after each step.</summary>
    internal static long StepAllocations(Module model, Optimizer optimizer, Tensor x, int[] labels, Action? also = null)
    {
        var loss = new SoftmaxCrossEntropy();
        void Step()
        {
            optimizer.ZeroGrad();
            loss.Forward(model.Forward(x), labels);
            model.Backward(loss.Backward());
            optimizer.Step();
            also?.Invoke();
        }
        return Allocations.Steady(Step);
    }

    [Fact]
    public void MlpWithBatchNormAndDropoutTrainingStep()
    {
        var rng = new Rng(1);
        var model = new Sequential(
            new Linear(20, 16, bias: false, rng: rng), new BatchNorm1d(16), new Sigmoid(), new Dropout(0.2, rng.Fork()),
            new Residual(new Sequential(new Linear(16, 16, rng: rng), new Tanh())),
            new Linear(16, 10, rng: rng), new ReLU(), new Linear(10, 10, rng: rng));
        var labels = Enumerable.Range(0, 8).Select(i => i % 10).ToArray();
        Assert.Equal(0, StepAllocations(model, new Sgd(model.Parameters(), 0.1, momentum: 0.9), TensorAssert.Randn(2, 8, 20), labels));
        Assert.Equal(0, StepAllocations(model, new Adam(model.Parameters()), TensorAssert.Randn(3, 8, 20), labels));
    }

    /// <summary>The CNN: Winograd convolutions (conv2), BN + ReLU + pooling fused, the linear layers' backward as two
    /// tasks. On one thread every part runs on the calling thread, where the count sees it; on two, the caller's part.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void CnnTrainingStep(int threads)
    {
        using var _ = new TeamSize(threads);
        Assert.True(NormLab.Kernels.Winograd.Applies<float>(32, 64, new NormLab.Kernels.Window2d(14, 14, 3, 3, 1, 1)));
        var model = NormLab.Models.Zoo.Cnn(NormLab.Models.NormKind.Batch, rng: new Rng(1));
        var labels = Enumerable.Range(0, 4).Select(i => i % 10).ToArray();
        Assert.Equal(0, StepAllocations(model, new Sgd(model.Parameters(), 0.01, momentum: 0.9), TensorAssert.Randn(4, 4, 1, 28, 28), labels));
    }

    [Fact]
    public void BatchNorm2dForwardAndBackwardInBothModes()
    {
        // Train()/Eval() walk the module tree (an iterator); mode switches are not per-step work, so use one layer per mode.
        var training = new BatchNorm2d(3);
        var eval = new BatchNorm2d(3);
        eval.Eval();
        var x = TensorAssert.Randn(4, 4, 3, 5, 5);
        var dy = TensorAssert.Randn(5, 4, 3, 5, 5);
        void Step()
        {
            training.Forward(x);
            training.Backward(dy);
            eval.Forward(x);
            eval.Backward(dy);
        }
        Assert.Equal(0, Allocations.Steady(Step, warmup: 1, repeats: 3));
    }
}

using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>
/// On a team of two, a linear layer's backward runs dx and dW (with db) as two tasks, one per thread; on one thread, one
/// after the other. The gradients must have the same bits either way, and accumulate across backwards the same way.
/// </summary>
[Collection(TeamSize.Collection)]
public class LinearBackwardTests
{
    public static TheoryData<int, int, int, bool, bool> Cases => new()
    {
        { 60, 100, 100, true, true }, { 60, 784, 100, false, false }, { 60, 784, 100, true, false }, { 3, 5, 4, true, true },
        { 128, 3136, 128, false, true }, { 1, 7, 33, true, true },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void TwoThreadsGiveTheBitsOfOne(int n, int inFeatures, int outFeatures, bool bias, bool inputGradient)
    {
        var one = Run(1, n, inFeatures, outFeatures, bias, inputGradient);
        foreach (int threads in new[] { 2, 3 })
        {
            var many = Run(threads, n, inFeatures, outFeatures, bias, inputGradient);
            for (int i = 0; i < one.Length; i++)
                TensorAssert.Bits($"{threads} threads, tensor {i}", one[i], many[i]);
        }
    }

    // dx of the second of two backwards, dW and db accumulated over both (after a lazy zero).
    private static Tensor[] Run(int threads, int n, int inFeatures, int outFeatures, bool bias, bool inputGradient)
    {
        using var _ = new TeamSize(threads);
        var layer = new Linear(inFeatures, outFeatures, bias, new Rng(7)) { NeedsInputGradient = inputGradient };
        layer.ZeroGrad();
        Tensor dx = Module.NoGradient;
        for (int b = 0; b < 2; b++)
        {
            layer.Forward(TensorAssert.Randn(8 + b, n, inFeatures));
            dx = layer.Backward(TensorAssert.Randn(10 + b, n, outFeatures)).Clone();
        }
        Assert.Equal(inputGradient ? n * inFeatures : 0, dx.Length);
        var result = new List<Tensor> { dx, layer.Weight.Grad.Clone() };
        if (layer.Bias is { } b2)
            result.Add(b2.Grad.Clone());
        return result.ToArray();
    }
}

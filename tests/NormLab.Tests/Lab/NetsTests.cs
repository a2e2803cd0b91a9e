using NormLab.Lab;
using NormLab.Models;

namespace NormLab.Tests.Lab;

public sealed class NetsTests
{
    [Fact]
    public void GaussianMlpHasTheSameWeightsWithAndWithoutBn()
    {
        var plain = Nets.GaussianMlp(3, 20, ActivationKind.Sigmoid, bn: false, std: 0.1, new Rng(7));
        var bn = Nets.GaussianMlp(3, 20, ActivationKind.Sigmoid, bn: true, std: 0.1, new Rng(7));
        var a = Nets.Weights(plain);
        var b = Nets.Weights(bn);
        Assert.Equal(4, a.Length);
        for (int k = 0; k < a.Length; k++)
            Assert.Equal(a[k].Value.Span.ToArray(), b[k].Value.Span.ToArray());
        Assert.All(plain.Parameters().Where(p => p.Role == ParameterRole.Bias), p => Assert.All(p.Value.Span.ToArray(), v => Assert.Equal(0f, v)));
        // N(0, 0.1²): the sample std of the 784×20 first layer is 0.1 within a few percent.
        var w = a[0].Value.Span.ToArray();
        double std = Math.Sqrt(w.Select(v => (double)v * v).Average());
        Assert.InRange(std, 0.095, 0.105);
    }

    [Fact]
    public void ScaledSharedWeightsAreTheDefaultDrawTimesTheScale()
    {
        Sequential Build(bool bn, double scale) => Nets.ScaleWeights(Nets.WithSharedWeights(
            r => Zoo.Mlp(784, [50, 50], 10, ActivationKind.ReLU, bn ? NormKind.Batch : NormKind.None, NormPosition.Before, r), new Rng(9)), scale);
        var one = Nets.Weights(Build(false, 1));
        var bnTen = Nets.Weights(Build(true, 10));
        for (int k = 0; k < one.Length; k++)
        {
            var x = one[k].Value.Span.ToArray();
            var y = bnTen[k].Value.Span.ToArray();
            for (int i = 0; i < x.Length; i++)
                Assert.Equal(10 * x[i], y[i], 5);
            // PyTorch's default: U(±1/√fan_in).
            double bound = 1 / Math.Sqrt(one[k].Value.Dim(1));
            Assert.All(x, v => Assert.InRange(v, -bound, bound));
        }
        Assert.Equal(Math.Sqrt(41), Nets.Norm([3f, 4f, 4f, 0f]), 12);   // 3² + 4² + 4²
    }
}

using NormLab.Lab;
using NormLab.Lab.Measures;

namespace NormLab.Tests.Lab;

public sealed class LayerGradientsTests
{
    [Fact]
    public void ZeroLinearLayerHasTheClosedFormGradient()
    {
        // W = 0, b = 0: softmax is uniform, so ∂L/∂W = (1/N) Σ (p − y) xᵀ with p = (½, ½). For x = (1, 2), label 0:
        // p − y = (−½, ½) and ∂L/∂W = [[−½, −1], [½, 1]], whose Frobenius norm is √2.5.
        var layer = new Linear(2, 2, rng: new Rng(1));
        layer.Weight.Value.Zero();
        layer.Bias!.Value.Zero();
        var model = new Sequential(layer);
        var x = new Tensor(1, 2);
        x.Span[0] = 1;
        x.Span[1] = 2;
        var norms = LayerGradients.Norms(model, x, [0]);
        Assert.Single(norms);
        Assert.Equal(Math.Sqrt(2.5), norms[0], 6);
    }

    [Fact]
    public void AveragesOverTheBatch()
    {
        // Two copies of the same example give the same mean gradient as one.
        var layer = new Linear(2, 2, rng: new Rng(1));
        layer.Weight.Value.Zero();
        layer.Bias!.Value.Zero();
        var x = new Tensor(2, 2);
        x.Span.Fill(1);
        // p − y = (−½, ½) for label 0 and x = (1, 1): ∂L/∂W = [[−½, −½], [½, ½]], norm 1.
        Assert.Equal(1.0, LayerGradients.Norms(new Sequential(layer), x, [0, 0])[0], 6);
    }

    [Fact]
    public void LeavesTheModelAsItWasWithGradientsZeroed()
    {
        var model = Nets.GaussianMlp(2, 8, NormLab.Models.ActivationKind.Sigmoid, bn: true, std: 0.5, new Rng(3));
        var rng = new Rng(4);
        var x = new Tensor(16, 784);
        Init.Normal(x, rng, 1);
        int[] labels = Enumerable.Range(0, 16).Select(i => i % 10).ToArray();
        var before = model.Parameters().Select(p => p.Value.Span.ToArray()).Concat(model.NamedBuffers().Select(b => b.Value.Span.ToArray())).ToArray();
        var norms = LayerGradients.Norms(model, x, labels);
        Assert.Equal(3, norms.Length);
        Assert.All(norms, n => Assert.True(n > 0 && double.IsFinite(n)));
        var after = model.Parameters().Select(p => p.Value.Span.ToArray()).Concat(model.NamedBuffers().Select(b => b.Value.Span.ToArray())).ToArray();
        Assert.Equal(before.Length, after.Length);
        for (int i = 0; i < before.Length; i++)
            Assert.Equal(before[i], after[i]);
        Assert.All(model.Parameters(), p => Assert.All(p.Grad.Span.ToArray(), g => Assert.Equal(0f, g)));
        // The same call again gives the same answer: nothing leaked from the first.
        Assert.Equal(norms, LayerGradients.Norms(model, x, labels));
    }
}

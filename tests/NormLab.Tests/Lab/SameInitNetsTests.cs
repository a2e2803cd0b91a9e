using NormLab.Lab.Experiments;
using NormLab.Models;

namespace NormLab.Tests.Lab;

/// <summary>The networks of placement, regularization and remove-bn start from the same weights in every variant.</summary>
public sealed class SameInitNetsTests
{
    private static float[][] Weights(Sequential model) =>
        model.Modules().Select(m => m switch { Linear l => l.Weight.Value.ToArray(), Conv2d c => c.Weight.Value.ToArray(), _ => null })
            .OfType<float[]>().ToArray();

    [Fact]
    public void MlpVariantsShareTheirWeights()
    {
        var plain = SameInitNets.Mlp([16, 8], false, NormPosition.Before, 0, new Rng(5));
        var variants = new[]
        {
            SameInitNets.Mlp([16, 8], true, NormPosition.Before, 0, new Rng(5)),
            SameInitNets.Mlp([16, 8], true, NormPosition.After, 0, new Rng(5)),
            SameInitNets.Mlp([16, 8], false, NormPosition.Before, 0.5, new Rng(5)),
            SameInitNets.Mlp([16, 8], true, NormPosition.Before, 0.5, new Rng(5)),
        };
        foreach (var v in variants)
            Assert.Equal(Weights(plain), Weights(v));
        Assert.NotEqual(Weights(plain), Weights(SameInitNets.Mlp([16, 8], false, NormPosition.Before, 0, new Rng(6))));
    }

    [Fact]
    public void CnnVariantsShareTheirWeights()
    {
        var plain = SameInitNets.Cnn(false, NormPosition.Before, new Rng(5));
        Assert.Equal(Weights(plain), Weights(SameInitNets.Cnn(true, NormPosition.Before, new Rng(5))));
        Assert.Equal(Weights(plain), Weights(SameInitNets.Cnn(true, NormPosition.After, new Rng(5))));
    }

    [Fact]
    public void PlacementOrdersBatchNormAndReluAndDropsTheBiasOnlyBeforeBatchNorm()
    {
        string Layout(Sequential m) => string.Join(" ", m.Layers.Select(l => l switch
        {
            Linear lin => lin.Bias is null ? "L" : "Lb",
            BatchNorm => "BN",
            ReLU => "R",
            Dropout => "D",
            _ => "?",
        }));
        Assert.Equal("L BN R D L BN R D Lb", Layout(SameInitNets.Mlp([16, 8], true, NormPosition.Before, 0.5, new Rng(1))));
        Assert.Equal("Lb R BN Lb R BN Lb", Layout(SameInitNets.Mlp([16, 8], true, NormPosition.After, 0, new Rng(1))));
        Assert.Equal("Lb R Lb R Lb", Layout(SameInitNets.Mlp([16, 8], false, NormPosition.Before, 0, new Rng(1))));
        var cnn = SameInitNets.Cnn(true, NormPosition.After, new Rng(1));
        Assert.IsType<ReLU>(cnn[1]);
        Assert.IsType<BatchNorm2d>(cnn[2]);
        var y = cnn.Forward(new Tensor(2, 1, 28, 28));
        Assert.Equal([2, 10], y.Shape.ToArray());
    }
}

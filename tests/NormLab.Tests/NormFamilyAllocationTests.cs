using NormLab.Models;
using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>Every normalization of the family keeps the hot path free of allocations: a steady training step and an eval forward allocate nothing.</summary>
public class NormFamilyAllocationTests
{
    public static TheoryData<NormKind> Kinds()
    {
        var data = new TheoryData<NormKind>();
        foreach (var kind in Enum.GetValues<NormKind>())
            data.Add(kind);
        return data;
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void MlpTrainingStepAndEvalForwardAllocateNothing(NormKind kind)
    {
        var model = Zoo.Mlp(20, [32, 32], 10, ActivationKind.ReLU, kind, rng: new Rng(3));
        var frozen = Zoo.Mlp(20, [32, 32], 10, ActivationKind.ReLU, kind, rng: new Rng(3)).Eval();
        var x = TensorAssert.Randn(4, 40, 20);
        var labels = Enumerable.Range(0, 40).Select(i => i % 10).ToArray();
        Assert.Equal(0, AllocationTests.StepAllocations(model, new Sgd(model.Parameters(), 0.01, momentum: 0.9), x, labels, () => frozen.Forward(x)));
    }
}

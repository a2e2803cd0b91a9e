using NormLab.Kernels;
using NormLab.Models;
using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>
/// BatchNorm followed by ReLU run as one layer (<see cref="Sequential.FuseBatchNormRelu"/>): the fused modules against the
/// two layers run one after the other, bit for bit (the fused kernels' gradients against central differences in double
/// are in <see cref="BatchNormKernelTests"/>).
/// </summary>
public class FusedReluTests
{
    public static TheoryData<int[], string> ModuleCases => new()
    {
        { [5, 6, 7, 7], "train" },      // channel groups of 49-value planes, in pairs and one alone
        { [4, 3, 16, 16], "train" },    // in-order blocks
        { [2, 3, 40, 40], "train" },    // one channel per group
        { [64, 16, 64, 64], "train" },  // 16 MiB: the maps stream with non-temporal stores
        { [3, 4, 5], "train" },         // BatchNorm1d over [N, C, L]
        { [5, 6, 7, 7], "eval" },
        { [4, 3, 16, 16], "eval" },
        { [64, 16, 64, 64], "eval" },
        { [5, 6, 7, 7], "frozen" },
        { [4, 3, 16, 16], "no-affine" },
    };

    [Theory]
    [MemberData(nameof(ModuleCases))]
    public void FusedLayersGiveTheBitsOfTheLayersOneAfterTheOther(int[] shape, string mode)
    {
        var (fused, fusedBn) = Pair(shape, mode, fuse: true);
        var (plain, plainBn) = Pair(shape, mode, fuse: false);
        var x = TensorAssert.Randn(11, shape);
        foreach (ref float v in x.Span)
            v = 3 * v + 0.5f;
        FusedAssert.SameSteps(plain, plainBn, fused, fusedBn, x, TensorAssert.Randn(12, shape));
    }

    [Fact]
    public void SignedZerosInfinitiesAndNaNLeaveTheFusedMapAsReluLeavesThem()
    {
        // γ = 0 and β = −0 make y = ±0 by the sign of x − μ; NaN and ±∞ go through the fixed statistics of eval mode.
        const int n = 2, c = 2, s = 24;
        var x = new float[n * c * s];
        var special = new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity, -0f, 0f, -1e-30f, 1e30f, -3f, 2f };
        for (int i = 0; i < x.Length; i++)
            x[i] = special[i % special.Length];
        double[] mean = [0.0, 1.0], invStd = [1.0, 0.5];
        foreach (var (gamma, beta) in new (float[], float[])[] { ([0f, 0f], [-0f, -0f]), ([1f, -2f], [0f, 0.5f]) })
        {
            var y = new float[x.Length];
            var expected = new float[x.Length];
            var actual = new float[x.Length];
            BatchNormKernels.Normalize<float>(y, x, mean, invStd, gamma, beta, n, c, s);
            Activations.Relu<float>(expected, y);
            BatchNormKernels.Normalize<float>(actual, x, mean, invStd, gamma, beta, n, c, s, relu: true);
            for (int i = 0; i < x.Length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                    $"x = {x[i]}: ReLU gives {expected[i]}, the fused map {actual[i]}");
        }
    }

    [Fact]
    public void AHookSeesThePreActivationOutputAndTurnsTheFusionOff()
    {
        var (model, bn) = Pair([4, 3, 6, 6], "train", fuse: true);
        var (plain, _) = Pair([4, 3, 6, 6], "train", fuse: false);
        var x = TensorAssert.Randn(3, 4, 3, 6, 6);
        Tensor? seen = null;
        bn.ForwardHook = (_, _, y) => seen = y.Clone();
        var z = model.Forward(x);
        Assert.NotNull(seen);
        Assert.Contains(seen.Span.ToArray(), v => v < 0); // BN's own output, before the ReLU
        AssertBits("z", plain.Forward(x), z);
        var dz = TensorAssert.Randn(4, 4, 3, 6, 6);
        AssertBits("dx", plain.Backward(dz), model.Backward(dz));
    }

    [Fact]
    public void EachModuleStillBackpropagatesAloneAfterAFusedForward()
    {
        var (model, bn) = Pair([4, 3, 6, 6], "train", fuse: true);
        var (plain, plainBn) = Pair([4, 3, 6, 6], "train", fuse: false);
        var x = TensorAssert.Randn(5, 4, 3, 6, 6);
        var dz = TensorAssert.Randn(6, 4, 3, 6, 6);
        model.Forward(x);
        plain.Forward(x);
        var relu = (ReLU)model[1];
        var dy = relu.Backward(dz).Clone();
        AssertBits("ReLU dx", plain[1].Backward(dz), dy);
        AssertBits("BatchNorm dx", plainBn.Backward(dy), bn.Backward(dy));
        Assert.Throws<ArgumentException>(() => bn.Backward(new Tensor(4, 3, 6, 5)));
    }

    [Fact]
    public void DenseBatchNormKeepsItsReluAsALayer()
    {
        var bn = new BatchNorm1d(5);
        Assert.False(bn.CanFuseRelu(new Tensor(4, 5), new ReLU()));
        Assert.True(bn.CanFuseRelu(new Tensor(4, 5, 2), new ReLU()));
        Assert.False(new SyncBatchNorm(5).CanFuseRelu(new Tensor(4, 5, 2), new ReLU()));
        Assert.Throws<ArgumentException>(() => BatchNormKernels.Normalize<float>(new float[20], new float[20], new double[5], new double[5],
            default, default, 4, 5, 1, relu: true));
    }

    [Fact]
    public void TrainingTheCnnGivesTheSameWeightsFusedOrNot()
    {
        var fused = Zoo.Cnn(NormKind.Batch, rng: new Rng(7));
        var plain = Zoo.Cnn(NormKind.Batch, rng: new Rng(7));
        plain.FuseBatchNormRelu = false;
        var x = TensorAssert.Randn(8, 6, 1, 28, 28);
        int[] labels = [0, 1, 2, 3, 4, 5];
        foreach (var model in new[] { fused, plain })
        {
            var optimizer = new Sgd(model.Parameters(), 0.1, momentum: 0.9);
            var loss = new SoftmaxCrossEntropy();
            for (int step = 0; step < 3; step++)
            {
                optimizer.ZeroGrad();
                loss.Forward(model.Forward(x), labels);
                model.Backward(loss.Backward());
                optimizer.Step();
            }
        }
        foreach (var ((name, p), (_, q)) in plain.NamedParameters().Zip(fused.NamedParameters()))
            AssertBits(name, p.Value, q.Value);
    }

    // Sequential(BatchNorm, ReLU) with random γ and β (the same in every pair built with the same arguments).
    private static (Sequential Model, BatchNorm Bn) Pair(int[] shape, string mode, bool fuse)
    {
        int c = shape[1];
        BatchNorm bn = shape.Length == 4 ? new BatchNorm2d(c, affine: mode != "no-affine") : new BatchNorm1d(c);
        var rng = new Rng(21);
        if (bn.Weight is not null)
        {
            Init.Normal(bn.Weight.Value, rng, 0.5);
            Init.Normal(bn.Bias!.Value, rng, 0.5);
        }
        if (mode is "eval" or "frozen")
        {
            Init.Normal(bn.RunningMean!, rng, 1.0);
            bn.RunningVar!.Fill(2.5f);
        }
        var model = new Sequential(bn, new ReLU()) { FuseBatchNormRelu = fuse };
        if (mode == "eval")
            model.Eval();
        if (mode == "frozen")
            bn.Freeze();
        return (model, bn);
    }

    private static void AssertBits(string label, Tensor expected, Tensor actual) => TensorAssert.Bits(label, expected, actual);
}

using NormLab.Kernels;
using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>
/// BatchNorm2d, ReLU and a 2×2 MaxPool2d run in one normalize pass (<see cref="BatchNorm.ForwardReluPool"/>): against the
/// three layers one after the other, bit for bit, in every mode; where the pool cannot be fused the pair still is.
/// </summary>
public class FusedPoolTests
{
    public static TheoryData<int[], string> Cases => new()
    {
        { [5, 6, 8, 8], "train" },      // short planes: the statistics walk channel groups; one group of four windows a row
        { [4, 3, 28, 28], "train" },    // the CNN's first block: in-order statistics, 14 windows a row (the last group overlaps)
        { [3, 4, 14, 14], "train" },    // the CNN's second block: 7 windows a row
        { [2, 3, 64, 64], "train" },    // planes of a page: one channel per group
        { [3, 2, 10, 16], "train" },    // unequal sides, 5 rows of 8 windows
        { [4, 3, 28, 28], "eval" },
        { [5, 6, 8, 8], "frozen" },
        { [4, 3, 14, 14], "no-affine" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void FusedLayersGiveTheBitsOfTheLayersOneAfterTheOther(int[] shape, string mode)
    {
        var (fused, fusedBn) = Block(shape, mode, fuse: true);
        var (plain, plainBn) = Block(shape, mode, fuse: false);
        var x = TensorAssert.Randn(11, shape);
        foreach (ref float v in x.Span)
            v = 3 * v + 0.5f;
        Assert.True(fusedBn.CanFuseReluPool(x, (ReLU)fused[1], (MaxPool2d)fused[2]));
        // dx goes back through the argmax: the same windows must have won.
        FusedAssert.SameSteps(plain, plainBn, fused, fusedBn, x, TensorAssert.Randn(12, shape[0], shape[1], shape[2] / 2, shape[3] / 2));
    }

    [Fact]
    public void TiesNaNAndInfinitiesPoolAsMaxPoolPoolsThem()
    {
        // Eval mode with γ = 1, β = 0, μ = 0, σ ≈ 1: windows of equal values (ties go to the first), all-negative windows
        // (all rectified to 0: the first wins), NaN (wins) and ±∞.
        const int n = 1, c = 2, h = 4, w = 8;
        float[] special = [float.NaN, float.PositiveInfinity, float.NegativeInfinity, -0f, 0f, -3f, 2f, 2f, -1f, 1e30f, -1e30f];
        var (fused, _) = Block([n, c, h, w], "eval", fuse: true, plainStatistics: true);
        var (plain, _) = Block([n, c, h, w], "eval", fuse: false, plainStatistics: true);
        var x = new Tensor(n, c, h, w);
        for (int i = 0; i < x.Length; i++)
            x.Span[i] = special[i * 7 % special.Length];
        AssertBits("z", plain.Forward(x).Clone(), fused.Forward(x));
        var dz = TensorAssert.Randn(3, n, c, h / 2, w / 2);
        AssertBits("dx", plain.Backward(dz), fused.Backward(dz));
    }

    [Theory]
    [InlineData(4, 3, 7, 8)]   // odd height: the windows do not tile the plane
    [InlineData(4, 3, 6, 6)]   // three windows a row
    public void PlanesThePoolingKernelDoesNotTakeKeepThePoolApart(int n, int c, int h, int w)
    {
        var (fused, bn) = Block([n, c, h, w], "train", fuse: true);
        var (plain, _) = Block([n, c, h, w], "train", fuse: false);
        var x = TensorAssert.Randn(5, n, c, h, w);
        Assert.False(bn.CanFuseReluPool(x, (ReLU)fused[1], (MaxPool2d)fused[2]));
        AssertBits("z", plain.Forward(x).Clone(), fused.Forward(x));
        var relu = (ReLU)fused[1];
        Assert.Equal(relu.Backward(TensorAssert.Randn(6, n, c, h, w)).Shape.ToArray(), new[] { n, c, h, w }); // the pair kept its output
    }

    [Fact]
    public void OtherPoolsAndHooksKeepThePoolApart()
    {
        var x = TensorAssert.Randn(7, 2, 3, 8, 8);
        var bn = new BatchNorm2d(3);
        var relu = new ReLU();
        Assert.False(bn.CanFuseReluPool(x, relu, new MaxPool2d(3, stride: 2, padding: 1)));
        Assert.False(bn.CanFuseReluPool(x, relu, new MaxPool2d(2, stride: 1)));
        var hooked = new MaxPool2d(2) { ForwardHook = (_, _, _) => { } };
        Assert.False(bn.CanFuseReluPool(x, relu, hooked));
        relu.BackwardHook = (_, _, _) => { };
        Assert.False(bn.CanFuseReluPool(x, relu, new MaxPool2d(2)));
    }

    [Fact]
    public void TheReluAloneRefusesItsBackwardAfterAFusedForwardAndRunsAgainAfterItsOwn()
    {
        var (model, _) = Block([2, 3, 8, 8], "train", fuse: true);
        var x = TensorAssert.Randn(8, 2, 3, 8, 8);
        model.Forward(x);
        var relu = (ReLU)model[1];
        var e = Assert.Throws<InvalidOperationException>(() => relu.Backward(TensorAssert.Randn(9, 2, 3, 8, 8)));
        Assert.Contains("FuseBatchNormRelu", e.Message);
        var dy = TensorAssert.Randn(9, 2, 3, 8, 8);
        var y = relu.Forward(x);
        var dx = relu.Backward(dy);
        for (int i = 0; i < dx.Length; i++)
            Assert.Equal(y.Span[i] > 0 ? dy.Span[i] : 0f, dx.Span[i]);
    }

    // The pooled backward against the pooling's backward and then the fused pair's, on the kernels: the same bits, with
    // ties (all-negative windows rectify to 0) and an odd number of samples per block.
    [Theory]
    [InlineData(5, 3, 28, 28)]
    [InlineData(7, 4, 14, 14)]
    [InlineData(3, 2, 10, 16)]
    public void ThePooledBackwardGivesTheBitsOfThePoolingsBackwardThenThePairs(int n, int c, int h, int w)
    {
        Assert.True(BatchNormKernels.PoolsBackward(n, c, h, w));
        int s = h * w, m = n * c * s;
        var rng = new Rng(31);
        var x = Enumerable.Range(0, m).Select(_ => (float)(2 * rng.NextGaussian() + 0.3)).ToArray();
        var gamma = Enumerable.Range(0, c).Select(_ => (float)(1 + 0.5 * rng.NextGaussian())).ToArray();
        var beta = Enumerable.Range(0, c).Select(_ => (float)(0.5 * rng.NextGaussian())).ToArray();
        double[] mean = new double[c], m2 = new double[c], invStd = new double[c];
        BatchNormKernels.Moments<float>(x, n, c, s, mean, m2);
        BatchNormKernels.InvStd(invStd, m2, (double)n * s, 1e-5);
        var pooled = new float[m / 4];
        var argmax = new int[m / 4];
        BatchNormKernels.NormalizeReluPool(pooled, argmax, x, mean, invStd, gamma, beta, n, c, h, w);
        var dyPooled = Enumerable.Range(0, m / 4).Select(_ => (float)rng.NextGaussian()).ToArray();

        var dz = new float[m];
        Pooling.MaxBackward<float>(dz, dyPooled, argmax, n * c, new Window2d(h, w, 2, 2, 2, 0));
        float[] dxExpected = new float[m], dGammaExpected = new float[c], dBetaExpected = new float[c];
        BatchNormKernels.BackwardBatchStats<float>(dxExpected, dGammaExpected, dBetaExpected, dz, x, mean, invStd, gamma, beta, n, c, s, relu: true);
        float[] dx = new float[m], dGamma = new float[c], dBeta = new float[c];
        BatchNormKernels.BackwardReluPool(dx, dGamma, dBeta, dyPooled, argmax, x, mean, invStd, gamma, beta, n, c, h, w);

        Assert.Contains(dz, v => v == 0);
        Assert.True(dxExpected.AsSpan().SequenceEqual(dx), "dx differs");
        Assert.True(dGammaExpected.AsSpan().SequenceEqual(dGamma), "dγ differs");
        Assert.True(dBetaExpected.AsSpan().SequenceEqual(dBeta), "dβ differs");
    }

    [Fact]
    public void AHookOnThePoolAddedAfterTheForwardGetsItsBackwardAndTheSameBits()
    {
        var (fused, _) = Block([4, 3, 28, 28], "train", fuse: true);
        var (plain, _) = Block([4, 3, 28, 28], "train", fuse: false);
        var x = TensorAssert.Randn(13, 4, 3, 28, 28);
        var dz = TensorAssert.Randn(14, 4, 3, 14, 14);
        fused.Forward(x);
        plain.Forward(x);
        int calls = 0;
        fused[2].BackwardHook = (_, _, _) => calls++;
        AssertBits("dx", plain.Backward(dz), fused.Backward(dz));
        Assert.Equal(1, calls);
    }

    [Fact]
    public void TheKernelRejectsPlanesItDoesNotPool()
    {
        // Six wide: fewer than four windows a row.
        Assert.Throws<ArgumentException>(() => BatchNormKernels.NormalizeReluPool(new float[9], new int[9], new float[36], new double[1],
            new double[1], default, default, 1, 1, 6, 6));
        // 4×16 planes pool into 16 values, not 8.
        Assert.Throws<ArgumentException>(() => BatchNormKernels.NormalizeReluPool(new float[8], new int[8], new float[64], new double[1],
            new double[1], default, default, 1, 1, 4, 16));
    }

    // Sequential(BatchNorm2d, ReLU, MaxPool2d(2)) with random γ and β (the same in every block built with the same arguments).
    private static (Sequential Model, BatchNorm Bn) Block(int[] shape, string mode, bool fuse, bool plainStatistics = false)
    {
        var bn = new BatchNorm2d(shape[1], affine: mode != "no-affine");
        var rng = new Rng(21);
        if (bn.Weight is not null && !plainStatistics)
        {
            Init.Normal(bn.Weight.Value, rng, 0.5);
            Init.Normal(bn.Bias!.Value, rng, 0.5);
        }
        if (mode is "eval" or "frozen" && !plainStatistics)
        {
            Init.Normal(bn.RunningMean!, rng, 1.0);
            bn.RunningVar!.Fill(2.5f);
        }
        var model = new Sequential(bn, new ReLU(), new MaxPool2d(2)) { FuseBatchNormRelu = fuse };
        if (mode == "eval")
            model.Eval();
        if (mode == "frozen")
            bn.Freeze();
        return (model, bn);
    }

    private static void AssertBits(string label, Tensor expected, Tensor actual) => TensorAssert.Bits(label, expected, actual);
}

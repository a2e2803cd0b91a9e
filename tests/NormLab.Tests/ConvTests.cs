using NormLab.Kernels;
using NormLab.Tests.Support;

namespace NormLab.Tests;

public class ConvTests
{
    // n, C_in, C_out, H, W, kh, kw, stride, padding
    public static TheoryData<int, int, int, int, int, int, int, int, int> Cases => new()
    {
        { 2, 1, 1, 1, 1, 1, 1, 1, 0 },   // H = W = 1, pointwise (the im2col-free path)
        { 2, 1, 2, 1, 1, 3, 3, 1, 1 },   // H = W = 1 inside a 3×3 kernel: only the centre tap sees data
        { 1, 2, 3, 5, 5, 3, 3, 1, 0 },   // odd size, no padding
        { 2, 3, 2, 7, 6, 3, 3, 2, 1 },   // non-square input, stride 2, padding 1
        { 1, 2, 2, 8, 7, 3, 3, 2, 0 },   // (8 − 3)/2 rounds down: the last row is never read
        { 2, 2, 3, 5, 4, 2, 3, 2, 1 },   // rectangular kernel
        { 1, 3, 2, 5, 5, 1, 1, 2, 0 },   // 1×1 with stride: goes through im2col
        { 2, 2, 2, 3, 4, 1, 1, 1, 1 },   // 1×1 with padding: a border of pure bias
        { 1, 1, 1, 6, 6, 4, 4, 3, 2 },   // padding 2, stride 3
        { 2, 3, 2, 5, 9, 3, 3, 1, 1 },   // "same" width with stride 1: the shifted runs of im2col and col2im
        { 1, 2, 2, 6, 8, 5, 5, 1, 2 },   // the same with a 5×5 kernel: shifts of two columns and rows
        { 1, 2, 2, 4, 10, 1, 3, 1, 1 },  // a shifted run whose first and last rows read the padding (OH = H + 2)
        { 1, 2, 2, 7, 8, 5, 3, 1, 1 },   // a shifted run over fewer rows than the plane (OH = H − 2)
        { 1, 2, 2, 1, 4, 3, 3, 1, 1 },   // shifted runs shorter than a vector (one line of 4)
        { 2, 2, 14, 5, 4, 3, 3, 1, 1 },  // 12 < C_out < K: the weight gradient as dWᵀ = col·dyᵀ
        { 2, 16, 13, 3, 3, 1, 1, 1, 0 }, // the same, pointwise
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void DoubleKernelGradientsMatchFiniteDifferences(int n, int cIn, int cOut, int h, int w, int kh, int kw, int stride, int padding)
    {
        var rng = new Rng(11);
        var win = new Window2d(h, w, kh, kw, stride, padding);
        var x = Doubles.Gaussian(rng, n * cIn * h * w);
        var weight = Doubles.Gaussian(rng, cOut * cIn * kh * kw);
        var bias = Doubles.Gaussian(rng, cOut);
        var r = Doubles.Gaussian(rng, n * cOut * win.OutPlaneSize);
        var y = new double[r.Length];
        var col = new double[Conv.ScratchSize(n, cIn, cOut, win)];
        double Loss()
        {
            Conv.Forward<double>(y, x, weight, bias, col, n, cIn, cOut, win);
            return Doubles.Dot(y, r);
        }

        var dx = new double[x.Length];
        var dW = new double[weight.Length];
        var db = new double[cOut];
        Conv.Backward<double>(dx, dW, db, r, x, weight, col, n, cIn, cOut, win);
        GradCheck.Double("conv dx", x, dx, Loss);
        GradCheck.Double("conv dW", weight, dW, Loss);
        GradCheck.Double("conv db", bias, db, Loss);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void DoubleKernelForwardMatchesDirectConvolution(int n, int cIn, int cOut, int h, int w, int kh, int kw, int stride, int padding)
    {
        var rng = new Rng(12);
        var win = new Window2d(h, w, kh, kw, stride, padding);
        var x = Doubles.Gaussian(rng, n * cIn * h * w);
        var weight = Doubles.Gaussian(rng, cOut * cIn * kh * kw);
        var bias = Doubles.Gaussian(rng, cOut);
        var y = new double[n * cOut * win.OutPlaneSize];
        Conv.Forward<double>(y, x, weight, bias, new double[Conv.ScratchSize(n, cIn, cOut, win)], n, cIn, cOut, win);

        int outH = win.OutHeight, outW = win.OutWidth;
        Assert.Equal((h + 2 * padding - kh) / stride + 1, outH);
        Assert.Equal((w + 2 * padding - kw) / stride + 1, outW);
        for (int img = 0; img < n; img++)
            for (int co = 0; co < cOut; co++)
                for (int oy = 0; oy < outH; oy++)
                    for (int ox = 0; ox < outW; ox++)
                    {
                        double sum = bias[co];
                        for (int ci = 0; ci < cIn; ci++)
                            for (int i = 0; i < kh; i++)
                                for (int j = 0; j < kw; j++)
                                {
                                    int iy = oy * stride - padding + i, ix = ox * stride - padding + j;
                                    if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                                        sum += weight[((co * cIn + ci) * kh + i) * kw + j] * x[((img * cIn + ci) * h + iy) * w + ix];
                                }
                        double got = y[((img * cOut + co) * outH + oy) * outW + ox];
                        Assert.True(Math.Abs(got - sum) <= 1e-12 * (1 + Math.Abs(sum)), $"y[{img},{co},{oy},{ox}] = {got}, direct sum {sum}");
                    }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Col2ImIsTheAdjointOfIm2Col(int n, int cIn, int cOut, int h, int w, int kh, int kw, int stride, int padding)
    {
        _ = (n, cOut);
        var rng = new Rng(13);
        var win = new Window2d(h, w, kh, kw, stride, padding);
        var x = Doubles.Gaussian(rng, cIn * h * w);
        var c = Doubles.Gaussian(rng, cIn * kh * kw * win.OutPlaneSize);
        var col = new double[c.Length];
        var back = new double[x.Length];
        Conv.Im2Col<double>(col, x, cIn, win);
        Conv.Col2Im<double>(back, c, cIn, win);
        double lhs = Doubles.Dot(col, c), rhs = Doubles.Dot(x, back);
        Assert.True(Math.Abs(lhs - rhs) <= 1e-12 * (1 + Math.Abs(lhs)), $"<im2col(x), c> = {lhs} but <x, col2im(c)> = {rhs}");
    }

    [Fact]
    public void ModuleForwardMatchesHandComputedExample()
    {
        // x: channel 0 = 1..9 in a 3×3 grid, channel 1 = all ones. Filter 0: [[1, 2], [3, 4]] on channel 0, ones on channel 1.
        // Filter 1: [[0, 0], [0, −1]] on channel 0, nothing on channel 1.
        var conv = new Conv2d(2, 2, 2, rng: new Rng(1));
        conv.Weight.Value.Span.Clear();
        float[] w = [1, 2, 3, 4, 1, 1, 1, 1, 0, 0, 0, -1, 0, 0, 0, 0];
        w.CopyTo(conv.Weight.Value.Span);
        conv.Bias!.Value[0] = 0.5f;
        conv.Bias.Value[1] = -1f;
        var x = Tensor.FromArray([1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 1, 1, 1, 1, 1, 1, 1, 1], 1, 2, 3, 3);
        var y = conv.Forward(x);
        Assert.Equal([1, 2, 2, 2], y.Shape.ToArray());
        // 1·1 + 2·2 + 3·4 + 4·5 = 37, plus 4 ones and the bias 0.5; the others shift by one pixel.
        TensorAssert.Close("filter 0", new float[] { 41.5f, 51.5f, 71.5f, 81.5f }, y.Span[..4]);
        // −x[i + 1, j + 1] − 1
        TensorAssert.Close("filter 1", new float[] { -6, -7, -9, -10 }, y.Span[4..]);
    }

    [Fact]
    public void ModuleForwardWithPaddingAndStrideMatchesHandComputedExample()
    {
        // 3×3 input 1..9, 2×2 kernel [[1, 2], [3, 4]], padding 1, stride 2: windows start at rows/cols −1 and 1.
        var conv = new Conv2d(1, 1, 2, stride: 2, padding: 1, bias: false, rng: new Rng(1));
        float[] w = [1, 2, 3, 4];
        w.CopyTo(conv.Weight.Value.Span);
        var y = conv.Forward(Tensor.FromArray([1, 2, 3, 4, 5, 6, 7, 8, 9], 1, 1, 3, 3));
        Assert.Equal([1, 1, 2, 2], y.Shape.ToArray());
        // (−1,−1): only x[0,0] under tap 4 → 4. (−1,1): x[0,1], x[0,2] under taps 3, 4 → 6 + 12.
        // (1,−1): x[1,0], x[2,0] under taps 2, 4 → 8 + 28. (1,1): the full window 5, 6, 8, 9 → 5 + 12 + 24 + 36.
        TensorAssert.Close("y", new float[] { 4, 18, 36, 77 }, y.Span);
    }

    [Fact]
    public void ModuleHasPyTorchParametersAndInit()
    {
        var conv = new Conv2d(3, 5, 3, stride: 2, padding: 1, rng: new Rng(3));
        Assert.Equal((3, 5, 3, 2, 1), (conv.InChannels, conv.OutChannels, conv.KernelSize, conv.Stride, conv.Padding));
        Assert.Equal([5, 3, 3, 3], conv.Weight.Value.Shape.ToArray());
        Assert.Equal([5], conv.Bias!.Value.Shape.ToArray());
        var named = conv.NamedParameters().ToList();
        Assert.Equal(["weight", "bias"], named.Select(p => p.Name));
        Assert.Equal(ParameterRole.Weight, conv.Weight.Role);
        Assert.Equal(ParameterRole.Bias, conv.Bias.Role);
        float bound = 1f / MathF.Sqrt(3 * 3 * 3);
        foreach (var p in conv.Parameters())
            foreach (float v in p.Value.Span)
                Assert.InRange(v, -bound, bound);
        Assert.True(conv.Weight.Value.Span.ToArray().Max() > bound / 2, "Kaiming-uniform draws should spread over the bound");
        Assert.Null(new Conv2d(3, 5, 3, bias: false).Bias);
        Assert.Single(new Conv2d(3, 5, 3, bias: false).Parameters());
        Assert.Equal(new Conv2d(2, 2, 3, rng: new Rng(9)).Weight.Value.ToArray(), new Conv2d(2, 2, 3, rng: new Rng(9)).Weight.Value.ToArray());
    }

    public static TheoryData<int, int, int, int, int, bool, int, int> ModuleCases => new()
    {
        // C_in, C_out, k, stride, padding, bias, H, W
        { 2, 3, 3, 2, 1, true, 7, 6 },
        { 1, 2, 3, 1, 1, true, 1, 1 },
        { 3, 2, 1, 1, 0, false, 4, 5 },
        { 2, 2, 2, 1, 0, true, 5, 3 },
        { 3, 13, 3, 1, 1, false, 6, 5 }, // 12 < C_out < K: the weight gradient as dWᵀ = col·dyᵀ
    };

    [Theory]
    [MemberData(nameof(ModuleCases))]
    public void FloatModuleGradientMatchesFiniteDifferences(int cIn, int cOut, int k, int stride, int padding, bool bias, int h, int w)
    {
        var conv = new Conv2d(cIn, cOut, k, stride, padding, bias, new Rng(5));
        GradCheck.Module(conv, TensorAssert.Randn(6, 2, cIn, h, w));
    }

    [Fact]
    public void BackwardAccumulatesParameterGradientsAndOverwritesInputGradient()
    {
        var conv = new Conv2d(2, 3, 3, padding: 1, rng: new Rng(2));
        var x = TensorAssert.Randn(1, 2, 2, 4, 4);
        var dy = TensorAssert.Randn(2, 2, 3, 4, 4);
        conv.Forward(x);
        conv.ZeroGrad();
        var dx1 = conv.Backward(dy).Clone();
        var dW1 = conv.Weight.Grad.Clone();
        var db1 = conv.Bias!.Grad.Clone();
        var dx2 = conv.Backward(dy);
        TensorAssert.Close("dx", dx1, dx2, 0, 0);
        for (int i = 0; i < dW1.Length; i++)
            Assert.Equal(2 * dW1[i], conv.Weight.Grad[i], 1e-4f);
        for (int i = 0; i < db1.Length; i++)
            Assert.Equal(2 * db1[i], conv.Bias.Grad[i], 1e-4f);
    }

    [Fact]
    public void WrongRankIsRejectedNamingTheShape()
    {
        var conv = new Conv2d(3, 4, 3);
        var e = Assert.Throws<ArgumentException>(() => conv.Forward(new Tensor(3, 5, 5)));
        Assert.Contains("[3, 5, 5]", e.Message);
        Assert.Contains("Conv2d(3, 4", e.Message);
    }

    [Fact]
    public void WrongChannelCountIsRejectedNamingTheShape()
    {
        var e = Assert.Throws<ArgumentException>(() => new Conv2d(3, 4, 3).Forward(new Tensor(2, 4, 5, 5)));
        Assert.Contains("[2, 4, 5, 5]", e.Message);
        Assert.Contains("Conv2d(3, 4", e.Message);
    }

    [Theory]
    [InlineData(5, 1, 1, 2, 2)]   // 2 + 2 < 5
    [InlineData(3, 2, 0, 2, 2)]   // (2 − 3)/2 would truncate to 0 and claim one output row
    [InlineData(3, 1, 0, 5, 2)]   // only the width is too small
    public void KernelLargerThanThePaddedInputIsRejected(int k, int stride, int padding, int h, int w)
    {
        var conv = new Conv2d(1, 1, k, stride, padding);
        var e = Assert.Throws<ArgumentException>(() => conv.Forward(new Tensor(1, 1, h, w)));
        Assert.Contains($"[1, 1, {h}, {w}]", e.Message);
        Assert.Contains("kernel", e.Message);
    }

    [Fact]
    public void BackwardBeforeForwardAndMismatchedGradientAreRejected()
    {
        var conv = new Conv2d(1, 2, 3);
        var e = Assert.Throws<InvalidOperationException>(() => conv.Backward(new Tensor(1, 2, 3, 3)));
        Assert.Contains("Conv2d(1, 2", e.Message);
        Assert.Contains("Backward called before Forward", e.Message);
        conv.Forward(new Tensor(1, 1, 5, 5));
        var g = Assert.Throws<ArgumentException>(() => conv.Backward(new Tensor(1, 2, 5, 5)));
        Assert.Contains("[1, 2, 5, 5]", g.Message);
        Assert.Contains("[1, 2, 3, 3]", g.Message);
    }

    [Fact]
    public void InvalidConfigurationIsRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new Conv2d(0, 1, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Conv2d(1, 1, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Conv2d(1, 1, 3, stride: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Conv2d(1, 1, 3, padding: -1));
    }

    [Theory]
    [InlineData(3, 2, 1)]
    [InlineData(1, 1, 0)]
    public void SteadyTrainingStepAllocatesNothing(int k, int stride, int padding)
    {
        var conv = new Conv2d(3, 4, k, stride, padding, rng: new Rng(1));
        var x = TensorAssert.Randn(1, 2, 3, 9, 8);
        var dy = new Tensor(conv.Forward(x).Shape.ToArray());
        dy.Fill(0.5f);
        Assert.Equal(0, Allocations.Steady(() => { conv.Forward(x); conv.Backward(dy); }, repeats: 1));
    }

}

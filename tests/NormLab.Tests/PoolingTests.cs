using NormLab.Kernels;
using NormLab.Tests.Support;

namespace NormLab.Tests;

public class PoolingTests
{
    // planes (N·C), H, W, kh, kw, stride, padding
    public static TheoryData<int, int, int, int, int, int, int> Cases => new()
    {
        { 2, 1, 1, 1, 1, 1, 0 },   // H = W = 1
        { 1, 5, 5, 2, 2, 2, 0 },   // odd size: the last row and column are never read
        { 4, 7, 6, 3, 3, 2, 1 },   // non-square input, stride 2, padding 1
        { 2, 4, 5, 3, 3, 1, 1 },   // overlapping windows: one input feeds several outputs
        { 3, 5, 4, 2, 3, 2, 1 },   // rectangular window
        { 1, 3, 3, 3, 3, 3, 0 },   // one window covering the plane
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void MaxKernelGradientMatchesFiniteDifferences(int planes, int h, int w, int kh, int kw, int stride, int padding)
    {
        var win = new Window2d(h, w, kh, kw, stride, padding);
        // Distinct values 0.1 apart: a step of 1e-6 never changes which input is the max.
        var x = ShuffledArange(21, planes * h * w, 0.1);
        var r = Doubles.Gaussian(new Rng(22), planes * win.OutPlaneSize);
        var y = new double[r.Length];
        var argmax = new int[r.Length];
        double Loss()
        {
            Pooling.MaxForward<double>(y, argmax, x, planes, win);
            return Doubles.Dot(y, r);
        }

        Loss();
        var dx = new double[x.Length];
        Pooling.MaxBackward<double>(dx, r, argmax, planes, win);
        GradCheck.Double("maxpool dx", x, dx, Loss);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void AvgKernelGradientMatchesFiniteDifferences(int planes, int h, int w, int kh, int kw, int stride, int padding)
    {
        var rng = new Rng(23);
        var win = new Window2d(h, w, kh, kw, stride, padding);
        var x = Doubles.Gaussian(rng, planes * h * w);
        var r = Doubles.Gaussian(rng, planes * win.OutPlaneSize);
        var y = new double[r.Length];
        double Loss()
        {
            Pooling.AvgForward<double>(y, x, planes, win);
            return Doubles.Dot(y, r);
        }

        var dx = new double[x.Length];
        Pooling.AvgBackward<double>(dx, r, planes, win);
        GradCheck.Double("avgpool dx", x, dx, Loss);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(6, 35)]
    [InlineData(2, 12)]
    public void GlobalAvgKernelGradientMatchesFiniteDifferences(int planes, int size)
    {
        var rng = new Rng(24);
        var x = Doubles.Gaussian(rng, planes * size);
        var r = Doubles.Gaussian(rng, planes);
        var y = new double[planes];
        double Loss()
        {
            Pooling.GlobalAvgForward<double>(y, x, planes, size);
            return Doubles.Dot(y, r);
        }

        var dx = new double[x.Length];
        Pooling.GlobalAvgBackward<double>(dx, r, planes, size);
        GradCheck.Double("global avgpool dx", x, dx, Loss);
    }

    [Theory]
    [InlineData(3, 2, 1, 7, 6)]
    [InlineData(2, null, 0, 5, 5)]
    [InlineData(1, 1, 0, 1, 1)]
    public void FloatModuleGradientsMatchFiniteDifferences(int k, int? stride, int padding, int h, int w)
    {
        // Distinct values 0.1 apart, more than 2h = 0.02: a perturbed input never changes which one is the max.
        var values = ShuffledArange(25, 2 * 2 * h * w, 0.1);
        var x = Tensor.FromArray(values.Select(v => (float)v).ToArray(), 2, 2, h, w);
        GradCheck.Module(new MaxPool2d(k, stride, padding), x);
        GradCheck.Module(new AvgPool2d(k, stride, padding), TensorAssert.Randn(26, 2, 2, h, w));
        GradCheck.Module(new GlobalAvgPool2d(), TensorAssert.Randn(27, 2, 3, h, w));
    }

    [Theory]
    [InlineData(3, 8, 8)]
    [InlineData(2, 9, 11)]    // a last row and column no window covers
    [InlineData(4, 28, 28)]   // the CNN's first pooling: 14 windows a row, the last group of four overlapping
    [InlineData(1, 7, 13)]
    public void FloatMaxBackwardRoutesEachGradientToItsArgmaxAndZeroesTheRest(int planes, int h, int w)
    {
        // The 2×2, stride-2 backward writes every input once (no clear and scatter): check each value against the scatter,
        // over a dx full of NaN, so that an input it skipped would show.
        var win = new Window2d(h, w, 2, 2, 2, 0);
        var rng = new Rng(28);
        var x = Enumerable.Range(0, planes * h * w).Select(_ => (float)rng.NextGaussian()).ToArray();
        var dy = Enumerable.Range(0, planes * win.OutPlaneSize).Select(_ => (float)rng.NextGaussian()).ToArray();
        var (y, argmax) = (new float[dy.Length], new int[dy.Length]);
        Pooling.MaxForward<float>(y, argmax, x, planes, win);
        var dx = Enumerable.Repeat(float.NaN, x.Length).ToArray();
        Pooling.MaxBackward<float>(dx, dy, argmax, planes, win);
        var expected = new float[x.Length];
        for (int o = 0; o < dy.Length; o++)
            expected[o / win.OutPlaneSize * win.PlaneSize + argmax[o]] = dy[o];
        Assert.Equal(expected, dx);
    }

    [Fact]
    public void MaxPoolForwardAndBackwardOnArange()
    {
        var pool = new MaxPool2d(2);
        var x = Arange(1, 1, 4, 4);
        var y = pool.Forward(x);
        Assert.Equal([1, 1, 2, 2], y.Shape.ToArray());
        TensorAssert.Close("y", new float[] { 5, 7, 13, 15 }, y.Span, 0, 0);
        var dy = Tensor.FromArray([1, 2, 3, 4], 1, 1, 2, 2);
        TensorAssert.Close("dx", new float[] { 0, 0, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0, 0, 3, 0, 4 }, pool.Backward(dy).Span, 0, 0);
    }

    [Fact]
    public void MaxPoolPaddingNeverWins()
    {
        // All values negative: a zero padding would win; −∞ padding must not. Windows start at rows/cols −1, 1, 3.
        var x = Arange(1, 1, 4, 4);
        foreach (ref float v in x.Span)
            v -= 100;
        var y = new MaxPool2d(2, padding: 1).Forward(x);
        Assert.Equal([1, 1, 3, 3], y.Shape.ToArray());
        TensorAssert.Close("y", new float[] { 0, 2, 3, 8, 10, 11, 12, 14, 15 }.Select(v => v - 100).ToArray(), y.Span, 0, 0);
    }

    [Fact]
    public void MaxPoolTiesGoToTheFirstMaximum()
    {
        // Constant input, overlapping 2×2 windows with stride 1: every window picks its top-left element.
        var pool = new MaxPool2d(2, stride: 1);
        var x = new Tensor(1, 1, 3, 3);
        x.Fill(7);
        pool.Forward(x);
        var dy = new Tensor(1, 1, 2, 2);
        dy.Fill(1);
        TensorAssert.Close("dx", new float[] { 1, 1, 0, 1, 1, 0, 0, 0, 0 }, pool.Backward(dy).Span, 0, 0);
    }

    [Fact]
    public void MaxPoolPropagatesNaN()
    {
        var x = Arange(1, 1, 2, 2);
        x[1] = float.NaN;
        var pool = new MaxPool2d(2);
        Assert.True(float.IsNaN(pool.Forward(x)[0]));
        var dy = new Tensor(1, 1, 1, 1);
        dy.Fill(1);
        TensorAssert.Close("dx", new float[] { 0, 1, 0, 0 }, pool.Backward(dy).Span, 0, 0);
    }

    [Fact]
    public void AvgPoolForwardAndBackwardOnArange()
    {
        var pool = new AvgPool2d(2);
        var y = pool.Forward(Arange(1, 1, 4, 4));
        TensorAssert.Close("y", new float[] { 2.5f, 4.5f, 10.5f, 12.5f }, y.Span);
        var dy = Tensor.FromArray([4, 8, 12, 16], 1, 1, 2, 2);
        TensorAssert.Close("dx", new float[] { 1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4 }, pool.Backward(dy).Span);
    }

    [Fact]
    public void AvgPoolDividesByTheFullWindowAtPaddedBorders()
    {
        // Ones, 3×3 windows with padding 1: a corner window holds 4 ones, an edge one 6, the centre 9; all divide by 9.
        var x = new Tensor(1, 1, 3, 3);
        x.Fill(1);
        var pool = new AvgPool2d(3, stride: 1, padding: 1);
        var y = pool.Forward(x);
        float c = 4f / 9, e = 6f / 9;
        TensorAssert.Close("y", new float[] { c, e, c, e, 1, e, c, e, c }, y.Span);
        var dy = new Tensor(1, 1, 3, 3);
        dy.Fill(9);
        // Each input is in as many windows as the window at its own position holds inputs.
        TensorAssert.Close("dx", new float[] { 4, 6, 4, 6, 9, 6, 4, 6, 4 }, pool.Backward(dy).Span);
    }

    [Fact]
    public void GlobalAvgPoolAveragesEachPlane()
    {
        var pool = new GlobalAvgPool2d();
        var y = pool.Forward(Arange(2, 3, 2, 2));
        Assert.Equal([2, 3], y.Shape.ToArray());
        TensorAssert.Close("y", new float[] { 1.5f, 5.5f, 9.5f, 13.5f, 17.5f, 21.5f }, y.Span);
        var dx = pool.Backward(Tensor.FromArray([4, 8, 0, 0, 0, -4], 2, 3));
        Assert.Equal([2, 3, 2, 2], dx.Shape.ToArray());
        TensorAssert.Close("dx", new float[] { 1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1 }, dx.Span);
    }

    [Fact]
    public void StrideDefaultsToTheKernelSize()
    {
        var pool = new MaxPool2d(3);
        Assert.Equal((3, 3, 0), (pool.KernelSize, pool.Stride, pool.Padding));
        Assert.Equal(1, new AvgPool2d(3, 1).Stride);
        Assert.Equal([1, 1, 2, 2], pool.Forward(new Tensor(1, 1, 7, 8)).Shape.ToArray());
    }

    [Theory]
    [InlineData(3, 2)]
    [InlineData(1, 1)]
    [InlineData(4, 3)]
    public void PaddingOverHalfTheKernelIsRejected(int k, int padding)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new MaxPool2d(k, padding: padding));
        Assert.Contains($"padding={padding}, kernel_size={k}", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new AvgPool2d(k, padding: padding));
    }

    [Fact]
    public void InvalidConfigurationIsRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new MaxPool2d(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AvgPool2d(2, stride: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AvgPool2d(2, padding: -1));
    }

    [Fact]
    public void WrongRankIsRejectedNamingTheShape()
    {
        var e = Assert.Throws<ArgumentException>(() => new MaxPool2d(2).Forward(new Tensor(4, 4)));
        Assert.Contains("[4, 4]", e.Message);
        Assert.Contains("MaxPool2d", e.Message);
        e = Assert.Throws<ArgumentException>(() => new AvgPool2d(2).Forward(new Tensor(1, 4, 4)));
        Assert.Contains("[1, 4, 4]", e.Message);
        Assert.Contains("AvgPool2d", e.Message);
        e = Assert.Throws<ArgumentException>(() => new GlobalAvgPool2d().Forward(new Tensor(2, 3)));
        Assert.Contains("[2, 3]", e.Message);
        Assert.Contains("GlobalAvgPool2d", e.Message);
    }

    [Theory]
    [InlineData(3, 0, 2, 5)]
    [InlineData(4, 1, 1, 1)]
    [InlineData(3, 1, 9, 0)]
    public void WindowLargerThanThePaddedInputIsRejected(int k, int padding, int h, int w)
    {
        var e = Assert.Throws<ArgumentException>(() => new MaxPool2d(k, padding: padding).Forward(new Tensor(1, 2, h, w)));
        Assert.Contains($"[1, 2, {h}, {w}]", e.Message);
        e = Assert.Throws<ArgumentException>(() => new AvgPool2d(k, padding: padding).Forward(new Tensor(1, 2, h, w)));
        Assert.Contains($"[1, 2, {h}, {w}]", e.Message);
    }

    [Fact]
    public void BackwardBeforeForwardIsRejected()
    {
        Module[] modules = [new MaxPool2d(2), new AvgPool2d(2), new GlobalAvgPool2d()];
        foreach (var m in modules)
        {
            var e = Assert.Throws<InvalidOperationException>(() => m.Backward(new Tensor(1, 1, 1, 1)));
            Assert.Contains(m.GetType().Name, e.Message);
            Assert.Contains("Backward called before Forward", e.Message);
        }
        var pool = new MaxPool2d(2);
        pool.Forward(new Tensor(1, 1, 4, 4));
        var g = Assert.Throws<ArgumentException>(() => pool.Backward(new Tensor(1, 1, 4, 4)));
        Assert.Contains("[1, 1, 4, 4]", g.Message);
        Assert.Contains("[1, 1, 2, 2]", g.Message);
    }

    public static TheoryData<string> Names => new() { "max", "avg", "global" };

    [Theory]
    [MemberData(nameof(Names))]
    public void SteadyTrainingStepAllocatesNothing(string name)
    {
        Module pool = name switch
        {
            "max" => new MaxPool2d(3, 2, 1),
            "avg" => new AvgPool2d(3, 2, 1),
            _ => new GlobalAvgPool2d(),
        };
        var x = TensorAssert.Randn(1, 2, 3, 9, 8);
        var dy = new Tensor(pool.Forward(x).Shape.ToArray());
        dy.Fill(0.5f);
        Assert.Equal(0, Allocations.Steady(() => { pool.Forward(x); pool.Backward(dy); }, repeats: 1));
    }

    private static Tensor Arange(params int[] shape)
    {
        var t = new Tensor(shape);
        for (int i = 0; i < t.Length; i++)
            t[i] = i;
        return t;
    }

    private static double[] ShuffledArange(int seed, int count, double step)
    {
        var v = new double[count];
        for (int i = 0; i < count; i++)
            v[i] = (i - count / 2) * step;
        new Rng((ulong)seed).Shuffle<double>(v);
        return v;
    }

}

/// <summary>The vectorized 2×2 max pool of float against the generic path (double), with NaNs, ties and −∞.</summary>
public class MaxPool2x2FastPathTests
{
    [Theory]
    [InlineData(6, 6)]     // three windows a row: scalar
    [InlineData(14, 14)]   // seven: one group of four and an overlapping one
    [InlineData(28, 28)]
    [InlineData(4, 16)]
    public void MatchesTheGenericPathBitForBit(int h, int w)
    {
        var rng = new Rng((ulong)(h * 100 + w));
        int planes = 3, size = h * w;
        var x = new float[planes * size];
        for (int i = 0; i < x.Length; i++)
            x[i] = (rng.NextInt(10)) switch
            {
                0 => float.NaN,
                1 => float.NegativeInfinity,
                2 or 3 => 0.5f,                   // ties
                _ => (float)rng.NextGaussian(),
            };
        var win = new NormLab.Kernels.Window2d(h, w, 2, 2, 2, 0);
        var y = new float[planes * win.OutPlaneSize];
        var at = new int[y.Length];
        NormLab.Kernels.Pooling.MaxForward<float>(y, at, x, planes, win);
        var yd = new double[y.Length];
        var atd = new int[y.Length];
        NormLab.Kernels.Pooling.MaxForward<double>(yd, atd, x.Select(v => (double)v).ToArray(), planes, win);
        Assert.Equal(atd, at);
        Assert.Equal(yd.Select(v => (float)v), y);
    }
}

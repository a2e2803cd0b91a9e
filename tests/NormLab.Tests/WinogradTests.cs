using NormLab.Kernels;
using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>
/// 3×3 convolutions with stride 1 and at least 8 channels in and out run through Winograd's F(2×2, 3×3) in float
/// (<see cref="Winograd"/>). Their outputs must match the direct sums, computed here in double, within the rounding of the
/// transforms: a few float ulps of the sum of |w·x| that each output adds up. The input gradient of such a convolution
/// (padding at most 2) is one too, of dy with the filters flipped, and goes the same way.
/// </summary>
[Collection(TeamSize.Collection)]
public class WinogradTests
{
    // n, C_in, C_out, H, W, padding, bias
    public static TheoryData<int, int, int, int, int, int, bool> Shapes => new()
    {
        { 3, 32, 64, 14, 14, 1, false },  // the CNN's conv2
        { 2, 16, 16, 28, 28, 1, true },   // tile rows of 14: two chunks, the second part-filled
        { 1, 16, 20, 7, 9, 1, true },     // odd sides: the last tile row and column half outside the output
        { 2, 17, 23, 5, 33, 1, false },   // three chunks per tile row, an odd count of tile rows per panel
        { 1, 16, 16, 6, 6, 0, true },     // no padding: 4×4 output
        { 1, 16, 16, 4, 4, 2, false },    // padding 2: 6×6 output, tiles reading only padding
        { 9, 16, 16, 1, 1, 1, true },     // a 1×1 plane: one tile, one output
        { 1, 40, 70, 8, 8, 1, false },    // C_out not a multiple of 6, C_in past a vector
        { 2, 8, 9, 10, 6, 1, true },      // the fewest channels that go this way
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MatchesTheDirectSumsInDouble(int n, int cIn, int cOut, int h, int w, int padding, bool bias)
    {
        var win = new Window2d(h, w, 3, 3, 1, padding);
        Assert.True(Winograd.Applies<float>(cIn, cOut, win));
        var x = TensorAssert.Randn(1, n, cIn, h, w).ToArray();
        var weight = TensorAssert.Randn(2, cOut, cIn, 3, 3).ToArray();
        var b = bias ? TensorAssert.Randn(3, cOut).ToArray() : [];
        foreach (int threads in new[] { 1, 2 })
        {
            using var _ = new TeamSize(threads);
            var y = new float[n * cOut * win.OutPlaneSize];
            Array.Fill(y, float.NaN); // every output must be written
            Conv.Forward<float>(y, x, weight, b, new float[Conv.ScratchSize(n, cIn, cOut, win)], n, cIn, cOut, win);
            var (expected, magnitude) = Direct(x, weight, b, n, cIn, cOut, win);
            Within($"{threads} thread(s), output", y, expected, magnitude);
        }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void TheInputGradientMatchesTheDirectSumsInDouble(int n, int cIn, int cOut, int h, int w, int padding, bool bias)
    {
        var win = new Window2d(h, w, 3, 3, 1, padding);
        Assert.NotNull(Winograd.InputGradientWindow<float>(cIn, cOut, win));
        var x = TensorAssert.Randn(1, n, cIn, h, w).ToArray();
        var weight = TensorAssert.Randn(2, cOut, cIn, 3, 3).ToArray();
        var dy = TensorAssert.Randn(3, n, cOut, win.OutHeight, win.OutWidth).ToArray();
        var (expected, magnitude) = DirectInputGradient(dy, weight, n, cIn, cOut, win);
        foreach (int threads in new[] { 1, 2 })
        {
            using var _ = new TeamSize(threads);
            var dx = new float[x.Length];
            Array.Fill(dx, float.NaN); // every value must be written
            var dW = new float[weight.Length];
            var db = bias ? new float[cOut] : [];
            Conv.Backward<float>(dx, dW, db, dy, x, weight, new float[Conv.ScratchSize(n, cIn, cOut, win)], n, cIn, cOut, win);
            Within($"{threads} thread(s), dx", dx, expected, magnitude);
        }
    }

    [Fact]
    public void ThreadsDoNotChangeTheBits()
    {
        var win = new Window2d(14, 14, 3, 3, 1, 1);
        var x = TensorAssert.Randn(4, 11, 32, 14, 14).ToArray();
        var weight = TensorAssert.Randn(5, 64, 32, 3, 3).ToArray();
        float[] Run(int threads)
        {
            using var _ = new TeamSize(threads);
            var y = new float[11 * 64 * 196];
            Conv.Forward<float>(y, x, weight, [], new float[Conv.ScratchSize(11, 32, 64, win)], 11, 32, 64, win);
            return y;
        }
        var one = Run(1);
        foreach (int threads in new[] { 2, 3 })
            Assert.Equal(one.Select(BitConverter.SingleToInt32Bits), Run(threads).Select(BitConverter.SingleToInt32Bits));
    }

    [Theory]
    [InlineData(1, 16, 3, 1)]  // one input channel: the first layer stays with im2col
    [InlineData(16, 7, 3, 1)]  // seven output channels: dx's products would be 7 deep
    [InlineData(16, 16, 5, 1)] // a 5×5 window
    [InlineData(16, 16, 3, 2)] // stride 2
    public void OtherConvolutionsStayWithColumns(int cIn, int cOut, int kernel, int stride)
    {
        Assert.False(Winograd.Applies<float>(cIn, cOut, new Window2d(14, 14, kernel, kernel, stride, 1)));
        Assert.False(Winograd.Applies<double>(16, 16, new Window2d(14, 14, 3, 3, 1, 1)));
    }

    // Every value within 8 float ulps of the sum of |terms| its direct sum adds up (and NaN nowhere).
    private static void Within(string what, float[] actual, double[] expected, double[] magnitude)
    {
        for (int i = 0; i < actual.Length; i++)
        {
            double bound = 16 * float.Epsilon + 8 * 1.2e-7 * magnitude[i];
            if (!(Math.Abs(actual[i] - expected[i]) <= bound))
                Assert.Fail($"{what} {i}: {actual[i]:R}, direct {expected[i]:R} (bound {bound:G3})");
        }
    }

    // dx[img, ci, r, c] = Σ W[co, ci, i, j]·dy[img, co, r + p − i, c + p − j] in double, and the sums of |terms|.
    private static (double[] Dx, double[] Magnitude) DirectInputGradient(float[] dy, float[] weight, int n, int cIn, int cOut, Window2d w)
    {
        int oh = w.OutHeight, ow = w.OutWidth;
        var dx = new double[n * cIn * w.PlaneSize];
        var magnitude = new double[dx.Length];
        for (int img = 0; img < n; img++)
            for (int ci = 0; ci < cIn; ci++)
                for (int r = 0; r < w.Height; r++)
                    for (int c = 0; c < w.Width; c++)
                    {
                        double sum = 0, abs = 0;
                        for (int co = 0; co < cOut; co++)
                            for (int i = 0; i < 3; i++)
                                for (int j = 0; j < 3; j++)
                                {
                                    int orow = r + w.Padding - i, ocol = c + w.Padding - j;
                                    if (orow < 0 || orow >= oh || ocol < 0 || ocol >= ow)
                                        continue;
                                    double term = (double)weight[((co * cIn + ci) * 3 + i) * 3 + j] * dy[((img * cOut + co) * oh + orow) * ow + ocol];
                                    sum += term;
                                    abs += Math.Abs(term);
                                }
                        int at = ((img * cIn + ci) * w.Height + r) * w.Width + c;
                        dx[at] = sum;
                        magnitude[at] = abs;
                    }
        return (dx, magnitude);
    }

    // The direct sums in double, and per output the sum of |w·x| (and |b|) they add up.
    private static (double[] Y, double[] Magnitude) Direct(float[] x, float[] weight, float[] bias, int n, int cIn, int cOut, Window2d w)
    {
        int oh = w.OutHeight, ow = w.OutWidth;
        var y = new double[n * cOut * oh * ow];
        var magnitude = new double[y.Length];
        for (int img = 0; img < n; img++)
            for (int co = 0; co < cOut; co++)
                for (int r = 0; r < oh; r++)
                    for (int c = 0; c < ow; c++)
                    {
                        double sum = bias.Length > 0 ? bias[co] : 0, abs = Math.Abs(sum);
                        for (int ci = 0; ci < cIn; ci++)
                            for (int i = 0; i < 3; i++)
                                for (int j = 0; j < 3; j++)
                                {
                                    int row = r - w.Padding + i, col = c - w.Padding + j;
                                    if (row < 0 || row >= w.Height || col < 0 || col >= w.Width)
                                        continue;
                                    double term = (double)weight[((co * cIn + ci) * 3 + i) * 3 + j] * x[((img * cIn + ci) * w.Height + row) * w.Width + col];
                                    sum += term;
                                    abs += Math.Abs(term);
                                }
                        int at = ((img * cOut + co) * oh + r) * ow + c;
                        y[at] = sum;
                        magnitude[at] = abs;
                    }
        return (y, magnitude);
    }
}

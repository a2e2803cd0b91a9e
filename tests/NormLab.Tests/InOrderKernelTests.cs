namespace NormLab.Tests;

/// <summary>
/// The BN layouts whose training kernels walk memory other than one channel at a time, in order over blocks of samples
/// or rows (planes under a page; [N, C] batches of 2 MiB or more) or a group of channels at a time (short planes, and
/// batches past 16 MiB), against a double-precision reference of the whole step: outputs, running statistics and all
/// three gradients, on data away from zero. Their double kernels share the formulas checked by finite differences in
/// <see cref="BatchNormKernelTests"/>; this checks the walks, the block merges, the groups and the tails.
/// </summary>
public class InOrderKernelTests
{
    public static TheoryData<int[]> Shapes => new()
    {
        { [2100, 260] },        // 7 blocks of 304 rows and one of 276; 32 vector blocks and 4 single channels
        { [37, 6, 30, 30] },    // 13 blocks of 3 samples and one of 1; planes with a tail
        { [16, 3, 20, 20] },    // 16 blocks of one sample
        { [20, 512, 20, 21] },  // 17 MB: groups of 5 channels (1,680-byte planes), each thread's last one short
        { [9, 70, 8, 8] },      // groups of 32 channels of 8×8 planes, and a short one per thread
        { [263, 1003] },        // 1 MiB: sums by chunks of channels, maps by rows (an odd count per thread); a tail block
        { [40, 7001] },         // too few rows for row blocks: sums by chunks, maps by rows
    };

    [Theory]
    [InlineData(9, 70, 64)]    // groups of 32 channels
    [InlineData(20, 40, 420)]  // groups of 5 (planes of 420 values are in-order only in batches under 16 MiB)
    [InlineData(3, 5, 1500)]   // one channel at a time
    public void EachChannelGetsTheBitsOfItsOwnBatch(int n, int c, int s)
    {
        // A channel's sums run over its planes in sample order whatever group it is walked in, so normalizing the
        // whole batch gives every channel exactly what normalizing that channel alone gives.
        var rng = new Rng(12);
        var x = new float[n * c * s];
        foreach (ref float v in x.AsSpan())
            v = (float)(5 + rng.NextGaussian());
        var y = new float[x.Length];
        var (mean, m2, invStd) = (new double[c], new double[c], new double[c]);
        var gamma = Enumerable.Range(0, c).Select(ch => 1 + 0.1f * ch).ToArray();
        var beta = Enumerable.Range(0, c).Select(ch => -0.2f * ch).ToArray();
        NormLab.Kernels.BatchNormKernels.ForwardTraining<float>(y, x, gamma, beta, 1e-5, n, c, s, mean, m2, invStd);
        var dy = x.Select((v, i) => (float)Math.Sin(i)).ToArray();
        var (dx, dGamma, dBeta) = (new float[x.Length], new float[c], new float[c]);
        NormLab.Kernels.BatchNormKernels.BackwardBatchStats<float>(dx, dGamma, dBeta, dy, x, mean, invStd, gamma, n, c, s);
        for (int ch = 0; ch < c; ch++)
        {
            var at = Enumerable.Range(0, n * s).Select(k => (k / s * c + ch) * s + k % s).ToArray();
            float[] xc = at.Select(i => x[i]).ToArray(), dyc = at.Select(i => dy[i]).ToArray();
            var (yc, dxc, dGammaC, dBetaC) = (new float[xc.Length], new float[xc.Length], new float[1], new float[1]);
            var (meanC, m2C, invStdC) = (new double[1], new double[1], new double[1]);
            NormLab.Kernels.BatchNormKernels.ForwardTraining<float>(yc, xc, [gamma[ch]], [beta[ch]], 1e-5, n, 1, s, meanC, m2C, invStdC);
            NormLab.Kernels.BatchNormKernels.BackwardBatchStats<float>(dxc, dGammaC, dBetaC, dyc, xc, meanC, invStdC, [gamma[ch]], n, 1, s);
            Assert.Equal((meanC[0], m2C[0], dGammaC[0], dBetaC[0]), (mean[ch], m2[ch], dGamma[ch], dBeta[ch]));
            Assert.Equal(yc, at.Select(i => y[i]).ToArray());
            Assert.Equal(dxc, at.Select(i => dx[i]).ToArray());
        }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void TrainingStepMatchesADoubleReference(int[] shape)
    {
        int n = shape[0], c = shape[1], s = shape.Length == 4 ? shape[2] * shape[3] : 1, m = n * s;
        var rng = new Rng(11);
        var x = new Tensor(shape);
        var dy = new Tensor(shape);
        foreach (ref float v in x.Span)
            v = (float)(300 + 2 * rng.NextGaussian());
        foreach (ref float v in dy.Span)
            v = (float)rng.NextGaussian();
        BatchNorm bn = shape.Length == 4 ? new BatchNorm2d(c) : new BatchNorm1d(c);
        for (int ch = 0; ch < c; ch++)
        {
            bn.Weight!.Value[ch] = (float)(1 + 0.3 * rng.NextGaussian());
            bn.Bias!.Value[ch] = (float)(0.5 * rng.NextGaussian());
        }
        var y = bn.Forward(x).ToArray();
        var dx = bn.Backward(dy).ToArray();
        var (xs, dys) = (x.ToArray(), dy.ToArray());
        double maxDx = 0;
        var expectedDx = new double[xs.Length];
        for (int ch = 0; ch < c; ch++)
        {
            var at = Enumerable.Range(0, m).Select(k => (k / s * c + ch) * s + k % s).ToArray();
            double mean = at.Average(i => (double)xs[i]);
            double variance = at.Sum(i => (xs[i] - mean) * (xs[i] - mean)) / m;
            double invStd = 1 / Math.Sqrt(variance + bn.Eps), gamma = bn.Weight!.Value[ch], beta = bn.Bias!.Value[ch];
            double sumDy = at.Sum(i => (double)dys[i]), sumDyXhat = at.Sum(i => dys[i] * (xs[i] - mean) * invStd);
            string where = $"{string.Join('x', shape)}, channel {ch}";
            Assert.True(Math.Abs(bn.RunningMean![ch] - 0.1 * mean) <= 1e-6 * 0.1 * mean, $"{where}: running_mean {bn.RunningMean[ch]}, reference {0.1 * mean}");
            double runningVar = 0.9 + 0.1 * variance * m / (m - 1);
            Assert.True(Math.Abs(bn.RunningVar![ch] - runningVar) <= 1e-6 * runningVar, $"{where}: running_var {bn.RunningVar[ch]}, reference {runningVar}");
            Assert.True(Math.Abs(bn.Bias.Grad[ch] - sumDy) <= 1e-5 * Math.Sqrt(m), $"{where}: dβ {bn.Bias.Grad[ch]}, reference {sumDy}");
            Assert.True(Math.Abs(bn.Weight.Grad[ch] - sumDyXhat) <= 1e-5 * Math.Sqrt(m), $"{where}: dγ {bn.Weight.Grad[ch]}, reference {sumDyXhat}");
            foreach (int i in at)
            {
                double xhat = (xs[i] - mean) * invStd;
                double expectedY = gamma * xhat + beta;
                Assert.True(Math.Abs(y[i] - expectedY) <= 1e-5 * (1 + Math.Abs(expectedY)), $"{where}: y[{i}] = {y[i]}, reference {expectedY}");
                expectedDx[i] = gamma * invStd * (dys[i] - sumDy / m - xhat * sumDyXhat / m);
                maxDx = Math.Max(maxDx, Math.Abs(expectedDx[i]));
            }
        }
        for (int i = 0; i < dx.Length; i++)
            Assert.True(Math.Abs(dx[i] - expectedDx[i]) <= 2e-5 * maxDx, $"{string.Join('x', shape)}: dx[{i}] = {dx[i]}, reference {expectedDx[i]}");
    }
}

/// <summary>The two-plane sums give each plane the bits of the one-plane sums (the channel walk mixes both).</summary>
public unsafe class CenteredPairTests
{
    [Theory]
    [InlineData(3)]
    [InlineData(8)]
    [InlineData(16)]
    [InlineData(24)]
    [InlineData(64)]
    [InlineData(100)]
    [InlineData(256)]
    public void PairsOfPlanesSumAsSinglePlanes(int s)
    {
        var rng = new Rng((ulong)s);
        float[] Rand() => Enumerable.Range(0, s).Select(_ => (float)(1e3 + rng.NextGaussian())).ToArray();
        float[] x0 = Rand(), x1 = Rand(), dy0 = Rand(), dy1 = Rand();
        fixed (float* px0 = x0, px1 = x1, pdy0 = dy0, pdy1 = dy1)
        {
            var (shift0, shift1) = (System.Runtime.Intrinsics.Vector256.Create(1000.5f), System.Runtime.Intrinsics.Vector256.Create(999.25f));
            var (first, second) = NormLab.Kernels.Centered.Deviations2(px0, px1, s, shift0, shift1);
            Assert.Equal(NormLab.Kernels.Centered.Deviations(px0, s, shift0), first);
            Assert.Equal(NormLab.Kernels.Centered.Deviations(px1, s, shift1), second);
            var (lo0, lo1) = (System.Runtime.Intrinsics.Vector256.Create(1e-5f), System.Runtime.Intrinsics.Vector256.Create(-3e-5f));
            var (g0, g1) = NormLab.Kernels.Centered.SumGradients2(pdy0, px0, pdy1, px1, s, shift0, lo0, shift1, lo1, default(NormLab.Kernels.Open<float>), default(NormLab.Kernels.Open<float>));
            Assert.Equal(NormLab.Kernels.Centered.SumGradients(pdy0, px0, s, shift0, lo0), g0);
            Assert.Equal(NormLab.Kernels.Centered.SumGradients(pdy1, px1, s, shift1, lo1), g1);
        }
    }
}

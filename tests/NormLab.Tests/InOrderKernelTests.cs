namespace NormLab.Tests;

/// <summary>
/// The BN layouts whose training kernels walk memory in order over blocks of samples or rows (planes under a page;
/// [N, C] batches of 2 MiB or more) against a double-precision reference of the whole step: outputs, running statistics
/// and all three gradients, on data away from zero. Their double kernels share the formulas checked by finite
/// differences in <see cref="BatchNormKernelTests"/>; this checks the walks, the block merges and the tails.
/// </summary>
public class InOrderKernelTests
{
    public static TheoryData<int[]> Shapes => new()
    {
        { [2100, 260] },        // 7 blocks of 304 rows and one of 276; 32 vector blocks and 4 single channels
        { [37, 6, 30, 30] },    // 13 blocks of 3 samples and one of 1; planes with a tail
        { [16, 3, 20, 20] },    // 16 blocks of one sample
    };

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

using System.Runtime.Intrinsics;
using NormLab.Kernels;

namespace NormLab.Tests;

/// <summary>
/// The non-temporal map of the BN kernels (large outputs): the same bits as the plain map over runs of planes at every
/// plane length and alignment, nothing written outside the run, and a layer that large against a double reference.
/// </summary>
public class StreamingStoreTests
{
    [Fact]
    public unsafe void StreamingMapWritesThePlainMapsBitsAndNothingElse()
    {
        // Runs of 1 to 5 planes, each with its own map, at every plane length from a line up and every alignment: the
        // vectors that straddle two planes blend their maps, and the run's ends take plain stores.
        const int guard = 64;
        var x = new float[2 * guard + 5 * 257 + 16];
        var rng = new Rng(5);
        for (int i = 0; i < x.Length; i++)
            x[i] = (float)(3 + rng.NextGaussian());
        var maps = Enumerable.Range(0, 5).Select(k =>
            new Normalized<float>(Vector256.Create(3.25f + k), Vector256.Create(1.5f - 0.25f * k), Vector256.Create(-0.5f + k))).ToArray();
        var plain = new float[x.Length];
        var streamed = new float[x.Length];
        fixed (float* px = x, pPlain = plain, pStreamed = streamed)
            foreach (int planes in new[] { 1, 2, 3, 5 })
                foreach (int s in new[] { 16, 17, 23, 31, 32, 33, 47, 48, 49, 63, 64, 65, 100, 196, 257 })
                    for (int offset = 0; offset < 16; offset++)
                    {
                        Array.Fill(plain, float.NaN);
                        Array.Fill(streamed, float.NaN);
                        int at = guard + offset;
                        for (int k = 0; k < planes; k++)
                            Centered.Map(pPlain + at + k * s, px + at + k * s, px + at + k * s, s, maps[k]);
                        Centered.MapStreaming<float, Normalized<float>, PlaneMaps<Normalized<float>>>(pStreamed + at, px + at, px + at, planes, s,
                            new PlaneMaps<Normalized<float>>(maps));
                        Centered.Fence();
                        for (int i = 0; i < x.Length; i++)
                        {
                            bool inside = i >= at && i < at + planes * s;
                            Assert.True(inside ? BitConverter.SingleToInt32Bits(streamed[i]) == BitConverter.SingleToInt32Bits(plain[i]) : float.IsNaN(streamed[i]),
                                $"{planes} planes of {s}, offset {offset}: value {i - at} is {streamed[i]}, plain {plain[i]}");
                        }
                    }
    }

    [Fact]
    public void ALayerOf32MiBMatchesADoubleReference()
    {
        // 2×4×1024×1024 floats are 32 MiB: training forward, backward and eval all write with streaming stores.
        int n = 2, c = 4, s = 1024 * 1024;
        var x = new Tensor(n, c, 1024, 1024);
        var dy = new Tensor(n, c, 1024, 1024);
        var rng = new Rng(9);
        foreach (ref float v in x.Span)
            v = (float)(5 + rng.NextGaussian());
        foreach (ref float v in dy.Span)
            v = (float)rng.NextGaussian();
        var bn = new BatchNorm2d(c);
        var y = bn.Forward(x).ToArray();
        var dx = bn.Backward(dy).ToArray();
        bn.Eval();
        var eval = bn.Forward(x).ToArray();
        var (xs, dys) = (x.ToArray(), dy.ToArray());
        for (int ch = 0; ch < c; ch++)
        {
            double sum = 0, squares = 0, sumDy = 0, sumDyX = 0;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < s; j++)
                {
                    int at = (i * c + ch) * s + j;
                    sum += xs[at];
                }
            double mean = sum / (n * s);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < s; j++)
                {
                    int at = (i * c + ch) * s + j;
                    squares += (xs[at] - mean) * (xs[at] - mean);
                    sumDy += dys[at];
                    sumDyX += dys[at] * (xs[at] - mean);
                }
            double m = (double)n * s, invStd = 1 / Math.Sqrt(squares / m + bn.Eps);
            double runningInvStd = 1 / Math.Sqrt(bn.RunningVar![ch] + bn.Eps);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < s; j += 997) // every 997th value of each plane, the ends included
                    foreach (int k in new[] { j, s - 1 - j })
                    {
                        int at = (i * c + ch) * s + k;
                        double xhat = (xs[at] - mean) * invStd;
                        Assert.True(Math.Abs(y[at] - xhat) <= 1e-5 * (1 + Math.Abs(xhat)), $"y[{at}] = {y[at]}, reference {xhat}");
                        double expectedDx = invStd * (dys[at] - sumDy / m - (xs[at] - mean) * invStd * invStd * sumDyX / m);
                        Assert.True(Math.Abs(dx[at] - expectedDx) <= 1e-5 * (1 + Math.Abs(expectedDx)), $"dx[{at}] = {dx[at]}, reference {expectedDx}");
                        double expectedEval = (xs[at] - bn.RunningMean![ch]) * runningInvStd;
                        Assert.True(Math.Abs(eval[at] - expectedEval) <= 1e-5 * (1 + Math.Abs(expectedEval)), $"eval[{at}] = {eval[at]}, reference {expectedEval}");
                    }
        }
    }
}

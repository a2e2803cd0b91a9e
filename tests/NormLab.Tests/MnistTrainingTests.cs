using System.Diagnostics;
using NormLab.Data;
using NormLab.Tests.Support;
using Xunit.Abstractions;

namespace NormLab.Tests;

/// <summary>End to end: Ioffe &amp; Szegedy's three-hidden-layer sigmoid MLP with BatchNorm trains on MNIST-10k.</summary>
/// <remarks>
/// Calibration: on this 8k/2k split the same network trained by PyTorch (bench/NormLab.Peer <c>mnist-check</c>: Adam 3e-3,
/// constant rate, no augmentation) plateaus at 92–93% test accuracy, and so does NormLab. Random ±2-pixel shifts and a
/// cosine learning-rate decay over 30 epochs lift it to about 96% in under 15 s here; 95% is the bar.
/// </remarks>
public class MnistTrainingTests(ITestOutputHelper output)
{
    internal static Sequential IoffeMlp(Rng rng) => new(
        new Linear(784, 100, bias: false, rng: rng), new BatchNorm1d(100), new Sigmoid(),
        new Linear(100, 100, bias: false, rng: rng), new BatchNorm1d(100), new Sigmoid(),
        new Linear(100, 100, bias: false, rng: rng), new BatchNorm1d(100), new Sigmoid(),
        new Linear(100, 10, rng: rng));

    /// <summary>Trains with Adam and returns the model and the per-step losses; <paramref name="maxSteps"/> stops early.</summary>
    internal static (Sequential Model, List<float> Losses) Train(ImageDataset train, int epochs, ulong seed, int maxSteps = int.MaxValue)
    {
        var rng = new Rng(seed);
        var model = IoffeMlp(rng);
        var optimizer = new Adam(model.Parameters(), lr: 3e-3);
        var loss = new SoftmaxCrossEntropy();
        const int batch = 60;
        int d = train.ImageSize;
        var x = new Tensor(batch, d);
        var labels = new int[batch];
        var order = Enumerable.Range(0, train.Count).ToArray();
        var losses = new List<float>();
        for (int epoch = 0; epoch < epochs; epoch++)
        {
            optimizer.LearningRate = 3e-3 * 0.5 * (1 + Math.Cos(Math.PI * epoch / epochs));
            rng.Shuffle<int>(order);
            for (int start = 0; start + batch <= order.Length; start += batch)
            {
                if (losses.Count == maxSteps)
                    return (model, losses);
                for (int i = 0; i < batch; i++)
                {
                    int k = order[start + i];
                    Shift(train.Pixels.AsSpan(k * d, d), x.Span.Slice(i * d, d), train.Cols, rng.NextInt(5) - 2, rng.NextInt(5) - 2);
                    labels[i] = train.Labels[k];
                }
                optimizer.ZeroGrad();
                losses.Add(loss.Forward(model.Forward(x), labels));
                model.Backward(loss.Backward());
                optimizer.Step();
            }
        }
        return (model, losses);
    }

    /// <summary>Translates a square image by (dx, dy) pixels, filling with zeros.</summary>
    private static void Shift(ReadOnlySpan<float> source, Span<float> target, int side, int dx, int dy)
    {
        target.Clear();
        for (int r = Math.Max(0, dy); r < Math.Min(side, side + dy); r++)
            source.Slice((r - dy) * side + Math.Max(0, -dx), side - Math.Abs(dx))
                .CopyTo(target.Slice(r * side + Math.Max(0, dx)));
    }

    internal static double Evaluate(Module model, ImageDataset test)
    {
        model.Eval();
        int correct = 0, d = test.ImageSize;
        const int batch = 500;
        for (int start = 0; start < test.Count; start += batch)
        {
            int n = Math.Min(batch, test.Count - start);
            var x = Tensor.FromArray(test.Pixels.AsSpan(start * d, n * d), n, d);
            correct += SoftmaxCrossEntropy.CountCorrect(model.Forward(x), test.Labels.AsSpan(start, n));
        }
        model.Train();
        return (double)correct / test.Count;
    }

    [Fact]
    public void SigmoidMlpWithBatchNormReaches95PercentOnMnist10k()
    {
        var train = ImageDataset.LoadIdx(Paths.Dataset("mnist-10k"), "train");
        var test = ImageDataset.LoadIdx(Paths.Dataset("mnist-10k"), "t10k");
        Assert.Equal(8000, train.Count);
        Assert.Equal(2000, test.Count);
        var clock = Stopwatch.StartNew();
        var (model, losses) = Train(train, epochs: 30, seed: 1);
        double accuracy = Evaluate(model, test);
        output.WriteLine($"test accuracy {accuracy:P2} after {losses.Count} steps in {clock.Elapsed.TotalSeconds:F1} s; first loss {losses[0]:F3}, last {losses[^1]:F3}");
        Assert.True(accuracy >= 0.95, $"test accuracy {accuracy:P2} < 95%");
        // The time is reported, not asserted: speed is measured side by side in bench/, where a loaded machine shows as
        // load rather than as a failing test.
    }

    [Fact]
    public void TheSameSeedGivesTheSameNumbers()
    {
        var train = ImageDataset.LoadIdx(Paths.Dataset("mnist-10k"), "train");
        var (a, lossesA) = Train(train, epochs: 1, seed: 7, maxSteps: 40);
        var (b, lossesB) = Train(train, epochs: 1, seed: 7, maxSteps: 40);
        Assert.Equal(lossesA, lossesB);
        foreach (var (pa, pb) in a.Parameters().Zip(b.Parameters()))
            Assert.Equal(pa.Value.ToArray(), pb.Value.ToArray());
        var (_, lossesC) = Train(train, epochs: 1, seed: 8, maxSteps: 40);
        Assert.NotEqual(lossesA, lossesC);
    }
}

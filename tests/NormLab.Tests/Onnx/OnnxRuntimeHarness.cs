using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using NormLab.Data;
using NormLab.Models;
using NormLab.Tests.Support;

namespace NormLab.Tests.Onnx;

/// <summary>Runs exported models in ONNX Runtime and prepares zoo models with non-trivial statistics on real images.</summary>
internal static class OnnxRuntimeHarness
{
    private static readonly Lazy<ImageDataset> TestImages = new(() => ImageDataset.LoadIdx(Paths.Dataset("mnist-10k"), "t10k"));

    /// <summary>Images <paramref name="first"/>… of the shipped MNIST test set as [count, 784] or [count, 1, 28, 28].</summary>
    public static Tensor Images(int first, int count, bool flat)
    {
        var data = TestImages.Value;
        var pixels = data.Pixels.AsSpan(first * data.ImageSize, count * data.ImageSize);
        return flat ? Tensor.FromArray(pixels, count, data.ImageSize) : Tensor.FromArray(pixels, count, 1, data.Rows, data.Cols);
    }

    /// <summary>
    /// The output of <paramref name="model"/> (serialized ONNX) for <paramref name="x"/>, in a session with the given
    /// graph optimizations (one thread: the machine's cores are shared with the test runner).
    /// </summary>
    public static float[] Run(byte[] model, Tensor x, GraphOptimizationLevel level)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = level, IntraOpNumThreads = 1, InterOpNumThreads = 1 };
        using var session = new InferenceSession(model, options);
        var input = new DenseTensor<float>(x.ToArray(), x.Shape.ToArray());
        using var results = session.Run([NamedOnnxValue.CreateFromTensor("input", input)]);
        var output = results.Single();
        Assert.Equal("output", output.Name);
        return output.AsEnumerable<float>().ToArray();
    }

    /// <summary>
    /// A zoo model whose normalization layers hold non-trivial state: two forward passes in training mode over 40 test
    /// images move the running statistics as training would (frozen layers get random ones, since they never move), and
    /// γ, β are drawn at random so that the affine parameters matter. The classifier is then scaled so that the largest
    /// logit on <paramref name="x"/> is 10 in magnitude, as a trained network's are (an untrained one's are below 1, which
    /// would make an absolute tolerance lax). Returns the model in eval mode and its output for <paramref name="x"/>.
    /// </summary>
    public static (Sequential Model, float[] Output) Prepared(string name, NormKind norm, Tensor x, ulong seed = 7)
    {
        bool flat = x.Rank == 2;
        var spec = new NormLab.Cli.ModelSpec(name, norm, NormPosition.Before, 0.1, false);
        var model = spec.Build(new Rng(seed));
        model.Train();
        for (int b = 0; b < 2; b++)
            model.Forward(Images(100 + 20 * b, 20, flat));   // 20 > 16: whitening 16 dense features needs more samples than that
        var rng = new Rng(seed + 1);
        foreach (var m in model.Modules().Where(m => m is not (Sequential or Residual or Linear or Conv2d)))
        {
            foreach (var p in m.NamedParameters())
                foreach (ref float v in p.Parameter.Value.Span)
                    v = p.Name.EndsWith("weight", StringComparison.Ordinal) ? (float)(0.5 + rng.NextDouble()) : (float)(0.6 * rng.NextDouble() - 0.3);
            if (m is BatchNorm { Frozen: true, RunningMean: { } mean, RunningVar: { } variance })
                for (int c = 0; c < mean.Length; c++)
                    (mean.Span[c], variance.Span[c]) = ((float)(0.4 * rng.NextDouble() - 0.2), (float)(0.5 + 1.5 * rng.NextDouble()));
        }
        model.Eval();
        var classifier = model.Layers[^1] as Linear ?? throw new InvalidOperationException($"{name}: the last layer is not the classifier.");
        var output = model.Forward(x).ToArray();
        float scale = 10 / output.Max(Math.Abs);
        foreach (var p in classifier.Parameters())
            foreach (ref float v in p.Value.Span)
                v *= scale;
        return (model, model.Forward(x).ToArray());
    }

    /// <summary>The largest |a − b|.</summary>
    public static double MaxAbsDifference(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        double max = 0;
        for (int i = 0; i < a.Length; i++)
            max = Math.Max(max, Math.Abs((double)a[i] - b[i]));
        return max;
    }
}

using NormLab.Models;

namespace NormLab.Lab;

/// <summary>Networks the experiments build beyond the zoo's: MLPs of any depth with Gaussian weights, and rescaled initializations.</summary>
public static class Nets
{
    /// <summary>
    /// 784-(<paramref name="width"/> × <paramref name="depth"/>)-10 MLP with weights from N(0, std²) and zero biases (Ioffe &amp;
    /// Szegedy's "small random Gaussian values", as <see cref="Zoo.IoffeMlp"/>); with BN before each activation and no hidden
    /// bias. The weights are the same for a seed with and without BN.
    /// </summary>
    public static Sequential GaussianMlp(int depth, int width, ActivationKind activation, bool bn, double std, Rng rng)
    {
        var own = rng.Fork();
        var model = Zoo.Mlp(784, Enumerable.Repeat(width, depth).ToArray(), 10, activation, bn ? NormKind.Batch : NormKind.None, NormPosition.Before, rng);
        foreach (var w in Weights(model))
            Init.Normal(w.Value, own, std);
        foreach (var b in model.Parameters().Where(p => p.Role == ParameterRole.Bias))
            b.Value.Zero();
        return model;
    }

    /// <summary>
    /// Builds a network and draws its weights again with PyTorch's default U(±1/√fan_in) from a generator of their own, so
    /// that a seed gives the same weights whether or not the layers have biases (a BN network drops them, which would shift
    /// every later draw of the zoo's).
    /// </summary>
    public static Sequential WithSharedWeights(Func<Rng, Sequential> build, Rng rng)
    {
        var own = rng.Fork();
        var model = build(rng);
        foreach (var w in Weights(model))
            Init.KaimingUniform(w.Value, own, a: Math.Sqrt(5));
        return model;
    }

    /// <summary>
    /// Multiplies every weight (linear and convolution kernels, not biases or BN's γ, β) by <paramref name="scale"/>, so the
    /// initialization's std becomes scale × its default.
    /// </summary>
    public static Sequential ScaleWeights(Sequential model, double scale)
    {
        foreach (var w in Weights(model))
            System.Numerics.Tensors.TensorPrimitives.Multiply(w.Value.Span, (float)scale, w.Value.Span);
        return model;
    }

    /// <summary>The weight matrices and kernels, input layer first.</summary>
    public static Parameter[] Weights(Module model) => model.Parameters().Where(p => p.Role == ParameterRole.Weight).ToArray();

    /// <summary>‖W‖ (Frobenius) of a tensor, accumulated in double.</summary>
    public static double Norm(ReadOnlySpan<float> values)
    {
        double sq = 0;
        foreach (float v in values)
            sq += (double)v * v;
        return Math.Sqrt(sq);
    }
}

namespace NormLab.Lab.Measures;

/// <summary>Internal covariate shift of one layer at one step: ‖G − G'‖₂ (ideal 0) and cos∠(G, G') (ideal 1).</summary>
/// <param name="Distance">‖G − G'‖₂.</param>
/// <param name="Cosine">cos∠(G, G').</param>
/// <param name="GradientNorm">‖G‖₂, for scale.</param>
public readonly record struct IcsSample(double Distance, double Cosine, double GradientNorm);

/// <summary>
/// Santurkar et al.'s Definition 2.1 (literature.md §2.4): for layer i, G = ∇_{W_i} L(W_1, …, W_k) is the gradient applied
/// in the usual simultaneous update, and G' = ∇_{W_i} L(W_1', …, W_{i−1}', W_i, …, W_k) the same gradient after the layers
/// before i took this step's update, on the same batch. The update is plain SGD, W' = W − lr·∇W (what the lab's runs
/// use). "The layers before i" are every parameter before W_i in the vector (their biases and normalization γ, β too).
/// </summary>
public static class InternalCovariateShift
{
    /// <summary>
    /// ICS of every layer in <paramref name="layers"/> (the ranges of W_1 … W_k in <paramref name="w"/>, in forward
    /// order): one evaluation of <paramref name="f"/> for G and one per layer that has parameters before it.
    /// Layer 1 has none, so G' = G there by definition (distance 0, cosine 1).
    /// </summary>
    public static IcsSample[] Measure(LossGradient f, ReadOnlySpan<float> w, IReadOnlyList<Range> layers, double lr)
    {
        for (int i = 1; i < layers.Count; i++)
            if (layers[i].GetOffsetAndLength(w.Length).Offset < layers[i - 1].GetOffsetAndLength(w.Length).Offset)
                throw new ArgumentException("InternalCovariateShift: the layers must be in forward order.");
        var g = new float[w.Length];
        var updated = new float[w.Length];
        var gPrime = new float[w.Length];
        f(w, g);
        w.CopyTo(updated);
        var result = new IcsSample[layers.Count];
        for (int i = 0; i < layers.Count; i++)
        {
            var (start, length) = layers[i].GetOffsetAndLength(w.Length);
            ReadOnlySpan<float> G = g.AsSpan(start, length);
            if (start == 0)
            {
                result[i] = new IcsSample(0, 1, Vec.Norm(G));
                continue;
            }
            Vec.Step(updated.AsSpan(0, start), w[..start], g.AsSpan(0, start), lr);
            f(updated, gPrime);
            ReadOnlySpan<float> GPrime = gPrime.AsSpan(start, length);
            result[i] = new IcsSample(Vec.Distance(G, GPrime), Vec.Cosine(G, GPrime), Vec.Norm(G));
        }
        return result;
    }
}

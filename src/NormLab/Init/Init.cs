namespace NormLab;

/// <summary>How a Kaiming initializer measures fan.</summary>
public enum FanMode
{
    /// <summary>Fan-in: preserves the forward variance.</summary>
    FanIn,
    /// <summary>Fan-out: preserves the backward variance.</summary>
    FanOut,
}

/// <summary>
/// Weight initializers with PyTorch's formulas (<c>torch.nn.init</c>), all drawing from a seeded <see cref="Rng"/>.
/// Fans: for [out, in] fan_in = in, fan_out = out; for [out, in, kh, kw] each is multiplied by kh·kw.
/// </summary>
public static class Init
{
    /// <summary>Fills with N(mean, std²).</summary>
    public static void Normal(Tensor t, Rng rng, double std, double mean = 0)
    {
        var s = t.Span;
        for (int i = 0; i < s.Length; i++)
            s[i] = (float)(mean + std * rng.NextGaussian());
    }

    /// <summary>Fills with U(low, high).</summary>
    public static void Uniform(Tensor t, Rng rng, double low, double high)
    {
        if (!(high >= low))
            throw new ArgumentException($"Uniform: high ({high}) must be ≥ low ({low}).");
        var s = t.Span;
        for (int i = 0; i < s.Length; i++)
            s[i] = (float)(low + (high - low) * rng.NextDouble());
    }

    /// <summary>Xavier/Glorot uniform: U(−a, a), a = gain·√(6/(fan_in + fan_out)).</summary>
    public static void XavierUniform(Tensor t, Rng rng, double gain = 1)
    {
        var (fanIn, fanOut) = Fans(t);
        double a = gain * Math.Sqrt(6.0 / (fanIn + fanOut));
        Uniform(t, rng, -a, a);
    }

    /// <summary>Xavier/Glorot normal: N(0, std²), std = gain·√(2/(fan_in + fan_out)).</summary>
    public static void XavierNormal(Tensor t, Rng rng, double gain = 1)
    {
        var (fanIn, fanOut) = Fans(t);
        Normal(t, rng, gain * Math.Sqrt(2.0 / (fanIn + fanOut)));
    }

    /// <summary>
    /// Kaiming/He uniform: U(−b, b), b = gain·√(3/fan), gain = √(2/(1 + a²)) (leaky-ReLU slope a; a = 0 is ReLU).
    /// PyTorch's default for Linear and Conv2d weights is a = √5.
    /// </summary>
    public static void KaimingUniform(Tensor t, Rng rng, double a = 0, FanMode mode = FanMode.FanIn)
    {
        double bound = Math.Sqrt(2.0 / (1 + a * a)) * Math.Sqrt(3.0 / Fan(t, mode));
        Uniform(t, rng, -bound, bound);
    }

    /// <summary>Kaiming/He normal: N(0, std²), std = gain/√fan, gain = √(2/(1 + a²)).</summary>
    public static void KaimingNormal(Tensor t, Rng rng, double a = 0, FanMode mode = FanMode.FanIn) =>
        Normal(t, rng, Math.Sqrt(2.0 / (1 + a * a)) / Math.Sqrt(Fan(t, mode)));

    /// <summary>(fan_in, fan_out) of a weight of shape [out, in, ...].</summary>
    public static (int FanIn, int FanOut) Fans(Tensor t)
    {
        if (t.Rank < 2)
            throw new ArgumentException($"Fan-based initializers need a weight of rank ≥ 2, got shape {t.ShapeString}.");
        int receptive = 1;
        for (int d = 2; d < t.Rank; d++)
            receptive *= t.Dim(d);
        return (t.Dim(1) * receptive, t.Dim(0) * receptive);
    }

    private static int Fan(Tensor t, FanMode mode) => mode == FanMode.FanIn ? Fans(t).FanIn : Fans(t).FanOut;
}

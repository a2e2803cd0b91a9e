namespace NormLab.Tests.Support;

/// <summary>Double-precision helpers shared by the kernel gradient checks.</summary>
public static class Doubles
{
    /// <summary><paramref name="count"/> values from N(mean, std²).</summary>
    public static double[] Gaussian(Rng rng, int count, double mean = 0, double std = 1)
    {
        var v = new double[count];
        for (int i = 0; i < count; i++)
            v[i] = mean + std * rng.NextGaussian();
        return v;
    }

    /// <summary>Σ aᵢ·bᵢ: the scalar loss L = Σ y·r whose gradient with respect to y is r.</summary>
    public static double Dot(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++)
            s += a[i] * b[i];
        return s;
    }
}

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
    /// <summary>Σ a·b with each product and addition compensated (Ogita–Rump–Oishi Dot2): the losses of the gradient checks are
    /// differenced at h = 1e-6, so a plain sum's rounding (about n·ε·|a·b|) would swamp them once n reaches a thousand.</summary>
    public static double Dot(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        double s = 0, error = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double p = a[i] * b[i];
            double productError = Math.FusedMultiplyAdd(a[i], b[i], -p);
            double t = s + p;
            double z = t - s;
            error += (s - (t - z)) + (p - z) + productError;
            s = t;
        }
        return s + error;
    }
}

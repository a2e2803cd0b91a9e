namespace NormLab.Lab.Measures;

/// <summary>Vector arithmetic the measures share, accumulated in double.</summary>
public static class Vec
{
    /// <summary>‖a‖₂.</summary>
    public static double Norm(ReadOnlySpan<float> a)
    {
        double sq = 0;
        foreach (float v in a)
            sq += (double)v * v;
        return Math.Sqrt(sq);
    }

    /// <summary>‖a − b‖₂.</summary>
    public static double Distance(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double sq = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double d = (double)a[i] - b[i];
            sq += d * d;
        }
        return Math.Sqrt(sq);
    }

    /// <summary>cos∠(a, b); 1 when both are zero, 0 when only one is (no direction to agree with).</summary>
    public static double Cosine(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double dot = 0, aa = 0, bb = 0;
        for (int i = 0; i < a.Length; i++)
        {
            dot += (double)a[i] * b[i];
            aa += (double)a[i] * a[i];
            bb += (double)b[i] * b[i];
        }
        if (aa == 0 && bb == 0)
            return 1;
        return aa == 0 || bb == 0 ? 0 : dot / Math.Sqrt(aa * bb);
    }

    /// <summary>destination = w − η·g.</summary>
    public static void Step(Span<float> destination, ReadOnlySpan<float> w, ReadOnlySpan<float> g, double eta)
    {
        for (int i = 0; i < w.Length; i++)
            destination[i] = (float)(w[i] - eta * g[i]);
    }
}

namespace NormLab.Tests.Support;

/// <summary>Tensor comparisons with relative + absolute tolerance and llm.c-style failure output.</summary>
public static class TensorAssert
{
    /// <summary>Asserts |e − a| ≤ atol + rtol·max(|e|, |a|) element-wise.</summary>
    public static void Close(string label, ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double rtol = 1e-5, double atol = 1e-6)
    {
        Assert.True(expected.Length == actual.Length, $"{label}: {expected.Length} expected values, {actual.Length} actual");
        double maxAbs = 0, maxRel = 0, worstExcess = 0;
        int worst = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            double diff = Math.Abs(e - a);
            if (double.IsNaN(a) != double.IsNaN(e))
                diff = double.PositiveInfinity;
            double tol = atol + rtol * Math.Max(Math.Abs(e), Math.Abs(a));
            if (diff > tol && diff - tol > worstExcess)
            {
                worst = i;
                worstExcess = diff - tol;
            }
            maxAbs = Math.Max(maxAbs, diff);
            maxRel = Math.Max(maxRel, diff / Math.Max(Math.Abs(e), 1e-30));
        }
        if (worst >= 0)
        {
            var sb = new System.Text.StringBuilder($"{label}: NOT OK (max abs diff {maxAbs:E3}, max rel diff {maxRel:E3}, rtol {rtol}, atol {atol}); first pairs:");
            for (int i = 0; i < Math.Min(5, expected.Length); i++)
                sb.Append($"\n  [{i}] expected {expected[i]:R} actual {actual[i]:R}");
            sb.Append($"\n  worst [{worst}] expected {expected[worst]:R} actual {actual[worst]:R}");
            Assert.Fail(sb.ToString());
        }
    }

    /// <summary>Tensor overload: shapes must match too.</summary>
    public static void Close(string label, Tensor expected, Tensor actual, double rtol = 1e-5, double atol = 1e-6)
    {
        Assert.True(expected.HasShape(actual.Shape), $"{label}: expected shape {expected.ShapeString}, got {actual.ShapeString}");
        Close(label, expected.Span, actual.Span, rtol, atol);
    }

    /// <summary>Every bit alike (signed zeros and NaN payloads included): a fused path against the layers it replaces.</summary>
    public static void Bits(string label, Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.Shape.ToArray(), actual.Shape.ToArray());
        var e = expected.Span;
        var a = actual.Span;
        for (int i = 0; i < e.Length; i++)
            if (BitConverter.SingleToInt32Bits(e[i]) != BitConverter.SingleToInt32Bits(a[i]))
                Assert.Fail($"{label}[{i}]: {e[i]:R} unfused, {a[i]:R} fused");
    }

    /// <summary>A tensor of N(0, 1) values from a seed.</summary>
    public static Tensor Randn(int seed, params int[] shape)
    {
        var t = new Tensor(shape);
        Init.Normal(t, new Rng((ulong)seed), 1.0);
        return t;
    }
}

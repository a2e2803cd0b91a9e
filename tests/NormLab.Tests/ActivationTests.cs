using NormLab.Kernels;
using NormLab.Tests.Support;

namespace NormLab.Tests;

public class ActivationTests
{
    public static TheoryData<string> Names => new() { "relu", "sigmoid", "tanh" };

    private static Module Make(string name) => name switch
    {
        "relu" => new ReLU(),
        "sigmoid" => new Sigmoid(),
        _ => new Tanh(),
    };

    [Theory]
    [MemberData(nameof(Names))]
    public void FloatModuleGradientMatchesFiniteDifferences(string name)
    {
        var x = TensorAssert.Randn(3, 3, 5);
        // Keep inputs away from ReLU's kink, so that x ± h stays on one side.
        foreach (ref float v in x.Span)
            v = MathF.Abs(v) < 0.05f ? 0.1f : v;
        GradCheck.Module(Make(name), x);
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void DoubleKernelGradientMatchesFiniteDifferences(string name)
    {
        var rng = new Rng(7);
        int n = 17;
        var x = new double[n];
        var r = new double[n];
        for (int i = 0; i < n; i++)
        {
            x[i] = rng.NextGaussian() * 2;
            if (Math.Abs(x[i]) < 1e-3) x[i] = 0.5;
            r[i] = rng.NextGaussian();
        }
        var y = new double[n];
        var dx = new double[n];
        Action<double[], double[]> fwd = name switch
        {
            "relu" => (yy, xx) => Activations.Relu<double>(yy, xx),
            "sigmoid" => (yy, xx) => Activations.Sigmoid<double>(yy, xx),
            _ => (yy, xx) => Activations.Tanh<double>(yy, xx),
        };
        fwd(y, x);
        switch (name)
        {
            case "relu": Activations.ReluBackward<double>(dx, r, y); break;
            case "sigmoid": Activations.SigmoidBackward<double>(dx, r, y); break;
            default: Activations.TanhBackward<double>(dx, r, y); break;
        }
        var tmp = new double[n];
        GradCheck.Double(name, x, dx, () =>
        {
            fwd(tmp, x);
            double s = 0;
            for (int i = 0; i < n; i++) s += tmp[i] * r[i];
            return s;
        });
    }
}

/// <summary>The vectorized float sigmoid against the formula in double, over the whole float range.</summary>
public class FastSigmoidTests
{
    [Fact]
    public void IsWithinAFewUlpOfTheExactSigmoid()
    {
        var rng = new Rng(3);
        var x = Enumerable.Range(0, 20_003).Select(i => i < 20_000 ? (float)(rng.NextDouble() * 200 - 100) : 0f).ToArray();
        x[20_000] = float.NaN;
        x[20_001] = float.PositiveInfinity;
        x[20_002] = float.NegativeInfinity;
        var y = new float[x.Length];
        NormLab.Kernels.Activations.Sigmoid<float>(y, x);
        for (int i = 0; i < 20_000; i++)
        {
            double exact = 1 / (1 + Math.Exp(-(double)x[i]));
            double tolerance = 5e-7 * exact + 1e-37;
            Assert.True(Math.Abs(y[i] - exact) <= tolerance, $"σ({x[i]:R}) = {y[i]:R}, exact {exact:R}");
        }
        Assert.True(float.IsNaN(y[20_000]));
        Assert.Equal(1f, y[20_001]);
        Assert.True(y[20_002] >= 0 && y[20_002] < 1e-37);
        // A short tail (fewer than 8 values) takes the scalar path and agrees too.
        var small = new float[5];
        NormLab.Kernels.Activations.Sigmoid<float>(small, x.AsSpan(0, 5));
        for (int i = 0; i < 5; i++)
            Assert.Equal(1 / (1 + Math.Exp(-(double)x[i])), small[i], 6);
    }
}

/// <summary>σ and tanh on a hidden layer's worth of values run in fixed chunks over the team: the bits are those of one
/// call over the whole tensor, at any number of threads.</summary>
[Collection(TeamSize.Collection)]
public class ChunkedActivationTests
{
    [Theory]
    [InlineData(6000)]
    [InlineData(4096)]
    [InlineData(9001)]
    public void ChunkedSigmoidAndTanhGiveTheBitsOfOneCall(int length)
    {
        var x = TensorAssert.Randn(length, length).Span.ToArray();
        for (int i = 0; i < x.Length; i++)
            x[i] *= 4;
        x[5] = float.NaN;
        x[length - 1] = -90f;
        var wholeSigmoid = new float[length];
        var wholeTanh = new float[length];
        if (FastSigmoid.IsSupported)
            FastSigmoid.Apply(wholeSigmoid, x);
        else
            System.Numerics.Tensors.TensorPrimitives.Sigmoid(x, wholeSigmoid);
        System.Numerics.Tensors.TensorPrimitives.Tanh(x, wholeTanh);
        foreach (int threads in new[] { 1, 2, 3 })
        {
            using var _ = new TeamSize(threads);
            var sigmoid = new float[length];
            var tanh = new float[length];
            Activations.Sigmoid<float>(sigmoid, x);
            Activations.Tanh<float>(tanh, x);
            for (int i = 0; i < length; i++)
            {
                Assert.True(BitConverter.SingleToInt32Bits(wholeSigmoid[i]) == BitConverter.SingleToInt32Bits(sigmoid[i]),
                    $"σ, {threads} thread(s), value {i}: {sigmoid[i]:R} chunked, {wholeSigmoid[i]:R} in one call");
                Assert.True(BitConverter.SingleToInt32Bits(wholeTanh[i]) == BitConverter.SingleToInt32Bits(tanh[i]),
                    $"tanh, {threads} thread(s), value {i}: {tanh[i]:R} chunked, {wholeTanh[i]:R} in one call");
            }
        }
    }
}

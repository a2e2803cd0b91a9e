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

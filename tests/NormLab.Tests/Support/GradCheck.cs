namespace NormLab.Tests.Support;

/// <summary>Central-difference gradient checks.</summary>
public static class GradCheck
{
    /// <summary>
    /// Double-precision check of an analytic gradient of a scalar function of <paramref name="values"/>:
    /// (f(v + h·eᵢ) − f(v − h·eᵢ))/2h against <paramref name="analytic"/>[i]. With h = 1e-6 the truncation error is
    /// O(h²·f''') ≈ 1e-12 and the rounding error O(ε_double·|f|/h) ≈ 1e-10, so 1e-6 relative is a strict bound.
    /// </summary>
    public static void Double(string label, double[] values, ReadOnlySpan<double> analytic, Func<double> f,
        double h = 1e-6, double rtol = 1e-6, double atol = 1e-8)
    {
        Assert.Equal(values.Length, analytic.Length);
        for (int i = 0; i < values.Length; i++)
        {
            double saved = values[i];
            values[i] = saved + h;
            double plus = f();
            values[i] = saved - h;
            double minus = f();
            values[i] = saved;
            double numeric = (plus - minus) / (2 * h);
            double tol = atol + rtol * Math.Max(Math.Abs(numeric), Math.Abs(analytic[i]));
            if (Math.Abs(numeric - analytic[i]) > tol)
                Assert.Fail($"{label}[{i}]: analytic {analytic[i]:R} vs numeric {numeric:R} (diff {Math.Abs(numeric - analytic[i]):E3}, tol {tol:E3})");
        }
    }

    /// <summary>
    /// Float-path check of a module: loss L = Σ r·y with fixed random r (accumulated in double), analytic gradients from
    /// Backward(r), numeric ones by central differences with step h on each input and parameter element.
    /// <para>
    /// Tolerance: float forward values carry relative rounding ≈ 6e-8; L sums n of them, so its noise is about
    /// 6e-8·√n·|r||y|, and dividing by 2h = 2e-2 leaves ≈ 3e-6·√n·|y| in the numeric derivative. Truncation is
    /// h²·f'''/6 ≈ 2e-5·f'''. For the sizes used (n ≤ a few hundred, |y| ≲ 5) both stay below 2e-3, hence
    /// atol 2e-3 + rtol 1e-2 (the same order as PyTorch's gradcheck defaults for float, which it discourages for that reason).
    /// The double-precision kernel checks carry the strict verification; this one proves the module wiring.
    /// </para>
    /// Modules whose forward consumes randomness (dropout) cannot be checked this way.
    /// </summary>
    public static void Module(Module module, Tensor x, int seed = 1, double h = 1e-2, double rtol = 1e-2, double atol = 2e-3,
        bool checkInput = true)
    {
        var rng = new Rng((ulong)seed);
        var y0 = module.Forward(x);
        var r = new Tensor(y0.Shape.ToArray());
        Init.Normal(r, rng, 1.0);
        module.ZeroGrad();
        var dx = module.Backward(r).Clone();
        var grads = module.NamedParameters().Select(p => (p.Name, p.Parameter, Grad: p.Parameter.Grad.Clone())).ToList();

        double Loss()
        {
            var y = module.Forward(x);
            double sum = 0;
            var ys = y.Span;
            var rs = r.Span;
            for (int i = 0; i < ys.Length; i++)
                sum += (double)ys[i] * rs[i];
            return sum;
        }

        if (checkInput)
            Compare($"{module} d/dx", x, dx, Loss, h, rtol, atol);
        foreach (var (name, p, grad) in grads)
            Compare($"{module} d/d{name}", p.Value, grad, Loss, h, rtol, atol);
    }

    private static void Compare(string label, Tensor values, Tensor analytic, Func<double> loss, double h, double rtol, double atol)
    {
        for (int i = 0; i < values.Length; i++)
        {
            float saved = values[i];
            values[i] = saved + (float)h;
            double plus = loss();
            values[i] = saved - (float)h;
            double minus = loss();
            values[i] = saved;
            double numeric = (plus - minus) / (2 * h);
            double a = analytic[i];
            double tol = atol + rtol * Math.Max(Math.Abs(numeric), Math.Abs(a));
            if (Math.Abs(numeric - a) > tol)
                Assert.Fail($"{label}[{i}] of shape {values.ShapeString}: analytic {a:R} vs numeric {numeric:R} (diff {Math.Abs(numeric - a):E3}, tol {tol:E3})");
        }
    }
}

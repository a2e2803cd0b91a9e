using NormLab.Lab.Measures;
using NormLab.Models;

namespace NormLab.Tests.Lab;

/// <summary>
/// Santurkar's ICS (Definition 2.1) on linear networks whose gradients have closed forms: G' of layer 2 is its gradient
/// after layer 1 took its SGD step; layer 1 has nothing before it, so its ICS is 0 by definition.
/// </summary>
public sealed class InternalCovariateShiftTests
{
    [Fact]
    public void AScalarChainGivesTheHandComputedShift()
    {
        // f = b·a·x with x = 1, y = 0: L = ½(ab)², ∂L/∂a = ab², ∂L/∂b = a²b. At a = 1, b = 2, lr = 0.1: G₁ = 4, G₂ = 2;
        // a' = 1 − 0.1·4 = 0.6, so G₂' = 0.6²·2 = 0.72 and ICS₂ = 1.28.
        static double Chain(ReadOnlySpan<float> w, Span<float> g)
        {
            double a = w[0], b = w[1];
            g[0] = (float)(a * b * b);
            g[1] = (float)(a * a * b);
            return 0.5 * a * a * b * b;
        }
        var ics = InternalCovariateShift.Measure(Chain, [1f, 2f], [0..1, 1..2], lr: 0.1);
        Assert.Equal(0, ics[0].Distance);
        Assert.Equal(1, ics[0].Cosine);
        Assert.Equal(4, ics[0].GradientNorm, 6);
        Assert.Equal(1.28, ics[1].Distance, 5);
        Assert.Equal(1, ics[1].Cosine, 6);
        Assert.Equal(2, ics[1].GradientNorm, 6);
    }

    [Fact]
    public void OnATwoLayerLinearNetworkItMatchesTheClosedForm()
    {
        // pred = X·W₁ᵀ·W₂ᵀ, L = mean((pred − Y)²). With D = dL/dpred = 2(pred − Y)/(N·m) and H = X·W₁ᵀ:
        // G₂ = Dᵀ·H, G₁ = (D·W₂)ᵀ·X; G₂' is G₂ recomputed with W₁' = W₁ − lr·G₁.
        const int n = 5, input = 3, hidden = 4, output = 2;
        const double lr = 0.3;
        var rng = new Rng(3);
        var model = new Sequential(new Linear(input, hidden, bias: false, rng: rng), new Linear(hidden, output, bias: false, rng: rng));
        var x = new Tensor(n, input);
        var y = new Tensor(n, output);
        Init.Normal(x, rng, 1);
        Init.Normal(y, rng, 1);
        double[,] w1 = Matrix(((Linear)model[0]).Weight.Value, hidden, input), w2 = Matrix(((Linear)model[1]).Weight.Value, output, hidden);
        double[,] xs = Matrix(x, n, input), ys = Matrix(y, n, output);

        (double[,] G1, double[,] G2) Gradients(double[,] first)
        {
            var h = Mul(xs, T(first));
            var pred = Mul(h, T(w2));
            var d = new double[n, output];
            for (int i = 0; i < n; i++)
                for (int j = 0; j < output; j++)
                    d[i, j] = 2 * (pred[i, j] - ys[i, j]) / (n * output);
            return (Mul(T(Mul(d, w2)), xs), Mul(T(d), h));
        }
        var (g1, g2) = Gradients(w1);
        var w1Updated = new double[hidden, input];
        for (int i = 0; i < hidden; i++)
            for (int j = 0; j < input; j++)
                w1Updated[i, j] = w1[i, j] - lr * g1[i, j];
        var (_, g2Prime) = Gradients(w1Updated);
        var a = Flat(g2);
        var b = Flat(g2Prime);
        double distance = Math.Sqrt(a.Zip(b, (u, v) => (u - v) * (u - v)).Sum());
        double cosine = a.Zip(b, (u, v) => u * v).Sum() / Math.Sqrt(a.Sum(u => u * u) * b.Sum(v => v * v));

        var objective = NetworkObjective.MeanSquared(model, x, y);
        var before = objective.Vector.Read();
        var ics = InternalCovariateShift.Measure(objective.Evaluate, before, objective.Vector.WeightRanges(), lr);
        objective.Restore();

        Assert.Equal(2, ics.Length);
        Assert.Equal((0.0, 1.0), (ics[0].Distance, ics[0].Cosine));
        Assert.Equal(Math.Sqrt(Flat(g1).Sum(u => u * u)), ics[0].GradientNorm, 1e-5);
        Assert.True(distance > 1e-3, $"the case is degenerate (distance {distance})");
        Assert.Equal(distance, ics[1].Distance, distance * 1e-4);
        Assert.Equal(cosine, ics[1].Cosine, 1e-5);
        Assert.Equal(before, objective.Vector.Read());
    }

    [Fact]
    public void MeasuringLeavesWeightsRunningStatisticsAndNoiseAsTheyWere()
    {
        var model = Zoo.Mlp(6, [5, 4], 3, ActivationKind.ReLU, new NormSpec(NormKind.Noisy), rng: new Rng(9));
        var twin = Zoo.Mlp(6, [5, 4], 3, ActivationKind.ReLU, new NormSpec(NormKind.Noisy), rng: new Rng(9));
        var x = new Tensor(8, 6);
        Init.Normal(x, new Rng(1), 1);
        int[] labels = [0, 1, 2, 0, 1, 2, 0, 1];

        var objective = NetworkObjective.CrossEntropy(model, x, labels);
        Assert.Equal(2, new NoiseStreams(model).Count);
        var w = objective.Vector.Read();
        var ics = InternalCovariateShift.Measure(objective.Evaluate, w, objective.Vector.WeightRanges(), lr: 0.5);
        var landscape = Landscape.Measure(objective.Evaluate, w, [0.1, 0.5]);
        objective.Restore();

        Assert.Equal(3, ics.Length);
        Assert.True(ics[1].Distance > 0 && ics[2].Distance > 0);
        Assert.True(landscape.DeltaMax > 0);
        // The measured model now behaves exactly like its untouched twin: same weights, running statistics and noise.
        Assert.Equal(twin.Forward(x).ToArray(), model.Forward(x).ToArray());
        Assert.Equal(twin.NamedBuffers().SelectMany(b => b.Value.ToArray()), model.NamedBuffers().SelectMany(b => b.Value.ToArray()));
    }

    [Fact]
    public void TheObjectiveIsAFunctionOfTheWeightsAlone()
    {
        // With the noise replayed and batch statistics, the same w gives the same loss and gradient every time.
        var model = Zoo.Mlp(6, [5], 3, ActivationKind.ReLU, new NormSpec(NormKind.Noisy), rng: new Rng(2));
        var x = new Tensor(8, 6);
        Init.Normal(x, new Rng(4), 1);
        var objective = NetworkObjective.CrossEntropy(model, x, [0, 1, 2, 0, 1, 2, 0, 1]);
        var w = objective.Vector.Read();
        var g1 = new float[w.Length];
        var g2 = new float[w.Length];
        double l1 = objective.Evaluate(w, g1);
        objective.Evaluate(w.Select(v => v + 0.1f).ToArray(), g2);
        double l2 = objective.Evaluate(w, g2);
        Assert.Equal(l1, l2);
        Assert.Equal(g1, g2);
    }

    [Fact]
    public void LayersOutOfOrderAreRefused() =>
        Assert.Throws<ArgumentException>(() => InternalCovariateShift.Measure((w, g) => 0, [1f, 2f], [1..2, 0..1], 0.1));

    private static double[,] Matrix(Tensor t, int rows, int cols)
    {
        var m = new double[rows, cols];
        var s = t.Span;
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                m[i, j] = s[i * cols + j];
        return m;
    }

    private static double[,] T(double[,] a)
    {
        var t = new double[a.GetLength(1), a.GetLength(0)];
        for (int i = 0; i < a.GetLength(0); i++)
            for (int j = 0; j < a.GetLength(1); j++)
                t[j, i] = a[i, j];
        return t;
    }

    private static double[,] Mul(double[,] a, double[,] b)
    {
        var c = new double[a.GetLength(0), b.GetLength(1)];
        for (int i = 0; i < a.GetLength(0); i++)
            for (int j = 0; j < b.GetLength(1); j++)
                for (int k = 0; k < a.GetLength(1); k++)
                    c[i, j] += a[i, k] * b[k, j];
        return c;
    }

    private static double[] Flat(double[,] a) => a.Cast<double>().ToArray();
}

using NormLab.Kernels;
using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>Every non-convolution module against finite differences, in float (wiring) and, for kernels, in double.</summary>
public class ModuleGradientTests
{
    [Theory]
    [InlineData(1, 1, 1, true)]
    [InlineData(2, 5, 3, true)]
    [InlineData(3, 7, 4, false)]
    public void LinearFloatModule(int n, int inF, int outF, bool bias)
    {
        var layer = new Linear(inF, outF, bias, new Rng(3));
        GradCheck.Module(layer, TensorAssert.Randn(n + inF, n, inF));
    }

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(2, 5, 3)]
    [InlineData(3, 17, 9)]
    public void GemmFormsInDouble(int m, int k, int n)
    {
        // L = Σ r ∘ (A·B): dA = r·Bᵀ (ABt), dB = Aᵀ·r (AtB).
        var rng = new Rng(9);
        double[] Rand(int count) => Enumerable.Range(0, count).Select(_ => rng.NextGaussian()).ToArray();
        var a = Rand(m * k);
        var b = Rand(k * n);
        var r = Rand(m * n);
        double Loss()
        {
            var c = new double[m * n];
            Gemm.AB<double>(c, a, b, m, k, n);
            return c.Zip(r, (x, y) => x * y).Sum();
        }
        var bt = new double[n * k];
        for (int p = 0; p < k; p++)
            for (int j = 0; j < n; j++)
                bt[j * k + p] = b[p * n + j];
        var dA = new double[m * k];
        Gemm.ABt<double>(dA, r, b, m, n, k);
        var dB = new double[k * n];
        Gemm.AtB<double>(dB, a, r, k, m, n);
        GradCheck.Double("dA", a, dA, Loss);
        GradCheck.Double("dB", b, dB, Loss);
        // ABt with an explicit transpose agrees with AB.
        var c1 = new double[m * n];
        var c2 = new double[m * n];
        Gemm.AB<double>(c1, a, b, m, k, n);
        Gemm.ABt<double>(c2, a, bt, m, k, n);
        for (int i = 0; i < c1.Length; i++)
            Assert.Equal(c1[i], c2[i], 10);
    }

    [Fact]
    public void SequentialOfLinearBatchNormAndActivations()
    {
        var rng = new Rng(5);
        var model = new Sequential(new Linear(4, 6, rng: rng), new BatchNorm1d(6), new Tanh(), new Linear(6, 3, rng: rng), new Sigmoid());
        GradCheck.Module(model, TensorAssert.Randn(1, 5, 4));
    }

    [Fact]
    public void ResidualWithIdentityAndWithProjection()
    {
        var rng = new Rng(6);
        GradCheck.Module(new Residual(new Sequential(new Linear(5, 5, rng: rng), new Tanh())), TensorAssert.Randn(2, 3, 5));
        GradCheck.Module(new Residual(new Sequential(new Linear(5, 4, rng: rng), new Sigmoid()), new Linear(5, 4, rng: rng)), TensorAssert.Randn(3, 3, 5));
        var e = Assert.Throws<ArgumentException>(() => new Residual(new Linear(5, 4, rng: rng)).Forward(new Tensor(2, 5)));
        Assert.Contains("[2, 4]", e.Message);
        Assert.Contains("[2, 5]", e.Message);
    }

    [Fact]
    public void FlattenIsAViewAndPassesGradientsThrough()
    {
        var flatten = new Flatten();
        var x = TensorAssert.Randn(4, 2, 3, 2, 2);
        var y = flatten.Forward(x);
        Assert.Equal([2, 12], y.Shape.ToArray());
        Assert.Same(x.Storage, y.Storage);
        GradCheck.Module(new Sequential(new Flatten(), new Linear(12, 3, rng: new Rng(1))), x);
    }

    [Fact]
    public void DropoutScalesKeptValuesAndIsIdentityInEval()
    {
        var dropout = new Dropout(0.25, new Rng(8));
        var x = new Tensor(1000, 10);
        x.Fill(1f);
        var y = dropout.Forward(x).Clone();   // the module reuses its output buffer on the next Forward
        int kept = y.ToArray().Count(v => v != 0);
        Assert.All(y.ToArray(), v => Assert.True(v == 0 || Math.Abs(v - 1 / 0.75f) < 1e-6));
        Assert.InRange(kept, 7300, 7700);   // 7500 ± 5σ (σ ≈ 43)
        var dy = TensorAssert.Randn(2, 1000, 10);
        var dx = dropout.Backward(dy);
        for (int i = 0; i < x.Length; i++)
            Assert.Equal(y[i] == 0 ? 0f : dy[i] * (1 / 0.75f), dx[i]);
        dropout.Eval();
        TensorAssert.Close("eval identity", x, dropout.Forward(x), 0, 0);
        // Same seed, same mask.
        var again = new Dropout(0.25, new Rng(8)).Forward(x);
        Assert.Equal(y.ToArray(), again.ToArray());
    }

    [Fact]
    public void DropoutWithItsMaskHeldFixedMatchesFiniteDifferences()
    {
        // Restoring the generator before every forward replays the same mask, so the finite differences see one function.
        var rng = new Rng(12);
        var state = rng.GetState();
        GradCheck.Module(new Replayed(new Dropout(0.3, rng), rng, state), TensorAssert.Randn(4, 3, 7));
    }

    [Fact]
    public void SoftmaxCrossEntropyGradientInDouble()
    {
        int n = 4, k = 5;
        var rng = new Rng(4);
        var logits = Enumerable.Range(0, n * k).Select(_ => 3 * rng.NextGaussian()).ToArray();
        int[] targets = [0, 4, 2, 2];
        var grad = new double[n * k];
        Loss.SoftmaxCrossEntropy<double>(grad, logits, targets, n, k);
        var scratch = new double[n * k];
        GradCheck.Double("dlogits", logits, grad, () => Loss.SoftmaxCrossEntropy<double>(scratch, logits, targets, n, k));
    }

    [Fact]
    public void SoftmaxCrossEntropyIsStableForLargeLogits()
    {
        var ce = new SoftmaxCrossEntropy();
        var loss = ce.Forward(Tensor.FromArray([1000, 1001], 1, 2), [1]);
        Assert.Equal(Math.Log(1 + Math.Exp(-1)), loss, 5);
        Assert.All(ce.Backward().ToArray(), v => Assert.True(float.IsFinite(v)));
        var e = Assert.Throws<ArgumentException>(() => ce.Forward(new Tensor(2, 3), [0, 3]));
        Assert.Contains("target 3", e.Message);
    }

    [Fact]
    public void MeanSquaredErrorGradientInDouble()
    {
        var rng = new Rng(2);
        var p = Enumerable.Range(0, 7).Select(_ => rng.NextGaussian()).ToArray();
        var t = Enumerable.Range(0, 7).Select(_ => rng.NextGaussian()).ToArray();
        var grad = new double[7];
        Loss.MeanSquaredError<double>(grad, p, t);
        var scratch = new double[7];
        GradCheck.Double("dpred", p, grad, () => Loss.MeanSquaredError<double>(scratch, p, t));
        Assert.Throws<ArgumentException>(() => new MeanSquaredError().Forward(new Tensor(2, 3), new Tensor(3, 2)));
    }
}

using NormLab.Kernels;
using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>The float products (packed kernels where the machine has them) against a double reference, edges included.</summary>
public class GemmTests
{
    public enum Form { AB, ABt, AtB }

    private static readonly int[] Edges = [1, 2, 5, 6, 7, 15, 16, 17, 31, 32, 33, 63, 97, 100, 288, 784];

    // Every m and n of the edge list against a few k, and every k against a few (m, n): tile edges in each dimension,
    // one and several K blocks, without the 16³ cube.
    public static TheoryData<int, int, int> Shapes()
    {
        var data = new TheoryData<int, int, int>();
        var seen = new HashSet<(int, int, int)>();
        void Add(int m, int k, int n)
        {
            if (seen.Add((m, k, n)))
                data.Add(m, k, n);
        }
        foreach (int m in Edges)
            foreach (int n in Edges)
                foreach (int k in new[] { 1, 7, 33 })
                    if ((long)m * n <= 100 * 784)
                        Add(m, k, n);
        foreach (int k in Edges)
            foreach (var (m, n) in new[] { (1, 1), (6, 32), (7, 33), (17, 15), (63, 97), (100, 16) })
                Add(m, k, n);
        foreach (var (m, k, n) in new[] { (60, 784, 100), (100, 60, 784), (64, 288, 196), (288, 64, 196), (64, 196, 288),
                     (32, 9, 784), (128, 3136, 128), (128, 128, 3136), (300, 700, 530) })
            Add(m, k, n);
        // Dot products for few columns of ABt and a long K (SgemmSmall), with and without a tail of K, around its limits.
        foreach (var (m, k, n) in new[] { (32, 784, 9), (13, 512, 12), (9, 517, 1), (5, 1000, 4), (3, 600, 13), (7, 511, 9) })
            Add(m, k, n);
        return data;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void AllFormsMatchADoubleReferenceAndAccumulate(int m, int k, int n)
    {
        var rng = new Rng((ulong)(m * 1_000_003 + k * 1009 + n));
        float[] Rand(int count) => Enumerable.Range(0, count).Select(_ => (float)rng.NextGaussian()).ToArray();
        var a = Rand(m * k);
        var b = Rand(k * n);
        var c0 = Rand(m * n);
        foreach (var form in Enum.GetValues<Form>())
        {
            var (aStored, bStored) = Layout(form, a, b, m, k, n);
            var c = (float[])c0.Clone();
            Run(form, c, aStored, bStored, m, k, n);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double sum = c0[i * n + j], magnitude = Math.Abs(sum);
                    for (int p = 0; p < k; p++)
                    {
                        double t = (double)a[i * k + p] * b[p * n + j];
                        sum += t;
                        magnitude += Math.Abs(t);
                    }
                    // Float rounding of a k-term sum: a few ulps of the magnitude per term, generously.
                    double tolerance = 4e-7 * Math.Sqrt(k + 1) * magnitude + 1e-30;
                    Assert.True(Math.Abs(c[i * n + j] - sum) <= tolerance,
                        $"{form} {m}×{k}×{n}: C[{i},{j}] = {c[i * n + j]}, reference {sum}");
                }
        }
    }

    // The zmm kernels (AVX-512 machines) on any machine, emulated where needed: the same bits as the path in use, since
    // every kernel sums each element the same way.
    [Theory]
    [InlineData(7, 33, 100)]
    [InlineData(63, 288, 17)]
    [InlineData(100, 700, 531)]
    public unsafe void WideTilesGiveTheSameBitsAsTheDefault(int m, int k, int n)
    {
        if (!Sgemm.IsSupported)
            return;
        var rng = new Rng(4);
        float[] Rand(int count) => Enumerable.Range(0, count).Select(_ => (float)rng.NextGaussian()).ToArray();
        var a = Rand(m * k);
        var b = Rand(k * n);
        var c0 = Rand(m * n);
        foreach (var form in Enum.GetValues<Form>())
        {
            var (aStored, bStored) = Layout(form, a, b, m, k, n);
            var expected = (float[])c0.Clone();
            Run(form, expected, aStored, bStored, m, k, n);
            var c = (float[])c0.Clone();
            fixed (float* pc = c, pa = aStored, pb = bStored)
                switch (form)
                {
                    case Form.AB: Sgemm.Run(pc, n, pa, k, 1, pb, n, 1, m, k, n, wide: true); break;
                    case Form.ABt: Sgemm.Run(pc, n, pa, k, 1, pb, 1, k, m, k, n, wide: true); break;
                    default: Sgemm.Run(pc, n, pa, 1, m, pb, n, 1, m, k, n, wide: true); break;
                }
            Assert.True(expected.AsSpan().SequenceEqual(c), $"{form} {m}×{k}×{n}: zmm tiles differ");
        }
    }

    // Overwriting C (accumulate: false) gives the bits of clearing C and accumulating, and never reads C: NaN there
    // would otherwise come through. Every shape of the accuracy test (several K blocks, edge tiles, the dot products).
    [Theory]
    [MemberData(nameof(Shapes))]
    public void OverwritingGivesTheBitsOfAClearedProduct(int m, int k, int n)
    {
        var rng = new Rng((ulong)(m * 7919 + k * 31 + n));
        float[] Rand(int count) => Enumerable.Range(0, count).Select(_ => (float)rng.NextGaussian()).ToArray();
        var a = Rand(m * k);
        var b = Rand(k * n);
        foreach (var form in Enum.GetValues<Form>())
        {
            var (aStored, bStored) = Layout(form, a, b, m, k, n);
            var cleared = new float[m * n];
            Run(form, cleared, aStored, bStored, m, k, n);
            var overwritten = Enumerable.Repeat(float.NaN, m * n).ToArray();
            Run(form, overwritten, aStored, bStored, m, k, n, accumulate: false);
            Assert.True(cleared.AsSpan().SequenceEqual(overwritten), $"{form} {m}×{k}×{n}: overwriting differs from a cleared C");
        }
    }

    [Theory]
    [InlineData(3, 0, 4)]
    [InlineData(2, 5, 3)]
    public void OverwritingInDoubleOrWithoutKGivesTheClearedProduct(int m, int k, int n)
    {
        var rng = new Rng(5);
        var a = Enumerable.Range(0, m * k).Select(_ => rng.NextGaussian()).ToArray();
        var b = Enumerable.Range(0, k * n).Select(_ => rng.NextGaussian()).ToArray();
        var cleared = new double[m * n];
        Gemm.AB<double>(cleared, a, b, m, k, n);
        var overwritten = Enumerable.Repeat(double.NaN, m * n).ToArray();
        Gemm.AB<double>(overwritten, a, b, m, k, n, accumulate: false);
        Assert.Equal(cleared, overwritten);
        var floats = Enumerable.Repeat(float.NaN, m * n).ToArray();
        Gemm.AB<float>(floats, a.Select(v => (float)v).ToArray(), b.Select(v => (float)v).ToArray(), m, k, n, accumulate: false);
        Assert.DoesNotContain(floats, float.IsNaN);
    }

    // SgemmSmall's dot products take rows of A two at a time and a last one alone: the same bits either way.
    [Theory]
    [InlineData(32, 784, 9)]
    [InlineData(5, 517, 6)]
    public unsafe void DotProductsGiveTheSameBitsForRowsInPairsAndAlone(int m, int k, int n)
    {
        var rng = new Rng(9);
        float[] Rand(int count) => Enumerable.Range(0, count).Select(_ => (float)rng.NextGaussian()).ToArray();
        var a = Rand(m * k);
        var b = Rand(n * k);
        var c0 = Rand(m * n);
        var (pairs, alone) = ((float[])c0.Clone(), (float[])c0.Clone());
        fixed (float* pa = a, pb = b, pPairs = pairs, pAlone = alone)
        {
            SgemmSmall.Dots(pPairs, n, pa, k, pb, k, k, n, 0, m);
            for (int i = 0; i < m; i++)
                SgemmSmall.Dots(pAlone, n, pa, k, pb, k, k, n, i, i + 1);
        }
        Assert.True(pairs.AsSpan().SequenceEqual(alone), $"{m}×{k}×{n}: rows in pairs differ from rows alone");
    }

    [Fact]
    public void EmptyDimensionsLeaveCUnchanged()
    {
        var c = new float[] { 1, 2, 3 };
        Gemm.AB<float>(c, [], [], 3, 0, 1);
        Gemm.ABt<float>(c, [], [], 1, 0, 3);
        Gemm.AtB<float>(c, [], [], 3, 0, 1);
        Assert.Equal([1f, 2, 3], c);
    }

    [Theory]
    [InlineData(64, 196, 288)] // the CNN's conv2: dW += dy·colᵀ, also computed as dWᵀ += col·dyᵀ
    [InlineData(13, 30, 27)]
    [InlineData(33, 785, 100)]
    [InlineData(6, 17, 16)]
    public void TheTransposedProductGivesTheSameBits(int m, int k, int n)
    {
        // C = A·Bᵀ and Cᵀ = B·Aᵀ are the same products summed in the same order of k: Conv relies on it to pick the form
        // that transposes the smaller operand.
        var a = TensorAssert.Randn(m * k + 1, m * k).Span.ToArray();
        var b = TensorAssert.Randn(k * n + 2, n * k).Span.ToArray();
        var c = TensorAssert.Randn(m * n + 3, m * n).Span.ToArray();
        var ct = Transpose(c, m, n);
        Gemm.ABt<float>(c, a, b, m, k, n);
        Gemm.ABt<float>(ct, b, a, n, k, m);
        Assert.True(Transpose(ct, n, m).AsSpan().SequenceEqual(c), $"{m}×{k}×{n}: C and (Cᵀ)ᵀ differ");
    }

    internal static void Run(Form form, float[] c, float[] a, float[] b, int m, int k, int n, bool accumulate = true)
    {
        switch (form)
        {
            case Form.AB: Gemm.AB<float>(c, a, b, m, k, n, accumulate); break;
            case Form.ABt: Gemm.ABt<float>(c, a, b, m, k, n, accumulate); break;
            default: Gemm.AtB<float>(c, a, b, m, k, n, accumulate); break;
        }
    }

    // A (m×k) and B (k×n) stored as the form reads them: B transposed for ABt, A transposed for AtB.
    internal static (float[] A, float[] B) Layout(Form form, float[] a, float[] b, int m, int k, int n) => form switch
    {
        Form.ABt => (a, Transpose(b, k, n)),
        Form.AtB => (Transpose(a, m, k), b),
        _ => (a, b),
    };

    private static float[] Transpose(float[] x, int rows, int cols)
    {
        var t = new float[x.Length];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                t[j * rows + i] = x[i * cols + j];
        return t;
    }
}

/// <summary>Products give the same bits for any team size (K is never split across threads).</summary>
[Collection(TeamSize.Collection)]
public class GemmDeterminismTests
{
    [Fact]
    public void RandomShapesGiveTheSameBitsForOneTwoAndThreeThreads()
    {
        var rng = new Rng(17);
        for (int trial = 0; trial < 40; trial++)
        {
            int m = 1 + rng.NextInt(trial < 20 ? 80 : 400), k = 1 + rng.NextInt(trial % 2 == 0 ? 100 : 1000);
            int n = 1 + rng.NextInt(trial < 20 ? 80 : 400);
            AllFormsGiveTheSameBitsForOneTwoAndThreeThreads(rng, m, k, n);
        }
    }

    // The training steps' products, where the split by rows or columns of C is chosen by cost and so by team size.
    [Theory]
    [InlineData(60, 784, 100)]
    [InlineData(100, 60, 784)]
    [InlineData(64, 288, 196)]
    [InlineData(288, 64, 196)]
    [InlineData(128, 3136, 128)]
    [InlineData(128, 128, 3136)]
    public void TrainingStepProductsGiveTheSameBitsForOneTwoAndThreeThreads(int m, int k, int n) =>
        AllFormsGiveTheSameBitsForOneTwoAndThreeThreads(new Rng((ulong)(m + k + n)), m, k, n);

    private static void AllFormsGiveTheSameBitsForOneTwoAndThreeThreads(Rng rng, int m, int k, int n)
    {
        float[] Rand(int count) => Enumerable.Range(0, count).Select(_ => (float)rng.NextGaussian()).ToArray();
        var a = Rand(m * k);
        var b = Rand(k * n);
        var c0 = Rand(m * n);
        foreach (var form in Enum.GetValues<GemmTests.Form>())
        {
            float[]? first = null;
            foreach (int threads in new[] { 1, 2, 3 })
            {
                using var _ = new TeamSize(threads);
                var c = (float[])c0.Clone();
                GemmTests.Run(form, c, a, b, m, k, n);
                if (first is null)
                    first = c;
                else
                    Assert.True(first.AsSpan().SequenceEqual(c), $"{form} {m}×{k}×{n}: {threads} threads differ from 1");
            }
        }
    }

    // Splitting by columns halves each thread's transposition of a wide transposed B; where that would leave the threads
    // unbalanced (7 tile columns over 2) rows stay cheaper.
    [Theory]
    [InlineData(128, 3136, 128, false, true, false)] // ABt
    [InlineData(60, 784, 100, false, true, true)]    // ABt
    [InlineData(288, 64, 196, true, false, true)]    // AtB
    [InlineData(64, 288, 3136, false, false, false)] // AB
    public void TheSplitFollowsTheCostOfPacking(int m, int k, int n, bool packA, bool transposedB, bool byRows)
    {
        using var _ = new TeamSize(2);
        Assert.Equal(byRows, Sgemm.SplitRowsCheaper((m + 5) / 6, (n + 15) / 16, k, 16, packA, transposedB));
    }

    // A batch of one image is a single group, whose products then run in parallel themselves.
    [Fact]
    public void ASingleImageConvolutionGivesTheSameBitsForOneTwoAndThreeThreads()
    {
        var w = new Window2d(14, 14, 3, 3, 1, 1);
        int cIn = 32, cOut = 64, l = w.OutPlaneSize;
        var rng = new Rng(23);
        float[] Rand(int count) => Enumerable.Range(0, count).Select(_ => (float)rng.NextGaussian()).ToArray();
        var x = Rand(cIn * w.PlaneSize);
        var weight = Rand(cOut * cIn * 9);
        var dy = Rand(cOut * l);
        float[]? first = null;
        foreach (int threads in new[] { 1, 2, 3 })
        {
            using var _ = new TeamSize(threads);
            var scratch = new float[Conv.ScratchSize(1, cIn, cOut, w)];
            var y = new float[cOut * l];
            var dx = new float[x.Length];
            var dW = new float[weight.Length];
            Conv.Forward<float>(y, x, weight, default, scratch, 1, cIn, cOut, w);
            Conv.Backward<float>(dx, dW, default, dy, x, weight, scratch, 1, cIn, cOut, w);
            float[] all = [.. y, .. dx, .. dW];
            if (first is null)
                first = all;
            else
                Assert.True(first.AsSpan().SequenceEqual(all), $"{threads} threads differ from 1");
        }
    }
}

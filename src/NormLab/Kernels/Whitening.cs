using System.Numerics.Tensors;

namespace NormLab.Kernels;

/// <summary>
/// ZCA whitening of one group of d features over m samples (Huang et al. 2018, "Decorrelated Batch Normalization"), in
/// double, on row-major m×d matrices:
/// <code>
/// X_c = X − μ      Σ = X_cᵀX_c/m = D·Λ·Dᵀ      W = D·(Λ + eps)^(−1/2)·Dᵀ      X̂ = X_c·W
/// </code>
/// ZCA (rotating back with D) rather than PCA keeps each output close to its input feature, which is what makes the
/// whitened network trainable. The backward goes through the eigendecomposition with the Daleckii–Krein form of the
/// derivative of W = f(Σ): dW = D·(K ∘ Dᵀ·dΣ·D)·Dᵀ with K_ij = (f(λ_i) − f(λ_j))/(λ_i − λ_j), K_ii = f′(λ_i),
/// which stays finite when eigenvalues coincide (the 1/(λ_i − λ_j) form does not).
/// </summary>
public static class Whitening
{
    /// <summary>The statistics of one forward pass, kept for the backward.</summary>
    public sealed class State(int d)
    {
        /// <summary>μ, d values.</summary>
        public double[] Mean { get; } = new double[d];

        /// <summary>Eigenvectors D (columns), d×d.</summary>
        public double[] Vectors { get; } = new double[d * d];

        /// <summary>Eigenvalues Λ of Σ.</summary>
        public double[] Values { get; } = new double[d];

        /// <summary>The whitening matrix W (symmetric), d×d.</summary>
        public double[] W { get; } = new double[d * d];

        /// <summary>The (biased) covariance Σ of the last batch, d×d; or the input of <see cref="FromCovariance"/>.</summary>
        public double[] Covariance { get; } = new double[d * d];

        // Scratch d×d matrices, so that a step allocates nothing.

        internal double[] A { get; } = new double[d * d];

        internal double[] T { get; } = new double[d * d];

        internal double[] B { get; } = new double[d * d];

        /// <summary>X_c, m×d (grown as needed).</summary>
        public double[] Centered { get; set; } = [];
    }

    /// <summary>X̂ = (X − μ)·W with μ, W from this batch; <paramref name="state"/> receives them.</summary>
    public static void Forward(Span<double> y, ReadOnlySpan<double> x, int m, int d, double eps, State state)
    {
        if (m < 2 || x.Length != m * d || y.Length != m * d)
            throw new ArgumentException($"Whitening: {x.Length} values do not form m={m} ≥ 2 samples of d={d} features.");
        if (state.Centered.Length < m * d)
            state.Centered = new double[m * d];
        var xc = state.Centered.AsSpan(0, m * d);
        var mean = state.Mean;
        Array.Clear(mean);
        for (int i = 0; i < m; i++)
            for (int k = 0; k < d; k++)
                mean[k] += x[i * d + k];
        for (int k = 0; k < d; k++)
            mean[k] /= m;
        for (int i = 0; i < m; i++)
            for (int k = 0; k < d; k++)
                xc[i * d + k] = x[i * d + k] - mean[k];
        var sigma = state.Covariance;
        Array.Clear(sigma);
        // Σ = X_cᵀX_c/m, row by row of X_c so that the inner loop is a vector operation over Σ's rows (the products
        // are the same for (a, b) and (b, a), so Σ comes out exactly symmetric).
        for (int i = 0; i < m; i++)
            AddOuterRow(sigma, xc.Slice(i * d, d), xc.Slice(i * d, d), d);
        TensorPrimitives.Divide(sigma, m, sigma);
        FromCovariance(state, d, eps);
        Multiply(y, xc, state.W, m, d);
    }

    /// <summary>W = (Σ + eps·I)^(−1/2) of <see cref="State.Covariance"/>, with its eigenvectors and eigenvalues, into the state.</summary>
    public static void FromCovariance(State state, int d, double eps)
    {
        state.Covariance.AsSpan(0, d * d).CopyTo(state.B);   // the rotations destroy their matrix; keep Σ
        SymmetricEigenInPlace(state.B, d, state.Values, state.Vectors);
        Compose(state.W, state.Vectors, state.Values, d, eps);
    }

    /// <summary>X̂ = (X − μ)·W with fixed μ, W (eval mode).</summary>
    public static void Apply(Span<double> y, ReadOnlySpan<double> x, int m, int d, ReadOnlySpan<double> mean, ReadOnlySpan<double> w)
    {
        Span<double> row = stackalloc double[d];
        for (int i = 0; i < m; i++)
        {
            TensorPrimitives.Subtract(x.Slice(i * d, d), mean, row);
            RowTimes(y.Slice(i * d, d), row, w, d);
        }
    }

    /// <summary>
    /// dX from dX̂ = <paramref name="g"/> through the batch statistics:
    /// dX_c = G·W + X_c·(S + Sᵀ)/m with S = D·(K ∘ Dᵀ·X_cᵀG·D)·Dᵀ, then dX = dX_c − mean_rows(dX_c).
    /// </summary>
    public static void Backward(Span<double> dx, ReadOnlySpan<double> g, int m, int d, double eps, State state)
    {
        var xc = state.Centered.AsSpan(0, m * d);
        Multiply(dx, g, state.W, m, d);                          // G·W
        var a = state.A;                                         // A = X_cᵀ·G
        Array.Clear(a);
        for (int i = 0; i < m; i++)
            AddOuterRow(a, xc.Slice(i * d, d), g.Slice(i * d, d), d);
        var dv = state.Vectors;
        var lambda = state.Values;
        var b = Sandwich(dv, a, d, transposeFirst: true, state.T, state.B);   // B = Dᵀ·A·D
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++)
                b[i * d + j] *= K(lambda[i], lambda[j], eps);
        var s = Sandwich(dv, b, d, transposeFirst: false, state.T, a);        // S = D·(K ∘ B)·Dᵀ (A is free again)
        var sym = state.T;                                       // S + Sᵀ (T is free again)
        for (int p = 0; p < d; p++)
            for (int k = 0; k < d; k++)
                sym[p * d + k] = s[p * d + k] + s[k * d + p];
        Span<double> v = stackalloc double[d];
        for (int i = 0; i < m; i++)
        {
            RowTimes(v, xc.Slice(i * d, d), sym, d);
            var row = dx.Slice(i * d, d);
            TensorPrimitives.Divide(v, m, v);
            TensorPrimitives.Add(row, v, row);
        }
        Span<double> colMean = stackalloc double[d];
        colMean.Clear();
        for (int i = 0; i < m; i++)
            for (int k = 0; k < d; k++)
                colMean[k] += dx[i * d + k];
        for (int i = 0; i < m; i++)
            for (int k = 0; k < d; k++)
                dx[i * d + k] -= colMean[k] / m;
    }

    /// <summary>dX = G·W for fixed statistics (eval mode; W is symmetric).</summary>
    public static void BackwardFixed(Span<double> dx, ReadOnlySpan<double> g, int m, int d, ReadOnlySpan<double> w) => Multiply(dx, g, w, m, d);

    // The divided difference of f(λ) = (λ + eps)^(−1/2), and f′ where the eigenvalues (nearly) coincide.
    private static double K(double li, double lj, double eps)
    {
        double fi = 1 / Math.Sqrt(li + eps), fj = 1 / Math.Sqrt(lj + eps);
        if (Math.Abs(li - lj) <= 1e-9 * Math.Max(Math.Abs(li), Math.Abs(lj)) + 1e-300)
            return -0.5 * fi * fi * fi;
        return (fi - fj) / (li - lj);
    }

    // W = D·diag((λ + eps)^(−1/2))·Dᵀ
    private static void Compose(double[] w, double[] dv, double[] lambda, int d, double eps)
    {
        Array.Clear(w);
        for (int e = 0; e < d; e++)
        {
            double fe = 1 / Math.Sqrt(lambda[e] + eps);
            for (int a = 0; a < d; a++)
                for (int b = 0; b < d; b++)
                    w[a * d + b] += dv[a * d + e] * fe * dv[b * d + e];
        }
    }

    // transposeFirst: Dᵀ·M·D; else D·M·Dᵀ.
    private static double[] Sandwich(double[] dv, double[] mat, int d, bool transposeFirst, double[] t, double[] r)
    {
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++)
            {
                double v = 0;
                for (int k = 0; k < d; k++)
                    v += (transposeFirst ? dv[k * d + i] : dv[i * d + k]) * mat[k * d + j];
                t[i * d + j] = v;
            }
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++)
            {
                double v = 0;
                for (int k = 0; k < d; k++)
                    v += t[i * d + k] * (transposeFirst ? dv[k * d + j] : dv[j * d + k]);
                r[i * d + j] = v;
            }
        return r;
    }

    // Y = X·W (m×d times d×d)
    private static void Multiply(Span<double> y, ReadOnlySpan<double> x, ReadOnlySpan<double> w, int m, int d)
    {
        for (int i = 0; i < m; i++)
            RowTimes(y.Slice(i * d, d), x.Slice(i * d, d), w, d);
    }

    // y = x·W for one row: Σ_a x_a·W[a, :], accumulated in the order of a (vectorized over W's rows).
    private static void RowTimes(Span<double> y, ReadOnlySpan<double> x, ReadOnlySpan<double> w, int d)
    {
        y.Clear();
        for (int a = 0; a < d; a++)
            TensorPrimitives.MultiplyAdd(w.Slice(a * d, d), x[a], y, y);
    }

    // M += uᵀv for rows u, v: M[a, :] += u_a·v.
    private static void AddOuterRow(Span<double> mat, ReadOnlySpan<double> u, ReadOnlySpan<double> v, int d)
    {
        for (int a = 0; a < d; a++)
        {
            var row = mat.Slice(a * d, d);
            TensorPrimitives.MultiplyAdd(v, u[a], row, row);
        }
    }

    /// <summary>Eigenvalues and eigenvectors (columns of <paramref name="vectors"/>) of a symmetric d×d matrix, by cyclic Jacobi rotations.</summary>
    public static void SymmetricEigen(double[] matrix, int d, double[] values, double[] vectors) =>
        SymmetricEigenInPlace((double[])matrix.Clone(), d, values, vectors);

    // The same, destroying the matrix (the rotations work on it).
    private static void SymmetricEigenInPlace(double[] a, int d, double[] values, double[] vectors)
    {
        Array.Clear(vectors);
        for (int i = 0; i < d; i++)
            vectors[i * d + i] = 1;
        for (int sweep = 0; sweep < 100; sweep++)
        {
            double off = 0, scale = 0;
            for (int p = 0; p < d; p++)
                for (int q = 0; q < d; q++)
                    (off, scale) = p == q ? (off, scale + a[p * d + q] * a[p * d + q]) : (off + a[p * d + q] * a[p * d + q], scale);
            if (off <= 1e-30 * Math.Max(scale, 1e-300))
                break;
            for (int p = 0; p < d - 1; p++)
                for (int q = p + 1; q < d; q++)
                {
                    double apq = a[p * d + q];
                    if (apq == 0)
                        continue;
                    double theta = (a[q * d + q] - a[p * d + p]) / (2 * apq);
                    double t = Math.Sign(theta) / (Math.Abs(theta) + Math.Sqrt(theta * theta + 1));
                    if (theta == 0)
                        t = 1;
                    double c = 1 / Math.Sqrt(t * t + 1), s = t * c;
                    for (int k = 0; k < d; k++)
                    {
                        double akp = a[k * d + p], akq = a[k * d + q];
                        a[k * d + p] = c * akp - s * akq;
                        a[k * d + q] = s * akp + c * akq;
                    }
                    for (int k = 0; k < d; k++)
                    {
                        double apk = a[p * d + k], aqk = a[q * d + k];
                        a[p * d + k] = c * apk - s * aqk;
                        a[q * d + k] = s * apk + c * aqk;
                    }
                    for (int k = 0; k < d; k++)
                    {
                        double vkp = vectors[k * d + p], vkq = vectors[k * d + q];
                        vectors[k * d + p] = c * vkp - s * vkq;
                        vectors[k * d + q] = s * vkp + c * vkq;
                    }
                }
        }
        for (int i = 0; i < d; i++)
            values[i] = Math.Max(a[i * d + i], 0); // a covariance is positive semi-definite; clip rounding below 0
    }
}

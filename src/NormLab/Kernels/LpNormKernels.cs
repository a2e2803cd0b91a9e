using System.Numerics;

namespace NormLab.Kernels;

/// <summary>
/// Santurkar et al.'s ℓp normalization (2018, §3.3), as this lab reconstructs it (the paper gives no formula): per channel
/// over the batch, like BatchNorm, but dividing by the p-th root of the mean p-th power of the deviations:
/// <code>
/// c = x − μ_B      s_p = ((1/m)·Σ|c|^p)^(1/p)   (p = ∞: max |c|)      x̂ = c/(s_p + eps)      y = γ·x̂ + β
/// </code>
/// p = 2 is BatchNorm with eps outside the root. The layout is BatchNorm's [n, c, s]; statistics in double.
/// </summary>
public static unsafe class LpNormKernels
{
    // Below this many values a kernel runs on the calling thread; above, channels are split over the thread team.
    // Each channel's sums stay in one thread and in one order, so the result does not depend on the thread count.
    private const long ParallelWork = 1 << 14;

    private ref struct Args<T> where T : unmanaged
    {
        public ReadOnlySpan<T> X, Dy, Gamma, Beta;
        public Span<T> Y, DGamma, DBeta;
        public ReadOnlySpan<double> MeanIn, ScaleIn;
        public Span<double> Mean, Scale;
        public int N, C, S;
        public double P, Eps;
    }

    private static void Run<T>(ref Args<T> a, delegate*<ref Args<T>, int, int, void> channels) where T : unmanaged
    {
        if ((long)a.N * a.C * a.S < ParallelWork)
            channels(ref a, 0, a.C);
        else
            Threading.Team.For(a.C, ref a, channels);
    }

    /// <summary>Per-channel mean and s_p.</summary>
    public static void Moments<T>(ReadOnlySpan<T> x, int n, int c, int s, double p, Span<double> mean, Span<double> scale)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check(x.Length, n, c, s, mean.Length, scale.Length);
        var a = new Args<T> { X = x, N = n, C = c, S = s, P = p, Mean = mean, Scale = scale };
        Run(ref a, &MomentsChannels);
    }

    private static void MomentsChannels<T>(ref Args<T> a, int from, int to) where T : unmanaged, IFloatingPointIeee754<T>
    {
        ReadOnlySpan<T> x = a.X;
        int n = a.N, c = a.C, s = a.S;
        double p = a.P, m = (double)n * s;
        for (int ch = from; ch < to; ch++)
        {
            double sum = 0;
            for (int i = 0; i < n; i++)
                for (int j = (i * c + ch) * s, end = j + s; j < end; j++)
                    sum += double.CreateChecked(x[j]);
            double mu = sum / m, acc = 0;
            for (int i = 0; i < n; i++)
                for (int j = (i * c + ch) * s, end = j + s; j < end; j++)
                {
                    double d = Math.Abs(double.CreateChecked(x[j]) - mu);
                    acc = double.IsPositiveInfinity(p) ? Math.Max(acc, d) : p == 1 ? acc + d : p == 2 ? acc + d * d : acc + Math.Pow(d, p);
                }
            a.Mean[ch] = mu;
            a.Scale[ch] = double.IsPositiveInfinity(p) ? acc : Math.Pow(acc / m, 1 / p);
        }
    }

    /// <summary>y = γ·(x − mean)/(scale + eps) + β per channel; empty γ, β mean 1 and 0.</summary>
    public static void Normalize<T>(Span<T> y, ReadOnlySpan<T> x, int n, int c, int s, ReadOnlySpan<double> mean, ReadOnlySpan<double> scale,
        double eps, ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check(x.Length, n, c, s, mean.Length, scale.Length);
        var args = new Args<T> { X = x, Y = y, N = n, C = c, S = s, MeanIn = mean, ScaleIn = scale, Eps = eps, Gamma = gamma, Beta = beta };
        Run(ref args, &NormalizeChannels);
    }

    private static void NormalizeChannels<T>(ref Args<T> args, int from, int to) where T : unmanaged, IFloatingPointIeee754<T>
    {
        ReadOnlySpan<T> x = args.X;
        Span<T> y = args.Y;
        int n = args.N, c = args.C, s = args.S;
        for (int ch = from; ch < to; ch++)
        {
            double a = (args.Gamma.IsEmpty ? 1 : double.CreateChecked(args.Gamma[ch])) / (args.ScaleIn[ch] + args.Eps);
            double b = args.Beta.IsEmpty ? 0 : double.CreateChecked(args.Beta[ch]);
            double mu = args.MeanIn[ch];
            for (int i = 0; i < n; i++)
            {
                int at = (i * c + ch) * s;
                for (int j = at; j < at + s; j++)
                    y[j] = T.CreateChecked((double.CreateChecked(x[j]) - mu) * a + b);
            }
        }
    }

    /// <summary>
    /// Backward with batch statistics. With c = x − μ, D = s_p + eps, S = Σ dy·c and ψ = |c|^(p−1)·sign(c):
    /// <code>
    /// dx_i = γ/D·(dy_i − mean(dy)) − γ·S/D²·∂s_p/∂x_i      ∂s_p/∂x_i = s_p^(1−p)/m·(ψ_i − mean(ψ))
    /// </code>
    /// (p = ∞: ∂s/∂x_i = sign(c_k)·(δ_ik − 1/m) for the arg-max k). dγ += Σ dy·x̂, dβ += Σ dy; dx is overwritten.
    /// </summary>
    public static void Backward<T>(Span<T> dx, Span<T> dGamma, Span<T> dBeta, ReadOnlySpan<T> dy, ReadOnlySpan<T> x, int n, int c, int s,
        double p, ReadOnlySpan<double> mean, ReadOnlySpan<double> scale, double eps, ReadOnlySpan<T> gamma)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check(x.Length, n, c, s, mean.Length, scale.Length);
        var args = new Args<T> { X = x, Dy = dy, Y = dx, DGamma = dGamma, DBeta = dBeta, N = n, C = c, S = s, P = p, MeanIn = mean, ScaleIn = scale, Eps = eps, Gamma = gamma };
        Run(ref args, &BackwardChannels);
    }

    private static void BackwardChannels<T>(ref Args<T> args, int from, int to) where T : unmanaged, IFloatingPointIeee754<T>
    {
        ReadOnlySpan<T> x = args.X, dy = args.Dy, gamma = args.Gamma;
        Span<T> dx = args.Y, dGamma = args.DGamma, dBeta = args.DBeta;
        int n = args.N, c = args.C, s = args.S;
        double p = args.P, eps = args.Eps, m = (double)n * s;
        bool inf = double.IsPositiveInfinity(p);
        for (int ch = from; ch < to; ch++)
        {
            double mu = args.MeanIn[ch], sp = args.ScaleIn[ch], d = sp + eps, g = gamma.IsEmpty ? 1 : double.CreateChecked(gamma[ch]);
            double sumDy = 0, sumDyC = 0, sumPsi = 0, maxAbs = -1;
            int argMax = -1;
            for (int i = 0; i < n; i++)
                for (int j = (i * c + ch) * s, end = j + s; j < end; j++)
                {
                    double cj = double.CreateChecked(x[j]) - mu, dyj = double.CreateChecked(dy[j]);
                    sumDy += dyj;
                    sumDyC += dyj * cj;
                    if (inf)
                    {
                        if (Math.Abs(cj) > maxAbs)
                            (maxAbs, argMax) = (Math.Abs(cj), j);
                    }
                    else
                        sumPsi += Psi(cj, p);
                }
            if (!dBeta.IsEmpty)
                dBeta[ch] += T.CreateChecked(sumDy);
            if (!dGamma.IsEmpty)
                dGamma[ch] += T.CreateChecked(sumDyC / d);
            double k = g * sumDyC / (d * d);
            double psiMean = sumPsi / m, sign = argMax >= 0 ? Math.Sign(double.CreateChecked(x[argMax]) - mu) : 0;
            double factor = inf ? 0 : Math.Pow(sp, 1 - p) / m;
            for (int i = 0; i < n; i++)
                for (int j = (i * c + ch) * s, end = j + s; j < end; j++)
                {
                    double cj = double.CreateChecked(x[j]) - mu;
                    double ds = inf ? sign * ((j == argMax ? 1 : 0) - 1 / m) : factor * (Psi(cj, p) - psiMean);
                    dx[j] = T.CreateChecked(g / d * (double.CreateChecked(dy[j]) - sumDy / m) - k * ds);
                }
        }
    }

    /// <summary>Backward with fixed statistics (eval): y is affine in x, dx = dy·γ/(scale + eps).</summary>
    public static void BackwardFixed<T>(Span<T> dx, Span<T> dGamma, Span<T> dBeta, ReadOnlySpan<T> dy, ReadOnlySpan<T> x, int n, int c, int s,
        ReadOnlySpan<double> mean, ReadOnlySpan<double> scale, double eps, ReadOnlySpan<T> gamma)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check(x.Length, n, c, s, mean.Length, scale.Length);
        for (int ch = 0; ch < c; ch++)
        {
            double d = scale[ch] + eps, g = gamma.IsEmpty ? 1 : double.CreateChecked(gamma[ch]), sumDy = 0, sumDyXhat = 0;
            for (int i = 0; i < n; i++)
                for (int j = (i * c + ch) * s, end = j + s; j < end; j++)
                {
                    double dyj = double.CreateChecked(dy[j]);
                    sumDy += dyj;
                    sumDyXhat += dyj * (double.CreateChecked(x[j]) - mean[ch]) / d;
                    dx[j] = T.CreateChecked(dyj * g / d);
                }
            if (!dBeta.IsEmpty)
                dBeta[ch] += T.CreateChecked(sumDy);
            if (!dGamma.IsEmpty)
                dGamma[ch] += T.CreateChecked(sumDyXhat);
        }
    }

    private static double Psi(double c, double p) => p == 1 ? Math.Sign(c) : p == 2 ? c : Math.Sign(c) * Math.Pow(Math.Abs(c), p - 1);

    private static void Check(int length, int n, int c, int s, int stats1, int stats2)
    {
        if ((long)n * c * s != length || stats1 < c || stats2 < c)
            throw new ArgumentException($"ℓp-norm kernel: {length} values and per-channel buffers of {Math.Min(stats1, stats2)} do not form [n={n}, c={c}, s={s}].");
    }
}

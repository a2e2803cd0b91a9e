using System.Numerics;
using System.Runtime.Intrinsics;

namespace NormLab.Kernels;

/// <summary>
/// Santurkar et al.'s ℓp normalization (2018, §3.3), as this lab reconstructs it (the paper gives no formula): per channel
/// over the batch, like BatchNorm, but dividing by the p-th root of the mean p-th power of the deviations:
/// <code>
/// c = x − μ_B      s_p = ((1/m)·Σ|c|^p)^(1/p)   (p = ∞: max |c|)      x̂ = c/(s_p + eps)      y = γ·x̂ + β
/// </code>
/// p = 1, 2 or ∞; p = 2 is BatchNorm with eps outside the root. The layout is BatchNorm's [n, c, s], walked plane by plane
/// with BatchNorm's vector loops (<see cref="Centered"/>): sums per lane in T within a plane, in double across planes,
/// deviations taken around the mean's (hi, lo) pair so that data far from zero keep their spread.
/// </summary>
public static unsafe class LpNormKernels
{
    // Below this many values a kernel runs on the calling thread; above, channels are split over the thread team.
    // Each channel's sums stay in one thread and in one order, so the result does not depend on the thread count.
    private const long ParallelWork = 1 << 14;

    private struct Args<T> where T : unmanaged, IFloatingPointIeee754<T>
    {
        public T* X, Dy, Y, Gamma, Beta, DGamma, DBeta;
        public double* Mean, Scale;
        public int N, C, S;
        public double P, Eps;

        public readonly double GammaOf(int ch) => Gamma == null ? 1 : Lanes.ToDouble(Gamma[ch]);

        public readonly double BetaOf(int ch) => Beta == null ? 0 : Lanes.ToDouble(Beta[ch]);

        /// <summary>Where image i's plane of channel ch starts.</summary>
        public readonly long At(int i, int ch) => ((long)i * C + ch) * S;
    }

    private static void Run<T>(ref Args<T> a, delegate*<ref Args<T>, int, int, void> channels) where T : unmanaged, IFloatingPointIeee754<T>
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
        Check(x.Length, n, c, s, p, mean.Length, scale.Length);
        fixed (T* px = x)
        fixed (double* pm = mean, ps = scale)
        {
            var a = new Args<T> { X = px, N = n, C = c, S = s, P = p, Mean = pm, Scale = ps };
            Run(ref a, &MomentsChannels);
        }
    }

    private static void MomentsChannels<T>(ref Args<T> a, int from, int to) where T : unmanaged, IFloatingPointIeee754<T>
    {
        double m = (double)a.N * a.S;
        for (int ch = from; ch < to; ch++)
        {
            // The mean around the channel's first value (BatchNorm's first pass), then the deviations around the mean.
            T first = a.X[(long)ch * a.S];
            var sum = new DoubleLanes();
            for (int i = 0; i < a.N; i++)
                sum.Add(Centered.Sum(a.X + a.At(i, ch), a.S, new Deviation<T>(Vector256.Create(first))));
            double mu = Lanes.ToDouble(first) + sum.Total / m;
            var (hi, lo) = Centered.Split<T>(mu);
            var (vh, vl) = (Vector256.Create(hi), Vector256.Create(lo));
            double sp;
            if (double.IsPositiveInfinity(a.P))
            {
                var max = Vector256<T>.Zero;
                for (int i = 0; i < a.N; i++)
                    max = Vector256.Max(max, MaxAbs(a.X + a.At(i, ch), a.S, vh, vl));
                sp = Lanes.ToDouble(Max(max));
            }
            else
            {
                var acc = new DoubleLanes();
                for (int i = 0; i < a.N; i++)
                {
                    T* plane = a.X + a.At(i, ch);
                    acc.Add(a.P == 1 ? Centered.Sum(plane, a.S, new AbsDeviation<T>(vh, vl)) : Centered.Sum(plane, a.S, new SquaredDeviation<T>(vh, vl)));
                }
                sp = a.P == 1 ? acc.Total / m : Math.Sqrt(acc.Total / m);
            }
            a.Mean[ch] = mu;
            a.Scale[ch] = sp;
        }
    }

    /// <summary>y = γ·(x − mean)/(scale + eps) + β per channel; empty γ, β mean 1 and 0.</summary>
    public static void Normalize<T>(Span<T> y, ReadOnlySpan<T> x, int n, int c, int s, ReadOnlySpan<double> mean, ReadOnlySpan<double> scale,
        double eps, ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check(x.Length, n, c, s, 1, mean.Length, scale.Length);
        if (y.Length != x.Length)
            throw new ArgumentException($"ℓp-norm kernel: y has {y.Length} values, x {x.Length}.");
        fixed (T* px = x, py = y, pg = gamma, pb = beta)
        fixed (double* pm = mean, ps = scale)
        {
            var a = new Args<T> { X = px, Y = py, Gamma = pg, Beta = pb, N = n, C = c, S = s, Mean = pm, Scale = ps, Eps = eps };
            Run(ref a, &NormalizeChannels);
        }
    }

    private static void NormalizeChannels<T>(ref Args<T> a, int from, int to) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int ch = from; ch < to; ch++)
        {
            var (hi, alpha, shift) = BatchNormFormulas.Affine<T>(a.Mean[ch], 1 / (a.Scale[ch] + a.Eps), a.GammaOf(ch), a.BetaOf(ch));
            var normalized = new Normalized<T>(Vector256.Create(hi), Vector256.Create(alpha), Vector256.Create(shift));
            for (int i = 0; i < a.N; i++)
            {
                long at = a.At(i, ch);
                Centered.Map(a.Y + at, a.X + at, a.X + at, a.S, normalized);
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
        Check(x.Length, n, c, s, p, mean.Length, scale.Length);
        CheckGradients(dx.Length, dy.Length, x.Length);
        fixed (T* px = x, pdy = dy, pdx = dx, pg = gamma, pdg = dGamma, pdb = dBeta)
        fixed (double* pm = mean, ps = scale)
        {
            var a = new Args<T> { X = px, Dy = pdy, Y = pdx, Gamma = pg, DGamma = pdg, DBeta = pdb, N = n, C = c, S = s, P = p, Mean = pm, Scale = ps, Eps = eps };
            Run(ref a, &BackwardChannels);
        }
    }

    private static void BackwardChannels<T>(ref Args<T> a, int from, int to) where T : unmanaged, IFloatingPointIeee754<T>
    {
        double m = (double)a.N * a.S;
        for (int ch = from; ch < to; ch++)
        {
            double sp = a.Scale[ch], d = sp + a.Eps, g = a.GammaOf(ch);
            var (vh, vl, sumDy, sumDyC) = GradientSums(ref a, ch, d);
            // dx = γ/D·(dy − meanDy' − k·ψ), the ψ terms' constants folded into meanDy' (k = S/(D·m)·s_p^(1−p)).
            double k = sumDyC / (d * m), meanDy = sumDy / m;
            var scaleDy = Vector256.Create(Lanes.FromDouble<T>(g / d));
            if (a.P == 1)
            {
                double psiMean = SumOver(ref a, ch, new SignOfDeviation<T>(vh, vl)) / m;
                var map = new InputGradientL1<T>(vh, vl, scaleDy, Vector256.Create(Lanes.FromDouble<T>(meanDy - k * psiMean)), Vector256.Create(Lanes.FromDouble<T>(k)));
                MapPlanes(ref a, ch, map);
            }
            else if (a.P == 2)
            {
                double kk = k / sp, cMean = SumOver(ref a, ch, new CenteredValue<T>(vh, vl)) / m;
                var map = new InputGradient<T>(vh, vl, scaleDy, Vector256.Create(Lanes.FromDouble<T>(meanDy - kk * cMean)), Vector256.Create(Lanes.FromDouble<T>(kk)));
                MapPlanes(ref a, ch, map);
            }
            else
            {
                // Only the arg-max moves s_∞; every other value sees the −1/m share of it.
                long argMax = ArgMaxAbs(ref a, ch, vh, vl, Lanes.FromDouble<T>(sp));
                double sign = Math.Sign(Lanes.ToDouble(a.X[argMax]) - a.Mean[ch]);
                var map = new InputGradient<T>(vh, vl, scaleDy, Vector256.Create(Lanes.FromDouble<T>(meanDy - k * sign)), Vector256<T>.Zero);
                MapPlanes(ref a, ch, map);
                a.Y[argMax] = Lanes.FromDouble<T>(g / d * (Lanes.ToDouble(a.Dy[argMax]) - meanDy + k * sign) - g / d * k * m * sign);
            }
        }
    }

    /// <summary>Backward with fixed statistics (eval): y is affine in x, dx = dy·γ/(scale + eps).</summary>
    public static void BackwardFixed<T>(Span<T> dx, Span<T> dGamma, Span<T> dBeta, ReadOnlySpan<T> dy, ReadOnlySpan<T> x, int n, int c, int s,
        ReadOnlySpan<double> mean, ReadOnlySpan<double> scale, double eps, ReadOnlySpan<T> gamma)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check(x.Length, n, c, s, 1, mean.Length, scale.Length);
        CheckGradients(dx.Length, dy.Length, x.Length);
        fixed (T* px = x, pdy = dy, pdx = dx, pg = gamma, pdg = dGamma, pdb = dBeta)
        fixed (double* pm = mean, ps = scale)
        {
            var a = new Args<T> { X = px, Dy = pdy, Y = pdx, Gamma = pg, DGamma = pdg, DBeta = pdb, N = n, C = c, S = s, Mean = pm, Scale = ps, Eps = eps };
            Run(ref a, &BackwardFixedChannels);
        }
    }

    private static void BackwardFixedChannels<T>(ref Args<T> a, int from, int to) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int ch = from; ch < to; ch++)
        {
            double d = a.Scale[ch] + a.Eps;
            GradientSums(ref a, ch, d);
            MapPlanes(ref a, ch, new ScaledGradient<T>(Vector256.Create(Lanes.FromDouble<T>(a.GammaOf(ch) / d))));
        }
    }

    // Σdy and Σdy·c of channel ch, accumulating dβ += Σdy and dγ += Σdy·c/D.
    private static (Vector256<T> Hi, Vector256<T> Lo, double SumDy, double SumDyC) GradientSums<T>(ref Args<T> a, int ch, double d)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (hi, lo) = Centered.Split<T>(a.Mean[ch]);
        var (vh, vl) = (Vector256.Create(hi), Vector256.Create(lo));
        var sumDy = new DoubleLanes();
        var sumDyC = new DoubleLanes();
        for (int i = 0; i < a.N; i++)
        {
            long at = a.At(i, ch);
            var (dy, dyC) = Centered.SumGradients(a.Dy + at, a.X + at, a.S, vh, vl);
            sumDy.Add(dy);
            sumDyC.Add(dyC);
        }
        double totalDy = sumDy.Total, totalDyC = sumDyC.Total;
        if (a.DBeta != null)
            a.DBeta[ch] += Lanes.FromDouble<T>(totalDy);
        if (a.DGamma != null)
            a.DGamma[ch] += Lanes.FromDouble<T>(totalDyC / d);
        return (vh, vl, totalDy, totalDyC);
    }

    private static double SumOver<T, TTerm>(ref Args<T> a, int ch, TTerm term)
        where T : unmanaged, IFloatingPointIeee754<T> where TTerm : struct, ITerm<T>
    {
        var sum = new DoubleLanes();
        for (int i = 0; i < a.N; i++)
            sum.Add(Centered.Sum(a.X + a.At(i, ch), a.S, term));
        return sum.Total;
    }

    private static void MapPlanes<T, TMap>(ref Args<T> a, int ch, TMap map) where T : unmanaged, IFloatingPointIeee754<T> where TMap : struct, IMap<T>
    {
        for (int i = 0; i < a.N; i++)
        {
            long at = a.At(i, ch);
            Centered.Map(a.Y + at, a.X + at, a.Dy + at, a.S, map);
        }
    }

    // max |(x − hi) − lo| per lane over one plane (a tail's extra lanes repeat values of the plane).
    private static Vector256<T> MaxAbs<T>(T* x, int s, Vector256<T> hi, Vector256<T> lo) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int w = Vector256<T>.Count;
        if (s < w)
            return Vector256.Abs((Lanes.LoadPartial(x, s) - hi) - lo) & ~Lanes.Last<T>(w - s);
        var max = Vector256<T>.Zero;
        int i = 0;
        for (; i <= s - w; i += w)
            max = Vector256.Max(max, Vector256.Abs((Vector256.Load(x + i) - hi) - lo));
        if (i < s)
            max = Vector256.Max(max, Vector256.Abs((Vector256.Load(x + s - w) - hi) - lo));
        return max;
    }

    private static T Max<T>(Vector256<T> v) where T : unmanaged, IFloatingPointIeee754<T>
    {
        T max = v[0];
        for (int i = 1; i < Vector256<T>.Count; i++)
            max = T.Max(max, v[i]);
        return max;
    }

    // The first value (in plane order) whose |(x − hi) − lo| is the channel's maximum, computed exactly as in the forward pass.
    private static long ArgMaxAbs<T>(ref Args<T> a, int ch, Vector256<T> hi, Vector256<T> lo, T max) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i = 0; i < a.N; i++)
        {
            long at = a.At(i, ch);
            for (int j = 0; j < a.S; j++)
                if (Vector256.Abs((Vector256.CreateScalar(a.X[at + j]) - hi) - lo).ToScalar() == max)
                    return at + j;
        }
        return a.At(0, ch);
    }

    private static void Check(int length, int n, int c, int s, double p, int stats1, int stats2)
    {
        if ((long)n * c * s != length || stats1 < c || stats2 < c)
            throw new ArgumentException($"ℓp-norm kernel: {length} values and per-channel buffers of {Math.Min(stats1, stats2)} do not form [n={n}, c={c}, s={s}].");
        if (p is not (1 or 2) && !double.IsPositiveInfinity(p))
            throw new ArgumentOutOfRangeException(nameof(p), $"ℓp-norm kernel: p must be 1, 2 or ∞, got {p}.");
    }

    private static void CheckGradients(int dx, int dy, int x)
    {
        if (dx != x || dy != x)
            throw new ArgumentException($"ℓp-norm kernel: dx {dx} and dy {dy} values for x of {x}.");
    }
}

using System.Numerics;
using System.Numerics.Tensors;
using NormLab.Threading;

namespace NormLab.Kernels;

/// <summary>
/// Batch-normalization kernels over a tensor viewed as [n, c, s]: n batch rows, c channels, s values per channel per row
/// (s = H·W for images, L for sequences, 1 for [N, C]). Statistics are per channel over m = n·s values.
/// The kernels are pure: the modules decide which statistics to use and how to update running ones.
/// </summary>
/// <remarks>
/// Channels are independent, so large tensors split their channels over the <see cref="Team"/>; each channel's sums run
/// in the same order whatever the split, and the results do not depend on the number of threads.
/// </remarks>
/// <remarks>
/// Per-channel statistics travel as double (mean, M2, 1/σ) so that the normalization of data far from zero stays exact;
/// see <see cref="Centered"/>.
/// </remarks>
public static unsafe class BatchNormKernels
{
    // Below this many values a parallel call costs more than it saves.
    private const long ParallelWork = 1 << 14;

    /// <summary>
    /// Per-channel mean and M2 = Σ(x − mean)² of a batch slice, in two passes (no E[x²] − E[x]² cancellation). Within a
    /// plane the sums run in T over values already centred (on a shift, then on the mean), so they are small and do not
    /// lose the data's spread; across planes they accumulate in double.
    /// The count per channel is n·s. A slice of rows of a batch is a valid input, so ghost batches and cross-process merges reuse it.
    /// </summary>
    public static void Moments<T>(ReadOnlySpan<T> x, int n, int c, int s, Span<double> mean, Span<double> m2)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckSizes(x.Length, n, c, s, mean.Length, m2.Length);
        mean.Slice(0, c).Clear();
        m2.Slice(0, c).Clear();
        if ((long)n * s == 0)
            return;
        var args = new Args<T> { X = x, MeanOut = mean, M2Out = m2, N = n, C = c, S = s };
        Run(ref args, &MomentsRange);
    }

    private static void MomentsRange<T>(ref Args<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        ReadOnlySpan<T> x = a.X;
        Span<double> mean = a.MeanOut, m2 = a.M2Out;
        int n = a.N, c = a.C, s = a.S;
        double count = (double)n * s;
        // First pass: mean = shift + Σ(x − shift)/m, shift = the channel's first value, so that far-from-zero data
        // sum their small deviations rather than their large offset.
        for (int ch = first; ch < end; ch++)
        {
            T shift = x[ch * s];
            double sum = 0;
            for (int i = 0; i < n; i++)
                sum += Centered.SumShifted(x.Slice((i * c + ch) * s, s), shift);
            mean[ch] = double.CreateChecked(shift) + sum / count;
        }
        for (int ch = first; ch < end; ch++)
        {
            var (hi, lo) = Centered.Split<T>(mean[ch]);
            for (int i = 0; i < n; i++)
                m2[ch] += Centered.SumSquares(x.Slice((i * c + ch) * s, s), hi, lo);
        }
    }

    /// <summary>invStd = 1/√(var + eps) per channel, from the biased variance var = M2/count.</summary>
    public static void InvStd(Span<double> invStd, ReadOnlySpan<double> m2, double count, double eps)
    {
        for (int ch = 0; ch < invStd.Length; ch++)
            invStd[ch] = 1.0 / Math.Sqrt(m2[ch] / count + eps);
    }

    /// <summary>
    /// running = (1 − factor)·running + factor·batch, with the unbiased batch variance M2/(count − 1) (PyTorch's convention).
    /// </summary>
    public static void UpdateRunning(Span<float> runningMean, Span<float> runningVar, ReadOnlySpan<double> mean, ReadOnlySpan<double> m2,
        double count, double factor)
    {
        for (int ch = 0; ch < runningMean.Length; ch++)
        {
            double unbiasedVar = m2[ch] / (count - 1);
            runningMean[ch] = (float)((1 - factor) * runningMean[ch] + factor * mean[ch]);
            runningVar[ch] = (float)((1 - factor) * runningVar[ch] + factor * unbiasedVar);
        }
    }

    /// <summary>
    /// y = γ·x̂ + β with x̂ = (x − mean)·invStd, per channel. Empty <paramref name="gamma"/>/<paramref name="beta"/> mean γ = 1, β = 0.
    /// </summary>
    public static void Normalize<T>(Span<T> y, ReadOnlySpan<T> x, ReadOnlySpan<double> mean, ReadOnlySpan<double> invStd,
        ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta, int n, int c, int s)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckSizes(x.Length, n, c, s, mean.Length, invStd.Length);
        var args = new Args<T> { Y = y, X = x, Mean = mean, InvStd = invStd, Gamma = gamma, Beta = beta, N = n, C = c, S = s };
        Run(ref args, &NormalizeRange);
    }

    private static void NormalizeRange<T>(ref Args<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        Span<T> y = a.Y;
        ReadOnlySpan<T> x = a.X, gamma = a.Gamma, beta = a.Beta;
        ReadOnlySpan<double> mean = a.Mean, invStd = a.InvStd;
        int n = a.N, c = a.C, s = a.S;
        for (int ch = first; ch < end; ch++)
        {
            var (hi, lo) = Centered.Split<T>(mean[ch]);
            T alpha = T.CreateChecked(Gamma(gamma, ch) * invStd[ch]);
            T shift = beta.IsEmpty ? T.Zero : beta[ch];
            for (int i = 0; i < n; i++)
            {
                int at = (i * c + ch) * s;
                Centered.ScaleShift(y.Slice(at, s), x.Slice(at, s), hi, lo, alpha, shift);
            }
        }
    }

    /// <summary>
    /// Backward of <see cref="Normalize{T}"/> when the statistics came from this batch:
    /// <code>
    /// dβ += Σ dy          dγ += Σ dy·x̂
    /// dx  = γ/(m·σ)·(m·dy − Σdy − x̂·Σ(dy·x̂))      σ = 1/invStd
    /// </code>
    /// Written as dx = γ·invStd·(dy − Σdy/m − (x − mean)·k) with k = invStd²·Σ(dy·(x − mean))/m.
    /// Empty <paramref name="dGamma"/>/<paramref name="dBeta"/> skip those gradients.
    /// </summary>
    public static void BackwardBatchStats<T>(Span<T> dx, Span<T> dGamma, Span<T> dBeta, ReadOnlySpan<T> dy, ReadOnlySpan<T> x,
        ReadOnlySpan<double> mean, ReadOnlySpan<double> invStd, ReadOnlySpan<T> gamma, int n, int c, int s)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckSizes(x.Length, n, c, s, mean.Length, invStd.Length);
        var args = new Args<T>
        {
            Y = dx, DGamma = dGamma, DBeta = dBeta, DY = dy, X = x, Mean = mean, InvStd = invStd, Gamma = gamma, N = n, C = c, S = s,
        };
        Run(ref args, &BackwardBatchStatsRange);
    }

    private static void BackwardBatchStatsRange<T>(ref Args<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        Span<T> dx = a.Y, dGamma = a.DGamma, dBeta = a.DBeta;
        ReadOnlySpan<T> dy = a.DY, x = a.X, gamma = a.Gamma;
        ReadOnlySpan<double> mean = a.Mean, invStd = a.InvStd;
        int n = a.N, c = a.C, s = a.S;
        double m = (double)n * s;
        for (int ch = first; ch < end; ch++)
        {
            var (hi, lo) = Centered.Split<T>(mean[ch]);
            double sumDy = 0, sumDyXc = 0;
            for (int i = 0; i < n; i++)
            {
                int at = (i * c + ch) * s;
                sumDy += double.CreateChecked(TensorPrimitives.Sum(dy.Slice(at, s)));
                sumDyXc += Centered.SumProduct(dy.Slice(at, s), x.Slice(at, s), hi, lo);
            }
            double istd = invStd[ch];
            if (!dBeta.IsEmpty)
                dBeta[ch] += T.CreateChecked(sumDy);
            if (!dGamma.IsEmpty)
                dGamma[ch] += T.CreateChecked(sumDyXc * istd);
            T scale = T.CreateChecked(Gamma(gamma, ch) * istd);
            T meanDy = T.CreateChecked(sumDy / m);
            T k = T.CreateChecked(sumDyXc * istd * istd / m);
            for (int i = 0; i < n; i++)
            {
                int at = (i * c + ch) * s;
                Centered.BackwardApply(dx.Slice(at, s), dy.Slice(at, s), x.Slice(at, s), hi, lo, scale, meanDy, k);
            }
        }
    }

    /// <summary>
    /// Backward of <see cref="Normalize{T}"/> when the statistics are constants (eval mode, frozen statistics): the layer is
    /// the affine map y = γ·invStd·(x − mean) + β, so dx = dy·γ·invStd, dγ += Σ dy·x̂, dβ += Σ dy.
    /// </summary>
    public static void BackwardFixedStats<T>(Span<T> dx, Span<T> dGamma, Span<T> dBeta, ReadOnlySpan<T> dy, ReadOnlySpan<T> x,
        ReadOnlySpan<double> mean, ReadOnlySpan<double> invStd, ReadOnlySpan<T> gamma, int n, int c, int s)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckSizes(x.Length, n, c, s, mean.Length, invStd.Length);
        var args = new Args<T>
        {
            Y = dx, DGamma = dGamma, DBeta = dBeta, DY = dy, X = x, Mean = mean, InvStd = invStd, Gamma = gamma, N = n, C = c, S = s,
        };
        Run(ref args, &BackwardFixedStatsRange);
    }

    private static void BackwardFixedStatsRange<T>(ref Args<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        Span<T> dx = a.Y, dGamma = a.DGamma, dBeta = a.DBeta;
        ReadOnlySpan<T> dy = a.DY, x = a.X, gamma = a.Gamma;
        ReadOnlySpan<double> mean = a.Mean, invStd = a.InvStd;
        int n = a.N, c = a.C, s = a.S;
        for (int ch = first; ch < end; ch++)
        {
            var (hi, lo) = Centered.Split<T>(mean[ch]);
            double sumDy = 0, sumDyXc = 0;
            T scale = T.CreateChecked(Gamma(gamma, ch) * invStd[ch]);
            for (int i = 0; i < n; i++)
            {
                int at = (i * c + ch) * s;
                var dyPlane = dy.Slice(at, s);
                if (!dBeta.IsEmpty)
                    sumDy += double.CreateChecked(TensorPrimitives.Sum(dyPlane));
                if (!dGamma.IsEmpty)
                    sumDyXc += Centered.SumProduct(dyPlane, x.Slice(at, s), hi, lo);
                TensorPrimitives.Multiply(dyPlane, scale, dx.Slice(at, s));
            }
            if (!dBeta.IsEmpty)
                dBeta[ch] += T.CreateChecked(sumDy);
            if (!dGamma.IsEmpty)
                dGamma[ch] += T.CreateChecked(sumDyXc * invStd[ch]);
        }
    }

    private static void Run<T>(ref Args<T> args, delegate*<ref Args<T>, int, int, void> range) where T : unmanaged
    {
        if ((long)args.N * args.C * args.S < ParallelWork)
            range(ref args, 0, args.C);
        else
            Team.For(args.C, ref args, range);
    }

    // The arguments of one parallel call over channels; Y is the output (y forward, dx backward).
    private ref struct Args<T> where T : unmanaged
    {
        public Span<T> Y, DGamma, DBeta;
        public ReadOnlySpan<T> X, DY, Gamma, Beta;
        public Span<double> MeanOut, M2Out;
        public ReadOnlySpan<double> Mean, InvStd;
        public int N, C, S;
    }

    private static double Gamma<T>(ReadOnlySpan<T> gamma, int ch) where T : unmanaged, IFloatingPointIeee754<T> =>
        gamma.IsEmpty ? 1.0 : double.CreateChecked(gamma[ch]);

    private static void CheckSizes(int length, int n, int c, int s, int stats1, int stats2)
    {
        if ((long)n * c * s != length)
            throw new ArgumentException($"BatchNorm kernel: {length} values do not form [n={n}, c={c}, s={s}].");
        if (stats1 < c || stats2 < c)
            throw new ArgumentException($"BatchNorm kernel: per-channel buffers of {Math.Min(stats1, stats2)} values for {c} channels.");
    }
}

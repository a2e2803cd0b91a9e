using System.Numerics;
using System.Numerics.Tensors;
using NormLab.Threading;

namespace NormLab.Kernels;

/// <summary>
/// How a tensor splits into rows for per-sample normalization: <see cref="Rows"/> contiguous rows of
/// L = <see cref="Segments"/>·<see cref="SegmentSize"/> values, each normalized by its own mean and biased variance.
/// Segment k of row r shares the affine parameter <c>(r mod Patterns)·Segments + k</c>:
/// GroupNorm has rows N·G, segments C/G channels of H·W values, patterns G; LayerNorm rows = samples, segments = L single
/// values, one pattern; InstanceNorm rows N·C, one segment of H·W, patterns C.
/// </summary>
public readonly record struct RowLayout(int Rows, int Segments, int SegmentSize, int Patterns)
{
    /// <summary>L, the values per row.</summary>
    public int Length => Segments * SegmentSize;

    /// <summary>The number of γ (and β) values.</summary>
    public int Parameters => Patterns * Segments;
}

/// <summary>
/// Row normalization, the kernels of GroupNorm, LayerNorm and InstanceNorm:
/// <code>
/// x̂ = (x − μ_r)/√(σ²_r + eps)      μ_r, σ²_r: mean and biased variance of row r
/// y  = γ_k·x̂ + β_k                  k: the row's segment (channel or element) the value belongs to
/// </code>
/// Statistics are taken in double around a shift, as in <see cref="BatchNormKernels"/>, so rows far from zero stay exact.
/// Rows are independent, so large inputs split rows over the <see cref="Team"/>; the parameter gradients, which sum over
/// rows, are added up afterwards in row order, so no result depends on the number of threads.
/// </summary>
public static unsafe class RowNormKernels
{
    private const long ParallelWork = 1 << 14;

    /// <summary>
    /// Per-row mean and 1/√(var + eps) (biased variance, two passes around the row's first value); the biased variance
    /// itself too when <paramref name="variance"/> is not empty.
    /// </summary>
    public static void Moments<T>(ReadOnlySpan<T> x, RowLayout layout, double eps, Span<double> mean, Span<double> invStd,
        Span<double> variance = default)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check(x.Length, layout, mean.Length, invStd.Length);
        if (!variance.IsEmpty && variance.Length < layout.Rows)
            throw new ArgumentException($"Row-norm kernel: a variance buffer of {variance.Length} values for {layout.Rows} rows.");
        var args = new Args<T> { X = x, Layout = layout, Eps = eps, MeanOut = mean, InvStdOut = invStd, VarOut = variance };
        Run(ref args, &MomentsRows);
    }

    private static void MomentsRows<T>(ref Args<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int length = a.Layout.Length;
        for (int r = first; r < end; r++)
        {
            var row = a.X.Slice(r * length, length);
            double mean = double.CreateChecked(row[0]) + CenteredSpans.SumShifted(row, row[0]) / length;
            var (hi, lo) = Centered.Split<T>(mean);
            double variance = CenteredSpans.SumSquares(row, hi, lo) / length;
            a.MeanOut[r] = mean;
            a.InvStdOut[r] = 1.0 / Math.Sqrt(variance + a.Eps);
            if (!a.VarOut.IsEmpty)
                a.VarOut[r] = variance;
        }
    }

    /// <summary>y = γ_k·(x − μ_r)·invStd_r + β_k. Empty <paramref name="gamma"/>/<paramref name="beta"/> mean γ = 1, β = 0.</summary>
    public static void Normalize<T>(Span<T> y, ReadOnlySpan<T> x, RowLayout layout, ReadOnlySpan<double> mean, ReadOnlySpan<double> invStd,
        ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check(x.Length, layout, mean.Length, invStd.Length);
        CheckParameters(layout, gamma.Length, beta.Length);
        var args = new Args<T> { Y = y, X = x, Layout = layout, Mean = mean, InvStd = invStd, Gamma = gamma, Beta = beta };
        Run(ref args, &NormalizeRows);
    }

    private static void NormalizeRows<T>(ref Args<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var l = a.Layout;
        if (l.SegmentSize == 1 && l.Patterns == 1)
        {
            NormalizeElementwise(ref a, first, end);
            return;
        }
        for (int r = first; r < end; r++)
        {
            var (hi, lo) = Centered.Split<T>(a.Mean[r]);
            int p0 = r % l.Patterns * l.Segments;
            for (int k = 0; k < l.Segments; k++)
            {
                int at = r * l.Length + k * l.SegmentSize;
                T alpha = T.CreateChecked(Gamma(a.Gamma, p0 + k) * a.InvStd[r]);
                T shift = a.Beta.IsEmpty ? T.Zero : a.Beta[p0 + k];
                CenteredSpans.ScaleShift(a.Y.Slice(at, l.SegmentSize), a.X.Slice(at, l.SegmentSize), hi, lo, alpha, shift);
            }
        }
    }

    /// <summary>
    /// Backward of <see cref="Normalize{T}"/> with the row statistics of the forward pass. With g = γ_k·dy, per row:
    /// <code>
    /// dx = invStd·(g − mean(g) − x̂·mean(g·x̂))      dγ_k += Σ dy·x̂      dβ_k += Σ dy
    /// </code>
    /// <paramref name="scratch"/> holds 2·Rows·Segments doubles (per-segment sums, reduced into dγ, dβ in row order).
    /// dx is overwritten; dγ, dβ accumulate; empty ones are skipped.
    /// </summary>
    public static void Backward<T>(Span<T> dx, Span<T> dGamma, Span<T> dBeta, ReadOnlySpan<T> dy, ReadOnlySpan<T> x, RowLayout layout,
        ReadOnlySpan<double> mean, ReadOnlySpan<double> invStd, ReadOnlySpan<T> gamma, Span<double> scratch)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Check(x.Length, layout, mean.Length, invStd.Length);
        CheckParameters(layout, gamma.Length, Math.Max(dGamma.Length, dBeta.Length));
        if (dx.Length != x.Length || dy.Length != x.Length)
            throw new ArgumentException($"Row-norm kernel: dx {dx.Length} and dy {dy.Length} values for x of {x.Length}.");
        int sums = layout.Rows * layout.Segments;
        if (scratch.Length < 2 * sums)
            throw new ArgumentException($"Row-norm kernel: a scratch of {scratch.Length} values, {2 * sums} needed.");
        var args = new Args<T> { Y = dx, X = x, DY = dy, Layout = layout, Mean = mean, InvStd = invStd, Gamma = gamma, MeanOut = scratch };
        Run(ref args, &BackwardRows);
        for (int r = 0; r < layout.Rows; r++)
        {
            int p0 = r % layout.Patterns * layout.Segments;
            for (int k = 0; k < layout.Segments; k++)
            {
                int at = r * layout.Segments + k;
                if (!dBeta.IsEmpty)
                    dBeta[p0 + k] += T.CreateChecked(scratch[at]);
                if (!dGamma.IsEmpty)
                    dGamma[p0 + k] += T.CreateChecked(scratch[sums + at] * invStd[r]);
            }
        }
    }

    private static void BackwardRows<T>(ref Args<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var l = a.Layout;
        if (l.SegmentSize == 1 && l.Patterns == 1)
        {
            BackwardElementwise(ref a, first, end);
            return;
        }
        int sums = l.Rows * l.Segments;
        var sumDy = a.MeanOut.Slice(0, sums);
        var sumDyXc = a.MeanOut.Slice(sums, sums);
        for (int r = first; r < end; r++)
        {
            var (hi, lo) = Centered.Split<T>(a.Mean[r]);
            int p0 = r % l.Patterns * l.Segments;
            double gSum = 0, gXcSum = 0;
            for (int k = 0; k < l.Segments; k++)
            {
                int at = r * l.Length + k * l.SegmentSize, s = r * l.Segments + k;
                var dySeg = a.DY.Slice(at, l.SegmentSize);
                sumDy[s] = double.CreateChecked(TensorPrimitives.Sum(dySeg));
                sumDyXc[s] = CenteredSpans.SumProduct(dySeg, a.X.Slice(at, l.SegmentSize), hi, lo);
                double g = Gamma(a.Gamma, p0 + k);
                gSum += g * sumDy[s];
                gXcSum += g * sumDyXc[s];
            }
            double istd = a.InvStd[r];
            T b = T.CreateChecked(istd * gSum / l.Length);
            T c = T.CreateChecked(istd * istd * istd * gXcSum / l.Length);
            for (int k = 0; k < l.Segments; k++)
            {
                int at = r * l.Length + k * l.SegmentSize;
                T scale = T.CreateChecked(Gamma(a.Gamma, p0 + k) * istd);
                Apply(a.Y.Slice(at, l.SegmentSize), a.DY.Slice(at, l.SegmentSize), a.X.Slice(at, l.SegmentSize), hi, lo, scale, b, c);
            }
        }
    }

    // LayerNorm: one parameter per value of the row, so the affine map is element-wise and vectorizes along the row.
    private static void NormalizeElementwise<T>(ref Args<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int length = a.Layout.Length;
        for (int r = first; r < end; r++)
        {
            var (hi, lo) = Centered.Split<T>(a.Mean[r]);
            T istd = T.CreateChecked(a.InvStd[r]);
            var x = a.X.Slice(r * length, length);
            var y = a.Y.Slice(r * length, length);
            int i = 0;
            if (Vector.IsHardwareAccelerated && !a.Gamma.IsEmpty && !a.Beta.IsEmpty)
            {
                Vector<T> vh = new(hi), vl = new(lo), vs = new(istd);
                for (; i <= length - Vector<T>.Count; i += Vector<T>.Count)
                {
                    var xc = (new Vector<T>(x.Slice(i)) - vh) - vl;
                    (xc * vs * new Vector<T>(a.Gamma.Slice(i)) + new Vector<T>(a.Beta.Slice(i))).CopyTo(y.Slice(i));
                }
            }
            for (; i < length; i++)
            {
                T g = a.Gamma.IsEmpty ? T.One : a.Gamma[i], b = a.Beta.IsEmpty ? T.Zero : a.Beta[i];
                y[i] = ((x[i] - hi) - lo) * istd * g + b;
            }
        }
    }

    // LayerNorm's backward: per value, g = γ·dy; the row sums Σg and Σg·(x − μ) in double from vector partial sums.
    private static void BackwardElementwise<T>(ref Args<T> a, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int length = a.Layout.Length, sums = a.Layout.Rows * length;
        for (int r = first; r < end; r++)
        {
            var (hi, lo) = Centered.Split<T>(a.Mean[r]);
            var x = a.X.Slice(r * length, length);
            var dy = a.DY.Slice(r * length, length);
            var sumDy = a.MeanOut.Slice(r * length, length);
            var sumDyXc = a.MeanOut.Slice(sums + r * length, length);
            double gSum = 0, gXcSum = 0;
            for (int i = 0; i < length; i++)
            {
                double d = double.CreateChecked(dy[i]), xc = double.CreateChecked((x[i] - hi) - lo), g = Gamma(a.Gamma, i);
                sumDy[i] = d;
                sumDyXc[i] = d * xc;
                gSum += g * d;
                gXcSum += g * d * xc;
            }
            double istd = a.InvStd[r];
            T b = T.CreateChecked(istd * gSum / length), c = T.CreateChecked(istd * istd * istd * gXcSum / length), vIstd = T.CreateChecked(istd);
            var dx = a.Y.Slice(r * length, length);
            int j = 0;
            if (Vector.IsHardwareAccelerated && !a.Gamma.IsEmpty)
            {
                Vector<T> vh = new(hi), vl = new(lo), vs = new(vIstd), vb = new(b), vc = new(c);
                for (; j <= length - Vector<T>.Count; j += Vector<T>.Count)
                {
                    var xc = (new Vector<T>(x.Slice(j)) - vh) - vl;
                    (new Vector<T>(a.Gamma.Slice(j)) * vs * new Vector<T>(dy.Slice(j)) - (vb + xc * vc)).CopyTo(dx.Slice(j));
                }
            }
            for (; j < length; j++)
            {
                T g = a.Gamma.IsEmpty ? T.One : a.Gamma[j];
                dx[j] = g * vIstd * dy[j] - (b + ((x[j] - hi) - lo) * c);
            }
        }
    }

    // dx = scale·dy − (b + ((x − hi) − lo)·c)
    private static void Apply<T>(Span<T> dx, ReadOnlySpan<T> dy, ReadOnlySpan<T> x, T hi, T lo, T scale, T b, T c)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            Vector<T> vh = new(hi), vl = new(lo), vs = new(scale), vb = new(b), vc = new(c);
            for (; i <= dx.Length - Vector<T>.Count; i += Vector<T>.Count)
            {
                var xc = (new Vector<T>(x.Slice(i)) - vh) - vl;
                (vs * new Vector<T>(dy.Slice(i)) - (vb + xc * vc)).CopyTo(dx.Slice(i));
            }
        }
        for (; i < dx.Length; i++)
            dx[i] = scale * dy[i] - (b + ((x[i] - hi) - lo) * c);
    }

    private static double Gamma<T>(ReadOnlySpan<T> gamma, int index) where T : unmanaged, IFloatingPointIeee754<T> =>
        gamma.IsEmpty ? 1.0 : double.CreateChecked(gamma[index]);

    private static void Run<T>(ref Args<T> args, delegate*<ref Args<T>, int, int, void> rows) where T : unmanaged
    {
        if ((long)args.Layout.Rows * args.Layout.Length < ParallelWork)
            rows(ref args, 0, args.Layout.Rows);
        else
            Team.For(args.Layout.Rows, ref args, rows);
    }

    private static void Check(int length, RowLayout l, int mean, int invStd)
    {
        if (l.Rows < 0 || l.Segments < 1 || l.SegmentSize < 1 || l.Patterns < 1 || (long)l.Rows * l.Length != length)
            throw new ArgumentException($"Row-norm kernel: {length} values do not form {l}.");
        if (mean < l.Rows || invStd < l.Rows)
            throw new ArgumentException($"Row-norm kernel: per-row buffers of {Math.Min(mean, invStd)} values for {l.Rows} rows.");
    }

    private static void CheckParameters(RowLayout l, int gamma, int beta)
    {
        if ((gamma != 0 && gamma != l.Parameters) || (beta != 0 && beta != l.Parameters))
            throw new ArgumentException($"Row-norm kernel: affine parameters of {gamma} and {beta} values, {l.Parameters} expected for {l}.");
    }

    // The arguments of one parallel call over rows; Y is the output (y forward, dx backward); MeanOut doubles as the
    // backward's scratch.
    private ref struct Args<T> where T : unmanaged
    {
        public Span<T> Y;
        public ReadOnlySpan<T> X, DY, Gamma, Beta;
        public Span<double> MeanOut, InvStdOut, VarOut;
        public ReadOnlySpan<double> Mean, InvStd;
        public RowLayout Layout;
        public double Eps;
    }
}

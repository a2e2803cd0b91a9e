using System.Numerics;

namespace NormLab.Kernels;

/// <summary>
/// Mean and M2 of one channel summed value by value in double: the fallback for data whose per-lane sums in T overflow.
/// Squares of deviations near 1e18 are 1e36, and a few hundred of them exceed float's 3.4e38 in one lane (a 56×56 plane
/// does); in double they cannot overflow (float's largest square is 1.2e77). Only such channels pay for this.
/// </summary>
internal static unsafe class WideMoments
{
    /// <summary>
    /// Whether the vector kernels' statistics of a channel need this fallback: an infinite sum means a lane overflowed (the
    /// squares are ≥ 0, so an overflow never cancels). Data holding Inf or NaN also land here, and keep their value.
    /// </summary>
    public static bool Needed(double mean, double m2) => !double.IsFinite(mean) || !double.IsFinite(m2);

    /// <summary>Statistics of a channel stored as <paramref name="n"/> runs of <paramref name="s"/> contiguous values,
    /// <paramref name="stride"/> apart, in two passes (around the first value, then around the mean) in a fixed order.</summary>
    public static (double Mean, double M2) Of<T>(T* first, int n, int s, long stride) where T : unmanaged, IFloatingPointIeee754<T>
    {
        double shift = Lanes.ToDouble(*first), sum = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < s; j++)
                sum += Lanes.ToDouble(first[i * stride + j]) - shift;
        double mean = shift + sum / ((double)n * s), m2 = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < s; j++)
            {
                double d = Lanes.ToDouble(first[i * stride + j]) - mean;
                m2 += d * d;
            }
        return (mean, m2);
    }
}

using System.Diagnostics;

namespace NormLab.Lab.Measures;

/// <summary>
/// What happens to a trained BN network at inference: with its BatchNorm layers taken out, how far a folded copy's
/// outputs are from the original's, and how long each takes.
/// </summary>
public static class Inference
{
    /// <summary>
    /// <paramref name="model"/> with every BatchNorm replaced by the identity (inside sequences and residual blocks).
    /// The other layers are shared with <paramref name="model"/>, not copied, and keep its mode: evaluate the result with
    /// <see cref="Training.Evaluate"/>, which puts the mode back afterwards.
    /// </summary>
    public static Sequential WithoutBatchNorm(Sequential model)
    {
        var stripped = (Sequential)Strip(model);
        stripped.Train(model.Training);
        return stripped;
    }

    private static Module Strip(Module m) => m switch
    {
        Sequential s => new Sequential([.. s.Layers.Where(l => l is not BatchNorm).Select(Strip)]) { NeedsInputGradient = s.NeedsInputGradient },
        Residual r => new Residual(Strip(r.Body), r.Shortcut is null ? null : Strip(r.Shortcut)),
        _ => m,
    };

    /// <summary>
    /// The largest, over rows (samples), of max_k |other[k] − reference[k]| / max_k |reference[k]|: the error measured
    /// against the scale of that sample's outputs, so logits near zero do not blow the ratio up. Row-major [rows, columns].
    /// </summary>
    public static double MaxRelativeDifference(ReadOnlySpan<float> reference, ReadOnlySpan<float> other, int columns)
    {
        if (reference.Length != other.Length || columns <= 0 || reference.Length % columns != 0)
            throw new ArgumentException($"MaxRelativeDifference: {reference.Length} and {other.Length} values in rows of {columns}.");
        double worst = 0;
        for (int row = 0; row < reference.Length; row += columns)
        {
            double scale = 0, diff = 0;
            for (int k = row; k < row + columns; k++)
            {
                scale = Math.Max(scale, Math.Abs((double)reference[k]));
                diff = Math.Max(diff, Math.Abs((double)other[k] - reference[k]));
            }
            double rel = diff == 0 ? 0 : scale > 0 ? diff / scale : double.PositiveInfinity;
            worst = Math.Max(worst, rel);
        }
        return worst;
    }

    /// <summary>
    /// Times <paramref name="a"/> and <paramref name="b"/> interleaved so that drifting machine load falls on both:
    /// <paramref name="warmup"/> untimed calls of each (JIT, caches, buffers), then <paramref name="repetitions"/> rounds
    /// of one timed call each, a before b in even rounds and b before a in odd rounds. Returns each call's milliseconds.
    /// </summary>
    public static (double[] A, double[] B) Interleaved(Action a, Action b, int warmup, int repetitions)
    {
        for (int i = 0; i < warmup; i++)
        {
            a();
            b();
        }
        var ta = new double[repetitions];
        var tb = new double[repetitions];
        for (int r = 0; r < repetitions; r++)
        {
            if (r % 2 == 0)
            {
                ta[r] = Time(a);
                tb[r] = Time(b);
            }
            else
            {
                tb[r] = Time(b);
                ta[r] = Time(a);
            }
        }
        return (ta, tb);
    }

    private static double Time(Action action)
    {
        long start = Stopwatch.GetTimestamp();
        action();
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }
}

using NormLab.Data;

namespace NormLab.Lab.Measures;

/// <summary>Batches of training data for measurements that need more than the step's batch (PreciseBN, probes).</summary>
public static class Batches
{
    /// <summary>
    /// Up to <paramref name="images"/> training images in a seeded order, as batches of <paramref name="batch"/>
    /// ([N, 784] when <paramref name="flat"/>). Each yielded tensor is overwritten by the next.
    /// </summary>
    public static IEnumerable<Tensor> Of(ImageDataset data, int batch, int images, bool flat, ulong seed = 99)
    {
        var loader = new DataLoader(data, batch, dropLast: true, rng: new Rng(seed));
        for (int done = 0; done + batch <= images && loader.TryNext(out var x, out var f, out _); done += batch)
            yield return flat ? f : x;
    }

    /// <summary>
    /// Evaluates <paramref name="model"/> with PreciseBN statistics from <paramref name="images"/> training images, then
    /// puts the model back exactly as it was (weights, running statistics, counters).
    /// </summary>
    public static (double Loss, double Accuracy) EvaluatePrecise(Sequential model, ImageDataset train, ImageDataset test, bool flat,
        int images, int batch = 100, int evalImages = int.MaxValue, ModelState? state = null)
    {
        state = (state ?? new ModelState(model)).Save();
        PreciseBatchNorm.Update(model, Of(train, batch, images, flat), int.MaxValue);
        var result = Training.Evaluate(model, test, flat, evalImages);
        state.Restore();
        return result;
    }
}

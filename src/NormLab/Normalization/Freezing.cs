namespace NormLab;

/// <summary>Freezing the statistics of every BatchNorm in a model (FrozenBN, e.g. for the last epochs of training).</summary>
public static class Freezing
{
    /// <summary>Freezes every BatchNorm of <paramref name="model"/> that keeps running statistics; returns how many.</summary>
    public static int FreezeBatchNorm(this Module model)
    {
        int count = 0;
        foreach (var bn in model.Modules().OfType<BatchNorm>().Where(b => b.TrackRunningStats))
        {
            bn.Freeze();
            count++;
        }
        return count;
    }

    /// <summary>Unfreezes every BatchNorm of <paramref name="model"/>; returns how many.</summary>
    public static int UnfreezeBatchNorm(this Module model)
    {
        int count = 0;
        foreach (var bn in model.Modules().OfType<BatchNorm>())
        {
            bn.Unfreeze();
            count++;
        }
        return count;
    }
}

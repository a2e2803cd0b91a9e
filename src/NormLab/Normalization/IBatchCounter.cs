namespace NormLab;

/// <summary>A layer with PyTorch's <c>num_batches_tracked</c> buffer (an I64 scalar in its state dict).</summary>
public interface IBatchCounter
{
    /// <summary>Whether the layer has the buffer (it keeps running statistics).</summary>
    bool TracksBatches { get; }

    /// <summary>The counter.</summary>
    long NumBatchesTracked { get; set; }
}

namespace NormLab.Data;

/// <summary>
/// Mini-batches of an <see cref="ImageDataset"/>: a seeded shuffle each epoch, any batch size, the last partial batch
/// kept or dropped, and optional standardization (x − mean)/std. Batches are copied into buffers the loader owns, so
/// iterating allocates nothing after the first epoch.
/// </summary>
public sealed class DataLoader
{
    private readonly ImageDataset _data;
    private readonly Rng _rng;
    private readonly int[] _order;
    private readonly int[] _labels;
    private Tensor? _images, _flat, _tailImages, _tailFlat;
    private int _cursor;
    private bool _startEpoch = true;

    /// <summary>Creates the loader.</summary>
    /// <param name="data">The images and labels.</param>
    /// <param name="batchSize">Images per batch (≥ 1).</param>
    /// <param name="shuffle">Whether each epoch visits the images in a new seeded order.</param>
    /// <param name="dropLast">Whether a final batch smaller than <paramref name="batchSize"/> is dropped.</param>
    /// <param name="rng">Generator of the shuffles; a fork of <see cref="Rng.Global"/> when null.</param>
    /// <param name="mean">Subtracted from every pixel (after scaling to [0, 1]).</param>
    /// <param name="std">Divides every pixel after the mean is subtracted (must be positive).</param>
    public DataLoader(ImageDataset data, int batchSize, bool shuffle = true, bool dropLast = false, Rng? rng = null,
        float mean = 0f, float std = 1f)
    {
        if (batchSize < 1)
            throw new ArgumentOutOfRangeException(nameof(batchSize), $"DataLoader: batch size must be ≥ 1, got {batchSize}.");
        if (!(std > 0) || !float.IsFinite(std) || !float.IsFinite(mean))
            throw new ArgumentOutOfRangeException(nameof(std), $"DataLoader: standardization needs a finite mean and a positive std, got mean {mean}, std {std}.");
        if (dropLast && data.Count < batchSize)
            throw new ArgumentException($"DataLoader: {data.Count} images make no full batch of {batchSize} with dropLast.");
        _data = data;
        BatchSize = batchSize;
        Shuffle = shuffle;
        DropLast = dropLast;
        Mean = mean;
        Std = std;
        _rng = rng ?? Rng.Global.Fork();
        _order = Enumerable.Range(0, data.Count).ToArray();
        _labels = new int[batchSize];
    }

    /// <summary>Images per full batch.</summary>
    public int BatchSize { get; }

    /// <summary>Whether epochs are shuffled.</summary>
    public bool Shuffle { get; }

    /// <summary>Whether the last partial batch is dropped.</summary>
    public bool DropLast { get; }

    /// <summary>The standardization mean.</summary>
    public float Mean { get; }

    /// <summary>The standardization std.</summary>
    public float Std { get; }

    /// <summary>Number of completed epochs (an epoch completes when its last batch has been handed out).</summary>
    public int Epoch { get; private set; }

    /// <summary>Batches per epoch.</summary>
    public int BatchesPerEpoch => DropLast ? _data.Count / BatchSize : (_data.Count + BatchSize - 1) / BatchSize;

    /// <summary>Mean and standard deviation of all pixels of a dataset (for standardization with the training set's values).</summary>
    public static (float Mean, float Std) PixelStatistics(ImageDataset data)
    {
        double sum = 0, sq = 0;
        foreach (float v in data.Pixels)
            sum += v;
        double mean = sum / data.Pixels.Length;
        foreach (float v in data.Pixels)
            sq += (v - mean) * (v - mean);
        return ((float)mean, (float)Math.Sqrt(sq / data.Pixels.Length));
    }

    /// <summary>
    /// The next batch of the current epoch, starting a new (reshuffled) epoch when the last one is exhausted.
    /// <paramref name="images"/> is [B, 1, rows, cols]; <paramref name="flat"/> is the same data as [B, rows·cols].
    /// Both are owned by the loader and overwritten by the next call. Returns false once at the end of each epoch.
    /// </summary>
    public bool TryNext(out Tensor images, out Tensor flat, out ReadOnlySpan<int> labels)
    {
        if (_startEpoch)
        {
            _startEpoch = false;
            _cursor = 0;
            if (Shuffle)
                _rng.Shuffle<int>(_order);
        }
        int remaining = _order.Length - _cursor;
        int n = Math.Min(BatchSize, remaining);
        if (n == 0 || (DropLast && n < BatchSize))
        {
            _startEpoch = true;
            Epoch++;
            images = flat = null!;
            labels = default;
            return false;
        }
        bool full = n == BatchSize;
        int d = _data.ImageSize;
        images = full ? Tensor.Ensure(ref _images, [n, 1, _data.Rows, _data.Cols]) : Tensor.Ensure(ref _tailImages, [n, 1, _data.Rows, _data.Cols]);
        ref Tensor? flatCache = ref full ? ref _flat : ref _tailFlat;
        if (flatCache is null || flatCache.Storage != images.Storage)
            flatCache = images.Reshape(n, d);
        flat = flatCache;
        var target = images.Span;
        float scale = 1f / Std;
        for (int i = 0; i < n; i++)
        {
            int k = _order[_cursor + i];
            var src = _data.Pixels.AsSpan(k * d, d);
            var dst = target.Slice(i * d, d);
            if (Mean == 0f && Std == 1f)
                src.CopyTo(dst);
            else
                for (int j = 0; j < d; j++)
                    dst[j] = (src[j] - Mean) * scale;
            _labels[i] = _data.Labels[k];
        }
        _cursor += n;
        labels = _labels.AsSpan(0, n);
        return true;
    }

    /// <summary>The shuffle generator's state and the position in the epoch, for exact resume.</summary>
    public (ulong[] RngState, int[] Order, int Cursor, int Epoch) GetState() =>
        (_rng.GetState(), (int[])_order.Clone(), _startEpoch ? -1 : _cursor, Epoch);

    /// <summary>Restores a state from <see cref="GetState"/> (a cursor of −1 means "before the next epoch").</summary>
    public void SetState(ulong[] rngState, int[] order, int cursor, int epoch)
    {
        if (order.Length != _order.Length || cursor < -1 || cursor > order.Length)
            throw new ArgumentException($"DataLoader: a state for {order.Length} images at position {cursor} does not fit a dataset of {_order.Length}.");
        // The order indexes the images: anything but a permutation would read outside them or skip some.
        var seen = new bool[order.Length];
        for (int i = 0; i < order.Length; i++)
        {
            if ((uint)order[i] >= (uint)order.Length || seen[order[i]])
                throw new ArgumentException($"DataLoader: the order is not a permutation of 0..{order.Length - 1}: entry {i} is {order[i]}.");
            seen[order[i]] = true;
        }
        _rng.SetState(rngState);
        order.CopyTo(_order, 0);
        _startEpoch = cursor < 0;
        _cursor = Math.Max(cursor, 0);
        Epoch = epoch;
    }
}

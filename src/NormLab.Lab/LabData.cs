using NormLab.Data;

namespace NormLab.Lab;

/// <summary>The shipped datasets, loaded once per process and shared by every experiment (read-only after loading).</summary>
public sealed class LabData
{
    private readonly string _root;
    private readonly Dictionary<string, (ImageDataset Train, ImageDataset Test)> _cache = [];
    private readonly Lock _lock = new();

    /// <summary>Data under <paramref name="root"/> (a folder holding mnist-10k/ and fashion-mnist/).</summary>
    public LabData(string root) => _root = root;

    /// <summary>MNIST-10k: 8,000 training and 2,000 test digits; binarized at 0.5 when asked (Ioffe &amp; Szegedy's binary images).</summary>
    public (ImageDataset Train, ImageDataset Test) Mnist(bool binarize = false) => Load("mnist-10k", binarize);

    /// <summary>Fashion-MNIST: 60,000 training and 10,000 test images.</summary>
    public (ImageDataset Train, ImageDataset Test) Fashion() => Load("fashion-mnist", false);

    private (ImageDataset Train, ImageDataset Test) Load(string name, bool binarize)
    {
        string key = name + (binarize ? "/binary" : "");
        lock (_lock)
        {
            if (_cache.TryGetValue(key, out var hit))
                return hit;
            string folder = Path.Combine(_root, name);
            var sets = (ImageDataset.LoadIdx(folder, "train"), ImageDataset.LoadIdx(folder, "t10k"));
            if (binarize)
                sets = (Binarize(sets.Item1), Binarize(sets.Item2));
            _cache[key] = sets;
            return sets;
        }
    }

    private static ImageDataset Binarize(ImageDataset d) =>
        new(d.Pixels.Select(p => p > 0.5f ? 1f : 0f).ToArray(), d.Labels, d.Rows, d.Cols, d.Classes);

    /// <summary>
    /// The first <paramref name="count"/> images of a seeded permutation that keeps classes balanced (round-robin over
    /// classes), so a reduced training set has every class in proportion.
    /// </summary>
    public static ImageDataset Subset(ImageDataset d, int count, ulong seed = 12345)
    {
        if (count >= d.Count)
            return d;
        var rng = new Rng(seed);
        var byClass = Enumerable.Range(0, d.Classes).Select(c => Enumerable.Range(0, d.Count).Where(i => d.Labels[i] == c).ToArray()).ToArray();
        foreach (var list in byClass)
            rng.Shuffle<int>(list);
        var picked = new List<int>(count);
        for (int k = 0; picked.Count < count; k++)
            foreach (var list in byClass)
                if (k < list.Length && picked.Count < count)
                    picked.Add(list[k]);
        return Select(d, picked);
    }

    /// <summary>The images whose label satisfies <paramref name="keep"/> (labels unchanged).</summary>
    public static ImageDataset Where(ImageDataset d, Func<int, bool> keep) =>
        Select(d, Enumerable.Range(0, d.Count).Where(i => keep(d.Labels[i])).ToList());

    private static ImageDataset Select(ImageDataset d, IReadOnlyList<int> indices)
    {
        int size = d.ImageSize;
        var pixels = new float[indices.Count * size];
        var labels = new int[indices.Count];
        for (int k = 0; k < indices.Count; k++)
        {
            d.Pixels.AsSpan(indices[k] * size, size).CopyTo(pixels.AsSpan(k * size));
            labels[k] = d.Labels[indices[k]];
        }
        return new ImageDataset(pixels, labels, d.Rows, d.Cols, d.Classes);
    }

    /// <summary>A fixed batch of the first <paramref name="count"/> images as [count, 784] or [count, 1, 28, 28].</summary>
    public static (Tensor Images, int[] Labels) Batch(ImageDataset d, int count, bool flat)
    {
        count = Math.Min(count, d.Count);
        var x = flat ? new Tensor(count, d.ImageSize) : new Tensor(count, 1, d.Rows, d.Cols);
        d.Pixels.AsSpan(0, count * d.ImageSize).CopyTo(x.Span);
        return (x, d.Labels[..count]);
    }
}

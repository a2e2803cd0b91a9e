using NormLab.Tests.Support;
using NormLab.Data;

namespace NormLab.Tests;

public class DataLoaderTests
{
    private static ImageDataset Tiny(int count)
    {
        // 2×2 images whose pixels encode their index, so batches can be traced back.
        var pixels = new float[count * 4];
        for (int i = 0; i < pixels.Length; i++)
            pixels[i] = i / 4;
        return new ImageDataset(pixels, Enumerable.Range(0, count).Select(i => i % 10).ToArray(), 2, 2, 10);
    }

    private static List<int[]> Epoch(DataLoader loader)
    {
        var batches = new List<int[]>();
        while (loader.TryNext(out var images, out var flat, out var labels))
        {
            Assert.Equal(images.Dim(0), labels.Length);
            Assert.Equal([labels.Length, 4], flat.Shape.ToArray());
            Assert.Same(images.Storage, flat.Storage);
            var ids = new int[labels.Length];
            for (int i = 0; i < ids.Length; i++)
            {
                ids[i] = (int)images.Span[i * 4];
                Assert.Equal(ids[i] % 10, labels[i]);
            }
            batches.Add(ids);
        }
        return batches;
    }

    [Fact]
    public void EachEpochVisitsEveryImageOnceInASeededOrder()
    {
        var loader = new DataLoader(Tiny(10), batchSize: 4, rng: new Rng(3));
        var first = Epoch(loader);
        Assert.Equal([4, 4, 2], first.Select(b => b.Length));   // the last partial batch is kept
        Assert.Equal(Enumerable.Range(0, 10), first.SelectMany(b => b).Order());
        Assert.Equal(1, loader.Epoch);
        var second = Epoch(loader);
        Assert.Equal(Enumerable.Range(0, 10), second.SelectMany(b => b).Order());
        Assert.NotEqual(first.SelectMany(b => b), second.SelectMany(b => b));   // reshuffled
        var again = new DataLoader(Tiny(10), batchSize: 4, rng: new Rng(3));
        Assert.Equal(first.SelectMany(b => b), Epoch(again).SelectMany(b => b));
    }

    [Fact]
    public void DropLastAndNoShuffle()
    {
        var loader = new DataLoader(Tiny(10), batchSize: 4, shuffle: false, dropLast: true);
        Assert.Equal(2, loader.BatchesPerEpoch);
        var batches = Epoch(loader);
        Assert.Equal([[0, 1, 2, 3], [4, 5, 6, 7]], batches);
        Assert.Throws<ArgumentOutOfRangeException>(() => new DataLoader(Tiny(3), 0));
        Assert.Throws<ArgumentException>(() => new DataLoader(Tiny(3), 4, dropLast: true));
    }

    [Fact]
    public void StandardizesAndResumesExactly()
    {
        var data = Tiny(6);
        var (mean, std) = DataLoader.PixelStatistics(data);
        Assert.Equal(2.5f, mean, 5);
        var loader = new DataLoader(data, 6, mean: mean, std: std, rng: new Rng(1));
        Assert.True(loader.TryNext(out var images, out _, out _));
        Assert.Equal(0, images.ToArray().Average(), 5);
        Assert.Throws<ArgumentOutOfRangeException>(() => new DataLoader(data, 2, std: 0));

        var a = new DataLoader(Tiny(10), 3, rng: new Rng(5));
        a.TryNext(out _, out _, out _);
        var (rngState, order, cursor, epoch) = a.GetState();
        var expected = Epoch(a).Concat(Epoch(a)).SelectMany(b => b).ToArray();
        var b = new DataLoader(Tiny(10), 3, rng: new Rng(99));
        b.SetState(rngState, order, cursor, epoch);
        Assert.Equal(expected, Epoch(b).Concat(Epoch(b)).SelectMany(x => x).ToArray());
    }

    [Fact]
    public void IteratingAllocatesNothingAfterTheFirstEpoch()
    {
        var loader = new DataLoader(Tiny(10), 4, rng: new Rng(2));
        void Epoch()
        {
            while (loader.TryNext(out _, out _, out _)) { }
        }
        Assert.Equal(0, Allocations.Steady(Epoch, warmup: 2, repeats: 1));
    }
}

using System.Buffers.Binary;

namespace NormLab.Tests.Support;

/// <summary>A few hundred MNIST-10k images as raw IDX files, for command-line runs whose data loading must be instant.</summary>
public static class TinyMnist
{
    private static readonly Lazy<string> Folder = new(() => Create(300, 100));

    /// <summary>The folder (created once per test run): 300 training and 100 test images.</summary>
    public static string Path => Folder.Value;

    private static string Create(int train, int test)
    {
        string dir = TempDirs.Create("normlab-tiny");
        foreach (var (prefix, count) in new[] { ("train", train), ("t10k", test) })
        {
            var set = Data.ImageDataset.LoadIdx(Paths.Dataset("mnist-10k"), prefix);
            var images = new byte[16 + count * 784];
            images[2] = 8;
            images[3] = 3;
            BinaryPrimitives.WriteInt32BigEndian(images.AsSpan(4), count);
            BinaryPrimitives.WriteInt32BigEndian(images.AsSpan(8), 28);
            BinaryPrimitives.WriteInt32BigEndian(images.AsSpan(12), 28);
            for (int i = 0; i < count * 784; i++)
                images[16 + i] = (byte)Math.Round(set.Pixels[i] * 255);
            var labels = new byte[8 + count];
            labels[2] = 8;
            labels[3] = 1;
            BinaryPrimitives.WriteInt32BigEndian(labels.AsSpan(4), count);
            for (int i = 0; i < count; i++)
                labels[8 + i] = (byte)set.Labels[i];
            File.WriteAllBytes(System.IO.Path.Combine(dir, $"{prefix}-images-idx3-ubyte"), images);
            File.WriteAllBytes(System.IO.Path.Combine(dir, $"{prefix}-labels-idx1-ubyte"), labels);
        }
        return dir;
    }
}

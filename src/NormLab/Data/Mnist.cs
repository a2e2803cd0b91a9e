namespace NormLab.Data;

/// <summary>An in-memory image classification set: images [count, 1, rows, cols] scaled to [0, 1], and labels.</summary>
public sealed class ImageDataset
{
    /// <summary>Creates the set; the counts must agree.</summary>
    public ImageDataset(float[] pixels, int[] labels, int rows, int cols, int classes)
    {
        if (pixels.Length != (long)labels.Length * rows * cols)
            throw new ArgumentException($"{labels.Length} labels do not match {pixels.Length} pixels of {rows}×{cols} images.");
        Pixels = pixels;
        Labels = labels;
        Rows = rows;
        Cols = cols;
        Classes = classes;
    }

    /// <summary>Pixels, row-major per image, in [0, 1].</summary>
    public float[] Pixels { get; }

    /// <summary>Class labels.</summary>
    public int[] Labels { get; }

    /// <summary>Image height.</summary>
    public int Rows { get; }

    /// <summary>Image width.</summary>
    public int Cols { get; }

    /// <summary>Number of classes.</summary>
    public int Classes { get; }

    /// <summary>Number of images.</summary>
    public int Count => Labels.Length;

    /// <summary>Values per image.</summary>
    public int ImageSize => Rows * Cols;

    /// <summary>Loads <c>{prefix}-images-idx3-ubyte[.gz]</c> and <c>{prefix}-labels-idx1-ubyte[.gz]</c> from a folder (prefix "train" or "t10k").</summary>
    /// <exception cref="NormLabFormatException">A file is missing or malformed, or images and labels disagree.</exception>
    public static ImageDataset LoadIdx(string folder, string prefix, int classes = 10)
    {
        string images = Find(folder, $"{prefix}-images-idx3-ubyte");
        string labels = Find(folder, $"{prefix}-labels-idx1-ubyte");
        var (idims, ibytes) = Idx.Read(images);
        var (ldims, lbytes) = Idx.Read(labels);
        if (idims.Length != 3)
            throw new NormLabFormatException($"{images}: expected 3 dimensions (count, rows, cols), got [{string.Join(", ", idims)}].");
        if (ldims.Length != 1)
            throw new NormLabFormatException($"{labels}: expected 1 dimension (count), got [{string.Join(", ", ldims)}].");
        if (idims[0] != ldims[0])
            throw new NormLabFormatException($"{images} has {idims[0]} images but {labels} has {ldims[0]} labels.");
        var pixels = new float[ibytes.Length];
        for (int i = 0; i < pixels.Length; i++)
            pixels[i] = ibytes[i] / 255f;
        var lab = new int[lbytes.Length];
        for (int i = 0; i < lab.Length; i++)
        {
            if (lbytes[i] >= classes)
                throw new NormLabFormatException($"{labels}: label {lbytes[i]} at index {i} is outside [0, {classes}).");
            lab[i] = lbytes[i];
        }
        return new ImageDataset(pixels, lab, idims[1], idims[2], classes);
    }

    private static string Find(string folder, string name)
    {
        foreach (var candidate in new[] { Path.Combine(folder, name + ".gz"), Path.Combine(folder, name) })
            if (File.Exists(candidate))
                return candidate;
        throw new NormLabFormatException($"{Path.Combine(folder, name)}[.gz]: file not found.");
    }
}

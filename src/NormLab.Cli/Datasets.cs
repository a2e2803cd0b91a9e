using NormLab.Data;

namespace NormLab.Cli;

/// <summary>Finds the shipped datasets by name from any working directory.</summary>
internal static class Datasets
{
    public static readonly string[] Names = ["mnist-10k", "fashion-mnist"];

    /// <summary>The folder of a named dataset: data/NAME above the executable or the current directory.</summary>
    public static string Locate(string name)
    {
        if (!Names.Contains(name))
            throw new ArgumentException($"unknown dataset '{name}' (known: {string.Join(", ", Names)}; use --data DIR for another folder)");
        foreach (var start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, "data", name);
                if (Directory.Exists(candidate))
                    return candidate;
            }
        throw new ArgumentException($"dataset '{name}' not found: no data/{name} folder above {AppContext.BaseDirectory} or {Environment.CurrentDirectory}");
    }

    /// <summary>Loads the train and test splits; binarized inputs are pixels &gt; 0.5 → 1, else 0.</summary>
    public static (ImageDataset Train, ImageDataset Test) Load(string folder, bool binarize)
    {
        var train = ImageDataset.LoadIdx(folder, "train");
        var test = ImageDataset.LoadIdx(folder, "t10k");
        if (binarize)
            foreach (var set in new[] { train, test })
                for (int i = 0; i < set.Pixels.Length; i++)
                    set.Pixels[i] = set.Pixels[i] > 0.5f ? 1f : 0f;
        return (train, test);
    }
}

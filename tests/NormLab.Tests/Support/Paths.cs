namespace NormLab.Tests.Support;

/// <summary>Locates the repository's folders from the test binary.</summary>
public static class Paths
{
    /// <summary>The repository root (the folder holding NormLab.slnx).</summary>
    public static string Root
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "NormLab.slnx")))
                    return dir.FullName;
            throw new InvalidOperationException($"NormLab.slnx not found above {AppContext.BaseDirectory}.");
        }
    }

    /// <summary>A shipped dataset folder, e.g. data/mnist-10k.</summary>
    public static string Dataset(string name) => Path.Combine(Root, "data", name);

    /// <summary>The committed PyTorch fixtures.</summary>
    public static string Fixtures => Path.Combine(Root, "tests", "NormLab.Tests", "Fixtures");
}

using NormLab.Tests.Support;
using NormLab.Lab;

namespace NormLab.Tests.Lab;

/// <summary>Runs experiments on the tiny budget with two seeds against the shipped data.</summary>
internal static class LabHarness
{
    public static string DataRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
                if (Directory.Exists(Path.Combine(dir.FullName, "data", "mnist-10k")))
                    return Path.Combine(dir.FullName, "data");
            throw new DirectoryNotFoundException("data/mnist-10k not found above the test binaries");
        }
    }

    private static readonly Lazy<LabData> Data = new(() => new LabData(DataRoot));

    public static ExperimentSummary RunTiny(string name, string outDir, List<string>? lines = null, int seeds = 2) =>
        NormLab.Lab.Lab.Run(NormLab.Lab.Lab.Find(name), new LabOptions(outDir, Budget.Tiny, seeds, DataRoot) { Log = l => lines?.Add(l) }, Data.Value);
}

/// <summary>A temporary folder, deleted on dispose.</summary>
internal sealed class LabFolder : IDisposable
{
    public string Path { get; } = TempDirs.Create("normlab-lab-");

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

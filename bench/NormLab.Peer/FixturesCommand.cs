using System.Diagnostics;

namespace NormLab.Peer;

/// <summary>`fixtures [OUTPUT_DIR]`: writes batchnorm/, optim/, layers/ and norms/ under OUTPUT_DIR.</summary>
internal static class FixturesCommand
{
    public const string Generator = "bench/NormLab.Peer";

    public static int Run(string[] args)
    {
        if (args.Length > 1)
        {
            Console.Error.WriteLine("usage: NormLab.Peer fixtures [OUTPUT_DIR]");
            return 2;
        }
        string root = Path.GetFullPath(args.Length == 1 ? args[0] : Path.Combine("tests", "NormLab.Tests", "Fixtures"));
        var sw = Stopwatch.StartNew();
        PeerEnvironment.InitTorch();
        Console.WriteLine($"libtorch {PeerEnvironment.TorchVersion}, TorchSharp {PeerEnvironment.TorchSharpVersion}");

        int n = 0;
        n += Write(root, "batchnorm", BatchNormFixtures.All());
        n += Write(root, "optim", OptimFixtures.All());
        n += Write(root, "layers", LayerFixtures.All());
        n += Write(root, "norms", NormFixtures.All());
        Console.WriteLine($"wrote {n} fixture files under {root} in {sw.Elapsed.TotalSeconds:F1} s");
        return 0;
    }

    private static int Write(string root, string group, IEnumerable<(string Name, SafeTensorsWriter File)> cases)
    {
        string dir = Path.Combine(root, group);
        Directory.CreateDirectory(dir);
        int n = 0;
        foreach (var (name, file) in cases)
        {
            file.Meta("generator", Generator);
            string path = Path.Combine(dir, name + ".safetensors");
            file.Save(path);
            Console.WriteLine($"  {group}/{name}.safetensors  ({file.Count} tensors, {new FileInfo(path).Length} bytes)");
            n++;
        }
        return n;
    }

    /// <summary>Metadata every fixture carries.</summary>
    public static SafeTensorsWriter NewFile() =>
        new SafeTensorsWriter()
            .Meta("torch_version", PeerEnvironment.TorchVersion)
            .Meta("torchsharp_version", PeerEnvironment.TorchSharpVersion);
}

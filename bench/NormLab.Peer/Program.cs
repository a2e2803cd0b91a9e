namespace NormLab.Peer;

/// <summary>
/// NormLab's PyTorch peer (libtorch through TorchSharp). Subcommands:
///   fixtures [OUTPUT_DIR]   write the golden safetensors fixtures
///                           (default OUTPUT_DIR: tests/NormLab.Tests/Fixtures)
/// Further modes (e.g. a benchmark against NormLab) plug into <see cref="Commands"/>.
/// </summary>
internal static class Program
{
    private static readonly Dictionary<string, (string Usage, Func<string[], int> Run)> Commands =
        new(StringComparer.Ordinal)
        {
            ["fixtures"] = ("fixtures [OUTPUT_DIR]   write golden fixtures (default tests/NormLab.Tests/Fixtures)",
                FixturesCommand.Run),
            ["bench"] = ("bench --threads N [--group bn2d|bn1d|gemm|step] [--malloc reuse|default] [--seconds S]   time the benchmark workloads", BenchCommand.Run),
            ["serve"] = ("serve [--malloc reuse|default]   answer benchmark requests (WORKLOAD THREADS SECONDS per line) on standard input", BenchCommand.Serve),
            ["mnist-check"] = ("mnist-check [DATA_DIR] [bn|relu] [EPOCHS]   train the reference MLPs on MNIST-10k with PyTorch", MnistCheck.Run),
        };

    private static int Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            PrintUsage(Console.Out);
            return args.Length == 0 ? 2 : 0;
        }
        if (!Commands.TryGetValue(args[0], out var command))
        {
            Console.Error.WriteLine($"unknown command '{args[0]}'");
            PrintUsage(Console.Error);
            return 2;
        }
        // libtorch/MKL read their settings from the process environment when they load, so
        // a process without the pinned settings re-runs itself with them (see PeerEnvironment).
        // The benchmark wants PyTorch as users run it: its own threads and its best instruction set.
        if (args[0] is not ("bench" or "serve") && PeerEnvironment.RelaunchIfNeeded(args) is int exitCode)
        {
            return exitCode;
        }
        return command.Run(args[1..]);
    }

    private static void PrintUsage(TextWriter w)
    {
        w.WriteLine("usage: NormLab.Peer <command> [args]");
        foreach (var (_, (usage, _)) in Commands)
        {
            w.WriteLine($"  {usage}");
        }
    }
}

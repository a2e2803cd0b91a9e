using BenchmarkDotNet.Running;

namespace NormLab.Benchmarks;

internal static class Program
{
    /// <summary><c>compare [--quick] [--groups a,b] [--peer PATH] [--out DIR]</c>, or BenchmarkDotNet's own arguments.</summary>
    private static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "compare")
            return Compare.Run(args[1..]);
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}

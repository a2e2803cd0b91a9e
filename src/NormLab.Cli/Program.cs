namespace NormLab.Cli;

internal static class Program
{
    private static int Main(string[] args) => Commands.Build().Parse(args).Invoke();
}

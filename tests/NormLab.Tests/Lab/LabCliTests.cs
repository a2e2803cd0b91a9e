namespace NormLab.Tests.Lab;

/// <summary><c>normlab lab</c> and <c>normlab report</c>: bad arguments give one line on standard error and exit code 1.</summary>
public sealed class LabCliTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => CliTests.Run(args);

    [Theory]
    [InlineData("unknown experiment 'nope'", "lab", "nope")]
    [InlineData("--seeds must be between 1 and 100, got 0", "lab", "ioffe-mnist", "--seeds", "0")]
    [InlineData("give at most one of --quick and --full", "lab", "ioffe-mnist", "--quick", "--full")]
    [InlineData("--threads must be between 1 and 1024, got 0", "lab", "ioffe-mnist", "--threads", "0")]
    public void BadLabArgumentsGiveOneLineAndExitCodeOne(string message, params string[] args)
    {
        var (code, _, err) = Run(args);
        Assert.Equal(1, code);
        Assert.Contains(message, err);
        Assert.Single(err.Trim().Split('\n'));
        Assert.DoesNotContain("   at ", err);   // a stack frame
        Assert.DoesNotContain("Exception", err);
    }

    [Fact]
    public void ReportOfAnEmptyFolderSaysWhatToRun()
    {
        using var dir = new LabFolder();
        var (code, _, err) = Run("report", "--out", dir.Path);
        Assert.Equal(1, code);
        Assert.Contains("no experiment results", err);
    }

    [Fact]
    public void ReportWritesTheLabBookOfWhatWasRun()
    {
        using var dir = new LabFolder();
        LabHarness.RunTiny("ioffe-mnist", dir.Path);
        var (code, output, err) = Run("report", "--out", dir.Path);
        Assert.True(code == 0, err);
        Assert.Contains("index.html", output);
        Assert.True(File.Exists(Path.Combine(dir.Path, "index.md")));
    }
}

using NormLab.Tests.Support;
using System.Diagnostics;
using System.Runtime.InteropServices;
using NormLab.Cli;
using NormLab.Models;

namespace NormLab.Tests.Hostile;

/// <summary>
/// The normlab command on corrupt data and checkpoint files: exit code 1 and one line on standard error that names the
/// file, never a stack trace, and no output folder left behind. Run in process through the same Commands.Guard path, and
/// once out of process through the built executable.
/// </summary>
public sealed class CliHostileInputTests
{
    private static string TempDir() => TempDirs.Create("normlab-hostile");

    /// <summary>A tiny dataset (4 training and 4 test images, gzipped like MNIST's) so that a file that still reads costs nothing.</summary>
    private static string TinyDataset()
    {
        string dir = TempDir();
        var random = new Random(5);
        foreach (var split in new[] { "train", "t10k" })
        {
            var pixels = new byte[4 * 28 * 28];
            random.NextBytes(pixels);
            File.WriteAllBytes(Path.Combine(dir, $"{split}-images-idx3-ubyte.gz"), IdxFuzzTests.Gzip(IdxFuzzTests.File([4, 28, 28], pixels)));
            File.WriteAllBytes(Path.Combine(dir, $"{split}-labels-idx1-ubyte.gz"), IdxFuzzTests.Gzip(IdxFuzzTests.File([4], [1, 2, 3, 4])));
        }
        return dir;
    }

    private static void AssertOneLineError(int code, string output, string errors, string file, string what)
    {
        Assert.True(code != 0, $"{what}: exit code 0; stderr: {errors}");
        var lines = errors.TrimEnd('\n', '\r').Split('\n');
        Assert.True(lines.Length == 1, $"{what}: {lines.Length} lines on stderr: {errors}");
        Assert.StartsWith("normlab: error: ", lines[0]);
        Assert.Contains(file, lines[0]);
        foreach (var text in new[] { output, errors })
        {
            Assert.DoesNotContain("   at ", text);
            Assert.DoesNotContain("Exception", text);
        }
    }

    private static byte[] CheckpointBytes(Dictionary<string, string>? change = null, string? drop = null)
    {
        var spec = new ModelSpec("ioffe-mlp", NormKind.Batch, NormPosition.Before, 0.1, false);
        var meta = spec.ToMetadata();
        foreach (var (key, value) in change ?? [])
            meta[key] = value;
        if (drop is not null)
            meta.Remove(drop);
        string path = Path.Combine(TempDir(), "model.safetensors");
        Checkpoint.SaveModel(path, spec.Build(new Rng(1)), meta);
        return File.ReadAllBytes(path);
    }

    [Fact]
    public void CorruptCheckpointsGiveOneLineNamingTheFile()
    {
        string data = TinyDataset(), dir = TempDir();
        var good = CheckpointBytes();
        var cases = new List<(string What, byte[] Bytes)>
        {
            ("bad norm", CheckpointBytes(new() { ["norm"] = "batchy" })),
            ("bad init_std", CheckpointBytes(new() { ["init_std"] = "abc" })),
            ("groups beyond int", CheckpointBytes(new() { ["norm_groups"] = "99999999999" })),
            ("groups that do not divide", CheckpointBytes(new() { ["norm"] = "group", ["norm_groups"] = "7" })),
            ("unknown model", CheckpointBytes(new() { ["model"] = "vgg" })),
            ("a line break in a value", CheckpointBytes(new() { ["norm"] = "batch\n\u001b[31mred" })),
            ("no model", CheckpointBytes(drop: "model")),
            ("another architecture", CheckpointBytes(new() { ["model"] = "mlp" })),
        };
        int headerEnd = 8 + (int)BitConverter.ToUInt64(good, 0);
        foreach (int cut in new[] { 0, 7, 8, 9, headerEnd / 2, headerEnd - 1, headerEnd, headerEnd + 1, good.Length / 2, good.Length - 1 })
            cases.Add(($"cut at {cut}", good[..cut]));
        var random = new Random(11);
        int accepted = 0;
        for (int i = 0; i < 20; i++)
        {
            var (bytes, where) = Support.Hostile.FlipBits(good[..headerEnd], random, maxFlips: 2);
            cases.Add(($"header {where}", [.. bytes, .. good[headerEnd..]]));
        }
        foreach (var (what, bytes) in cases)
        {
            string path = Path.Combine(dir, "corrupt.safetensors");
            File.WriteAllBytes(path, bytes);
            var (code, output, errors) = CliTests.Run("eval", "--checkpoint", path, "--data", data);
            if (code == 0 && what.StartsWith("header bits", StringComparison.Ordinal))
            {
                accepted++;   // a flip in a metadata number can leave a valid checkpoint
                continue;
            }
            AssertOneLineError(code, output, errors, path, what);
        }
        Assert.InRange(accepted, 0, 10);
    }

    [Fact]
    public void CorruptDataFilesGiveOneLineNamingTheFileAndWriteNothing()
    {
        var pixels = new byte[4 * 28 * 28];
        var cases = new (string What, string File, byte[] Bytes)[]
        {
            ("truncated gzip", "train-labels-idx1-ubyte.gz", IdxFuzzTests.Gzip(IdxFuzzTests.File([4], [1, 2, 3, 4]))[..20]),
            ("cut trailer", "train-images-idx3-ubyte.gz", IdxFuzzTests.Gzip(IdxFuzzTests.File([4, 28, 28], pixels))[..^3]),
            ("not gzip", "t10k-images-idx3-ubyte.gz", [0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
            ("wrong magic", "t10k-labels-idx1-ubyte.gz", IdxFuzzTests.Gzip([0, 1, 8, 1, 0, 0, 0, 4, 1, 2, 3, 4])),
            ("gzip bomb", "train-labels-idx1-ubyte.gz", IdxFuzzTests.Gzip(IdxFuzzTests.File([4], [1, 2, 3, 4]), zeros: 8 << 20)),
            ("label out of range", "train-labels-idx1-ubyte.gz", IdxFuzzTests.Gzip(IdxFuzzTests.File([4], [1, 2, 30, 4]))),
            ("count mismatch", "t10k-labels-idx1-ubyte.gz", IdxFuzzTests.Gzip(IdxFuzzTests.File([3], [1, 2, 3]))),
            ("2^31 images promised", "train-images-idx3-ubyte.gz", IdxFuzzTests.Gzip(IdxFuzzTests.File([int.MaxValue, 28, 28], pixels))),
        };
        foreach (var (what, name, bytes) in cases)
        {
            string data = TinyDataset(), output = Path.Combine(TempDir(), "run");
            string path = Path.Combine(data, name);
            File.WriteAllBytes(path, bytes);
            var (code, stdout, stderr) = CliTests.Run("train", "--data", data, "--steps", "1", "--batch", "2", "--out", output);
            AssertOneLineError(code, stdout, stderr, name, what);
            Assert.False(Directory.Exists(output), $"{what}: the run folder was created although the data were rejected");
        }
    }

    [Fact]
    public void CorruptResumeStateGivesOneLineNamingTheFile()
    {
        string data = TinyDataset(), run = TempDir();
        string[] train = ["train", "--data", data, "--batch", "2", "--eval-every", "1", "--out", run];
        var first = CliTests.Run([.. train, "--steps", "1"]);
        Assert.True(first.Code == 0, first.Err);
        string resume = Path.Combine(run, TrainRun.ResumeName);
        var original = File.ReadAllBytes(resume);
        var (tensors, _) = SafeTensors.Parse(original, resume);

        void Rewrite(string name, long[] values)
        {
            var floats = tensors.Values.Where(t => t.DType == "F32").Select(t => (t.Name, t.ToTensor()));
            var scalars = tensors.Values.Where(t => t.DType == "I64" && t.Shape.Length == 0).Select(t => (t.Name, t.ToInt64s()[0]));
            var vectors = tensors.Values.Where(t => t.DType == "I64" && t.Shape.Length == 1).Select(t => (t.Name, t.Name == name ? values : t.ToInt64s()));
            SafeTensors.Write(resume, floats, null, scalars, vectors);
        }

        foreach (var (what, name, values) in new (string, string, long[])[]
        {
            ("no position", "loader.position", []),
            ("position beyond int", "loader.position", [1L << 40, 0]),
            ("order outside the dataset", "loader.order", [0, 1, 2, 99]),
            ("order repeating an image", "loader.order", [0, 1, 1, 2]),
            ("short generator state", "loader.rng", [1, 2]),
        })
        {
            Rewrite(name, values);
            var (code, output, errors) = CliTests.Run([.. train, "--steps", "2", "--resume"]);
            AssertOneLineError(code, output, errors, resume, what);
            Assert.Contains(name, errors);
        }
        File.WriteAllBytes(resume, original[..(original.Length / 2)]);
        var cut = CliTests.Run([.. train, "--steps", "2", "--resume"]);
        AssertOneLineError(cut.Code, cut.Out, cut.Err, resume, "truncated resume file");
    }

    [Fact]
    public void TheBuiltExecutableReportsCorruptFilesOnOneLine()
    {
        string data = TinyDataset();
        string labels = Path.Combine(data, "t10k-labels-idx1-ubyte.gz");
        File.WriteAllBytes(labels, File.ReadAllBytes(labels)[..15]);
        string checkpoint = Path.Combine(TempDir(), "model.safetensors");
        File.WriteAllBytes(checkpoint, CheckpointBytes()[..300]);
        // Both run at once: most of each run is the runtime starting.
        var runs = new[]
        {
            (labels, new[] { "train", "--data", data, "--steps", "1", "--batch", "2", "--out", Path.Combine(TempDir(), "run") }),
            (checkpoint, new[] { "eval", "--checkpoint", checkpoint, "--data", data }),
        }.Select(r => (File: r.Item1, Command: r.Item2[0], Run: StartExecutable(r.Item2))).ToList();
        foreach (var (file, command, run) in runs)
        {
            var (code, output, errors) = run();
            AssertOneLineError(code, output, errors, file, $"normlab {command}");
        }
    }

    /// <summary>Starts NormLab.Cli.dll (copied beside the tests) with the dotnet host that runs the tests; the result waits for its exit.</summary>
    private static Func<(int Code, string Out, string Err)> StartExecutable(string[] args)
    {
        string host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { } fromEnv && File.Exists(fromEnv)
            ? fromEnv
            : Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", "..", OperatingSystem.IsWindows() ? "dotnet.exe" : "dotnet"));
        var start = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "NormLab.Cli.dll"));
        foreach (var a in args)
            start.ArgumentList.Add(a);
        var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        return () =>
        {
            using (process)
            {
                Assert.True(process.WaitForExit(60_000), "normlab did not exit within 60 s");
                return (process.ExitCode, output.Result, errors.Result);
            }
        };
    }
}

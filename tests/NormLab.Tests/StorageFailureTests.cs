using System.Diagnostics;
using System.Runtime.Versioning;
using NormLab.Models;
using NormLab.Cli;
using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>A read-only output folder, a full disk and a failing write: clear errors, and the previous checkpoint untouched.</summary>
public class StorageFailureTests
{
    private static string TempDir() => TempDirs.Create("normlab-storage");

    private static string[] Train(string outDir, int steps, params string[] more) =>
    [
        "train", "--model", "ioffe-mlp", "--data", TinyMnist.Path, "--batch", "10", "--seed", "9", "--eval-every", "2", "--checkpoint-every", "1",
        "--steps", $"{steps}", "--out", outDir, .. more,
    ];

    private static Dictionary<string, byte[]> Snapshot(string dir) =>
        Directory.GetFiles(dir).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes);

    private static void AssertUnchanged(Dictionary<string, byte[]> before, string dir)
    {
        var after = Snapshot(dir);
        Assert.Equal(before.Keys.Order(), after.Keys.Order());
        foreach (var (name, bytes) in before)
            Assert.True(bytes.AsSpan().SequenceEqual(after[name]), $"{name} changed");
    }

    [Fact]
    [UnsupportedOSPlatform("windows")]
    public void AReadOnlyOutputFolderIsReportedBeforeTrainingAndKeepsItsCheckpoint()
    {
        string dir = TempDir();
        var first = CliTests.Run(Train(dir, 3));
        Assert.True(first.Code == 0, first.Err);
        var before = Snapshot(dir);
        using (ReadOnly(dir))
        {
            var (code, output, err) = CliTests.Run(Train(dir, 6, "--resume"));
            Assert.Equal(1, code);
            Assert.StartsWith($"normlab: error: --out {dir}: cannot write there", err);
            Assert.DoesNotContain("   at ", err);
            Assert.DoesNotContain("step", output);   // nothing trained: the check comes first
            // A folder to be created inside it fails the same way.
            (code, _, err) = CliTests.Run(Train(Path.Combine(dir, "sub"), 3));
            Assert.Equal(1, code);
            Assert.Contains("cannot write there", err);
        }
        AssertUnchanged(before, dir);
    }

    [Fact]
    public void ADiskFullDuringASaveKeepsThePreviousCheckpointAndResumeFinishesTheRun()
    {
        string dir = TempDir(), whole = TempDir();
        var first = CliTests.Run(Train(dir, 4));
        Assert.True(first.Code == 0, first.Err);
        var before = Snapshot(dir);
        // The resume file's next temporary file is a full disk: /dev/full fails every write with ENOSPC, after the open
        // succeeded, as a disk that fills up mid-save does. (Without /dev/full, a folder in its place fails the open.)
        string temp = AtomicFile.TempName(Path.Combine(dir, TrainRun.ResumeName));
        if (File.Exists("/dev/full"))
            File.CreateSymbolicLink(temp, "/dev/full");
        else
            Directory.CreateDirectory(temp);
        var (code, _, err) = CliTests.Run(Train(dir, 6, "--resume"));
        Assert.Equal(1, code);
        Assert.Contains("saving the checkpoint of step 5 failed: cannot write", err);
        Assert.Contains("--resume continues from the last complete checkpoint (step 4)", err);
        Assert.DoesNotContain("   at ", err);
        if (File.Exists("/dev/full"))
        {
            Assert.Contains("No space left on device", err);
            Assert.False(File.Exists(temp) || Directory.Exists(temp), "the temporary file was left behind");
        }
        else
            Directory.Delete(temp);
        // The checkpoint is intact (config.json is the new run's, metrics.csv may have gained rows, which --resume trims).
        foreach (var name in new[] { TrainRun.ResumeName, TrainRun.ModelName })
            Assert.True(before[name].AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(dir, name))), $"{name} changed");

        var resumed = CliTests.Run(Train(dir, 6, "--resume"));
        Assert.True(resumed.Code == 0, resumed.Err);
        Assert.Contains("at step 4", resumed.Out);
        Assert.Equal(0, CliTests.Run(Train(whole, 6)).Code);
        CrashSafetyTests.AssertSameRun(whole, dir);
    }

    [Fact]
    public void AFailedWriteLeavesThePreviousFileAndNoTemporary()
    {
        string dir = TempDir(), path = Path.Combine(dir, "f.bin");
        AtomicFile.Write(path, s => s.Write([1, 2, 3]));
        var e = Assert.Throws<IOException>(() => AtomicFile.Write(path, s =>
        {
            s.Write(new byte[100_000]);
            throw new IOException("No space left on device");
        }));
        Assert.Contains(path, e.Message);
        Assert.Contains("No space left on device", e.Message);
        Assert.Equal([1, 2, 3], File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFiles(dir));
        // Any other failure of the writer also leaves the old file, and is passed on as it is.
        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, _ => throw new InvalidOperationException()));
        Assert.Equal([1, 2, 3], File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFiles(dir));
    }

    [Fact]
    public void TooLittleFreeSpaceIsReportedBeforeTraining()
    {
        string dir = TempDir();
        OutputFolder.EnsureSpace(dir, 1);
        var e = Assert.Throws<IOException>(() => OutputFolder.EnsureSpace(dir, long.MaxValue / 2));
        Assert.Contains($"--out {dir}:", e.Message);
        Assert.Contains("free on its disk, a checkpoint needs about", e.Message);
        // The estimate covers both files of a real checkpoint.
        var model = new ModelSpec("ioffe-mlp", NormKind.Batch, NormPosition.Before, 0.1, false).Build(new Rng(1));
        var optimizer = new Adam(model.Parameters(), 1e-3);
        Checkpoint.SaveModel(Path.Combine(dir, "m.safetensors"), model);
        Checkpoint.SaveTrainingState(Path.Combine(dir, "r.safetensors"), optimizer, [("loader.order", new long[300])], model);
        long written = Directory.GetFiles(dir).Sum(f => new FileInfo(f).Length);
        Assert.InRange(TrainCheckpoint.Bytes(model, 300), written, written + (2 << 20) + 8 * 100_000L);
    }

    // Makes a folder read-only for this process: by its permissions, or, for root (whom permissions do not stop), with
    // the immutable attribute.
    [UnsupportedOSPlatform("windows")]
    private static IDisposable ReadOnly(string dir)
    {
        var mode = File.GetUnixFileMode(dir);
        File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        if (!Writable(dir))
            return new Undo(() => File.SetUnixFileMode(dir, mode));
        File.SetUnixFileMode(dir, mode);
        Chattr("+i", dir);
        Assert.False(Writable(dir), $"cannot make {dir} read-only: neither its permissions nor chattr +i stop this process writing it");
        return new Undo(() => Chattr("-i", dir));
    }

    private static bool Writable(string dir)
    {
        try
        {
            File.WriteAllBytes(Path.Combine(dir, ".probe"), []);
            File.Delete(Path.Combine(dir, ".probe"));
            return true;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
        catch (IOException)
        {
            return false;
        }
    }

    private static void Chattr(string flag, string dir)
    {
        using var p = Process.Start(new ProcessStartInfo("chattr", [flag, dir]) { RedirectStandardError = true })!;
        p.WaitForExit();
    }

    private sealed class Undo(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }
}

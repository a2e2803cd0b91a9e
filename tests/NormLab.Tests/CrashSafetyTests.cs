using System.Text.RegularExpressions;
using NormLab.Cli;
using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>
/// Training killed at random moments, mid-save included, and interrupted with Ctrl+C: the last complete checkpoint always
/// loads, and <c>--resume</c> from it ends with the numbers of an uninterrupted run, to the bit.
/// </summary>
public class CrashSafetyTests
{
    private static string TempDir() => TempDirs.Create("normlab-crash");

    private static string[] Train(string outDir, int steps, int evalEvery, params string[] more) =>
    [
        "train", "--model", "ioffe-mlp", "--norm", "batch", "--data", TinyMnist.Path, "--batch", "10", "--lr", "0.5", "--seed", "5",
        "--eval-every", $"{evalEvery}", "--steps", $"{steps}", "--out", outDir, .. more,
    ];

    private static long SavedStep(string dir) =>
        SafeTensors.Read(Path.Combine(dir, TrainRun.ResumeName)).Tensors["optim.step"].ToInt64s()[0];

    /// <summary>Both checkpoint files hold the same tensors to the bit, and metrics.csv the same numbers (all but seconds).</summary>
    internal static void AssertSameRun(string expected, string actual)
    {
        foreach (var file in new[] { TrainRun.ModelName, TrainRun.ResumeName })
        {
            var (x, _) = SafeTensors.Read(Path.Combine(expected, file));
            var (y, _) = SafeTensors.Read(Path.Combine(actual, file));
            Assert.Equal(x.Keys.Order(), y.Keys.Order());
            foreach (var key in x.Keys)
                Assert.True(x[key].Data.AsSpan().SequenceEqual(y[key].Data), $"{file}: {key} differs from the uninterrupted run");
        }
        static IEnumerable<string> Numbers(string dir) => File.ReadAllLines(Path.Combine(dir, "metrics.csv")).Select(l => l[..l.LastIndexOf(',')]);
        Assert.Equal(Numbers(expected), Numbers(actual));
    }

    [Fact]
    public void KillingTrainingMidSaveAlwaysLeavesACheckpointThatResumesToTheSameNumbers()
    {
        const int steps = 40, kills = 8;
        string reference = TempDir(), work = TempDir();
        // Logs every step; the children save every step, the in-process runs only at the end (the same numbers).
        string[] Every1(string dir, params string[] more) => Train(dir, steps, 1, ["--checkpoint-every", "1000", .. more]);
        var whole = CliTests.Run(Every1(reference));
        Assert.True(whole.Code == 0, whole.Err);

        var rng = new Rng(2024);
        long last = 0;
        int midSave = 0;
        for (int k = 0; k < kills; k++)
        {
            // Each step logs a line, then saves. The kill comes once a line of step t or later has appeared and the child is
            // seen writing a temporary file of the save, at once or a seeded fraction of a millisecond later. t is a seeded
            // 2–5 steps past the last checkpoint; once the run is complete, the next kill starts a new one.
            if (last == steps)
            {
                foreach (var file in Directory.GetFiles(work))
                    File.Delete(file);
                last = 0;
            }
            int t = (int)last + 2 + rng.NextInt(4);
            using var child = CliProcess.Start(Train(work, steps, 1, "--checkpoint-every", "1", "--resume", "--threads", "1"));
            string[] temps = [Path.Combine(work, TrainRun.ResumeName + ".tmp-" + child.Id), Path.Combine(work, TrainRun.ModelName + ".tmp-" + child.Id)];
            bool reached = child.WaitUntil(() => LastLoggedStep(child.LastLine) >= Math.Min(t, steps)) && child.WaitUntil(() => temps.Any(File.Exists));
            if (k % 2 == 1)
                Thread.SpinWait(rng.NextInt(20_000));
            child.Kill();
            Assert.True(reached || child.ExitCode == 0, $"kill {k}: step {t} never came: {child.Out} {child.Err}");
            if (temps.Any(File.Exists))
                midSave++;

            // The last complete checkpoint loads, never goes back, and resumes to the uninterrupted run's numbers.
            long step = SavedStep(work);
            Assert.True(step >= last && step >= Math.Min(t, steps) - 1, $"kill {k} at step {t}: the checkpoint is at step {step} (before: {last})");
            last = step;
            // model.safetensors is written after the resume file: a kill in between leaves it one step behind.
            string modelFile = Path.Combine(work, TrainRun.ModelName);
            Checkpoint.LoadModel(modelFile, ModelSpec.FromMetadata(SafeTensors.Read(modelFile).Metadata, modelFile).Build(new Rng(0)));
            string copy = TempDir();
            foreach (var file in Directory.GetFiles(work))
                File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
            var resumed = CliTests.Run(Every1(copy, "--resume"));
            Assert.True(resumed.Code == 0, resumed.Err);
            Assert.Contains($"resumed from {Path.Combine(copy, TrainRun.ResumeName)} at step {step}", resumed.Out);
            AssertSameRun(reference, copy);
        }
        Assert.True(midSave >= kills / 4, $"only {midSave} of the {kills} kills landed in the middle of a save");

        // The next run clears what the killed ones left behind and finishes the job.
        var final = CliTests.Run(Train(work, steps, 1, "--checkpoint-every", "1", "--resume"));
        Assert.True(final.Code == 0, final.Err);
        AssertSameRun(reference, work);
        Assert.Empty(Directory.GetFiles(work, "*.tmp-*"));
    }

    private static int LastLoggedStep(string line)
    {
        var step = Regex.Match(line, @"^step (\d+)/");
        return step.Success ? int.Parse(step.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : 0;
    }

    [Fact]
    public void CtrlCFinishesTheStepSavesAndExitsWith130AndTheResumeCommand()
    {
        string dir = TempDir();
        // No periodic checkpoint before step 1000: the one on disk afterwards is the interrupt's.
        string[] args = Train(dir, 1_000_000, 7, "--checkpoint-every", "1000", "--threads", "1");
        using var child = CliProcess.Start(args);
        Assert.True(child.WaitUntil(() => child.Out.Contains("step 14/")), $"no progress: {child.Out} {child.Err}");
        Assert.False(TrainCheckpoint.Exists(dir));
        child.Interrupt();
        Assert.True(child.WaitForExit(60_000), "still running 60 s after SIGINT");
        Assert.True(child.ExitCode == 130, $"exit code {child.ExitCode}: {child.Err}");
        var match = Regex.Match(child.Err, @"normlab: interrupted at step (\d+); the checkpoint is saved in (.+)\. Resume with: normlab (.+)");
        Assert.True(match.Success, child.Err);
        int n = int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(dir, match.Groups[2].Value);
        Assert.Equal(string.Join(' ', args) + " --resume", match.Groups[3].Value.TrimEnd());
        Assert.Equal(n, SavedStep(dir));

        // Resumed for three more steps, it equals a run of n + 3 steps that was never interrupted.
        string whole = TempDir();
        var a = CliTests.Run(Train(whole, n + 3, 7, "--checkpoint-every", "1000"));
        Assert.True(a.Code == 0, a.Err);
        var b = CliTests.Run(Train(dir, n + 3, 7, "--checkpoint-every", "1000", "--resume"));
        Assert.True(b.Code == 0, b.Err);
        AssertSameRun(whole, dir);
    }
}

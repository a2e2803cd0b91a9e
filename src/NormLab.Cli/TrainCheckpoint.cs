using System.Globalization;
using NormLab.Data;

namespace NormLab.Cli;

/// <summary>The running sums of a run between two evaluations, and the batches it skipped: saved with the checkpoint so
/// that a resumed run logs the same numbers as an uninterrupted one.</summary>
internal sealed class RunTally
{
    public double LossSum;
    public long LossCount, Correct, Seen, Skipped;

    public void Add(float loss, int correct, int seen)
    {
        LossSum += loss;
        LossCount++;
        Correct += correct;
        Seen += seen;
    }

    /// <summary>Starts the sums of the next evaluation period (skips are counted over the run).</summary>
    public void Reset()
    {
        LossSum = 0;
        LossCount = Correct = Seen = 0;
    }
}

/// <summary>
/// A run's checkpoint in its output folder. <c>resume.safetensors</c> holds everything a resumed run needs (model,
/// optimizer, data-loader position, running sums) in one file written at once, so the last file that was written is always
/// a whole, consistent training state. <c>model.safetensors</c>, written after it, is the model alone for eval and PyTorch.
/// </summary>
internal static class TrainCheckpoint
{
    public const string ModelName = "model.safetensors";
    public const string ResumeName = "resume.safetensors";
    public const string MetricsName = "metrics.csv";
    public const string MetricsHeader = "step,epoch,train_loss,train_accuracy,test_loss,test_accuracy,lr,seconds\n";

    public static bool Exists(string folder) => File.Exists(Path.Combine(folder, ResumeName));

    /// <summary>Writes the resume file, then the model file; <paramref name="written"/> is called between the two, once the
    /// step's training state is safe.</summary>
    public static void Save(string folder, Module model, Optimizer optimizer, DataLoader loader, RunTally tally, Dictionary<string, string> metadata,
        Action written)
    {
        var (rngState, order, cursor, epoch) = loader.GetState();
        Checkpoint.SaveTrainingState(Path.Combine(folder, ResumeName), optimizer,
        [
            ("loader.rng", rngState.Select(v => (long)v).ToArray()),
            ("loader.order", order.Select(v => (long)v).ToArray()),
            ("loader.position", [cursor, epoch]),
            ("run.loss_sum", [BitConverter.DoubleToInt64Bits(tally.LossSum)]),
            ("run.counts", [tally.LossCount, tally.Correct, tally.Seen, tally.Skipped]),
        ], model, metadata);
        written();
        Checkpoint.SaveModel(Path.Combine(folder, ModelName), model, metadata);
    }

    /// <summary>Restores model, optimizer, loader and running sums from the resume file.</summary>
    /// <exception cref="NormLabFormatException">The file is damaged or belongs to another configuration.</exception>
    public static RunTally Load(string folder, Module model, Optimizer optimizer, DataLoader loader)
    {
        string path = Path.Combine(folder, ResumeName);
        var extra = Checkpoint.LoadTrainingState(path, optimizer, model);
        long[] Entry(string name, int? length = null) =>
            extra.TryGetValue(name, out var v) && (length is null || v.Length == length)
                ? v
                : throw new NormLabFormatException($"{path}: {name} is {(v is null ? "missing" : $"{v.Length} values long, not {length}")}; cannot resume from it.");
        var (rng, order, pos) = (Entry("loader.rng"), Entry("loader.order"), Entry("loader.position"));
        var (lossSum, counts) = (Entry("run.loss_sum", 1), Entry("run.counts", 4));
        try
        {
            if (pos.Length != 2 || pos[0] is < -1 or > int.MaxValue || pos[1] is < 0 or > int.MaxValue)
                throw new ArgumentException($"loader.position must be [cursor ≥ -1, epoch ≥ 0], got [{string.Join(", ", pos.Take(3))}{(pos.Length > 3 ? ", …" : "")}]");
            // Clamped, an index beyond int fails the loader's permutation check instead of wrapping around into a valid one.
            loader.SetState(rng.Select(v => (ulong)v).ToArray(), order.Select(v => (int)Math.Clamp(v, -1, int.MaxValue)).ToArray(), (int)pos[0], (int)pos[1]);
        }
        catch (ArgumentException e)
        {
            throw new NormLabFormatException($"{path}: the data-loader state (loader.rng, loader.order, loader.position) does not fit this dataset: {e.Message}", e);
        }
        return new RunTally
        {
            LossSum = BitConverter.Int64BitsToDouble(lossSum[0]), LossCount = counts[0], Correct = counts[1], Seen = counts[2], Skipped = counts[3],
        };
    }

    /// <summary>
    /// Rewrites the model file unless it holds the resume file's step (<paramref name="metadata"/>): a kill between the two
    /// writes of a save leaves it a step behind, or not there yet, and a resumed run may not save again before it ends.
    /// </summary>
    public static void LevelModelFile(string folder, Module model, Dictionary<string, string> metadata)
    {
        string path = Path.Combine(folder, ModelName);
        try
        {
            if (File.Exists(path) && SafeTensors.Read(path).Metadata.GetValueOrDefault("step") == metadata["step"])
                return;
        }
        catch (NormLabFormatException)
        {
            // Unreadable: written anew below.
        }
        Checkpoint.SaveModel(path, model, metadata);
    }

    /// <summary>
    /// Keeps the rows of <c>metrics.csv</c> up to <paramref name="step"/> (a crash may have left later rows, or half of
    /// one, that the resumed run will write again) and returns the last one kept.
    /// </summary>
    public static TrainResult? TrimMetrics(string folder, long step)
    {
        string path = Path.Combine(folder, MetricsName);
        var kept = new List<string>();
        TrainResult? last = null;
        foreach (var line in File.Exists(path) ? File.ReadLines(path).Skip(1) : [])
        {
            var f = line.Split(',');
            if (f.Length != 8 || !long.TryParse(f[0], CultureInfo.InvariantCulture, out long s) || s > step
                || !double.TryParse(f[7], CultureInfo.InvariantCulture, out double seconds))
                break;
            kept.Add(line + "\n");
            double Num(int i) => double.Parse(f[i], CultureInfo.InvariantCulture);
            last = new TrainResult(s, Num(2), Num(3), Num(4), Num(5), seconds);
        }
        AtomicFile.WriteAllText(path, MetricsHeader + string.Concat(kept));
        return last;
    }

    /// <summary>An upper bound of the bytes one checkpoint adds to the folder (both files, optimizer state at Adam's two
    /// moments per weight, the loader's order), for the free-space check before training.</summary>
    public static long Bytes(Module model, int examples)
    {
        long weights = model.Parameters().Sum(p => (long)p.Value.Length);
        long state = weights + model.NamedBuffers().Sum(b => (long)b.Value.Length);
        return 4 * state + 4 * (state + 2 * weights) + 8L * examples + (1 << 20);
    }

    /// <summary>Deletes the temporary files that killed runs left behind: those named after a process that no longer runs.</summary>
    public static void DeleteStaleTemporaries(string folder)
    {
        foreach (var name in new[] { ModelName, ResumeName, MetricsName, "config.json" })
            foreach (var temp in Directory.GetFiles(folder, name + ".tmp-*"))
                if (!int.TryParse(temp[(temp.LastIndexOf('-') + 1)..], CultureInfo.InvariantCulture, out int pid) || !Running(pid))
                    File.Delete(temp);
    }

    private static bool Running(int pid)
    {
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            return false;
        }
    }
}

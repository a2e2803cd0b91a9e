using System.Diagnostics;
using System.Globalization;
using NormLab.Data;
using NormLab.Distributed;

namespace NormLab.Cli;

/// <summary>What a run ends with (also the --json object); <paramref name="Interrupted"/> when Ctrl+C stopped it early.</summary>
internal sealed record TrainResult(long Steps, double TrainLoss, double TrainAccuracy, double TestLoss, double TestAccuracy, double Seconds,
    bool Interrupted = false);

/// <summary>Options of <c>normlab train</c>.</summary>
internal sealed record TrainOptions(ModelSpec Spec, string DataFolder, string Optimizer, double Lr, double Momentum, double WeightDecay,
    int Batch, int? Steps, int? Epochs, int EvalEvery, ulong Seed, string Out, bool Resume, int Threads, int CheckpointEvery = 0, OnNan OnNan = OnNan.Stop,
    string Distributed = "none", int WorldSize = 1)
{
    /// <summary>Steps between checkpoints: <see cref="CheckpointEvery"/>, or at every evaluation if it is 0.</summary>
    public int CheckpointInterval => CheckpointEvery > 0 ? CheckpointEvery : EvalEvery;
}

/// <summary>Where a run stands, for a progress display: the running mean loss and accuracy since the last evaluation.</summary>
internal readonly record struct TrainProgress(long Step, long Total, double Loss, double Accuracy, double StepsPerSecond);

/// <summary>
/// One training run: model, optimizer, loader, periodic evaluation, metrics.csv and checkpoints in the output folder
/// (<see cref="TrainCheckpoint"/>), stopping cleanly on Ctrl+C and on a non-finite loss (<see cref="NanGuard"/>).
/// On several ranks (<see cref="DataParallel"/>) every rank draws the global batch, trains on its shard and applies the
/// summed gradients; only rank 0 evaluates, logs and writes files, and every rank resumes from rank 0's checkpoint.
/// </summary>
internal static class TrainRun
{
    public const string ModelName = TrainCheckpoint.ModelName;
    public const string ResumeName = TrainCheckpoint.ResumeName;

    /// <param name="o">The options.</param>
    /// <param name="log">Receives one line per evaluation and a summary.</param>
    /// <param name="progress">Called after every step, e.g. to drive a progress bar.</param>
    /// <param name="interrupt">Once cancelled, the run finishes its step, saves a checkpoint and returns, marked interrupted.</param>
    /// <exception cref="ArithmeticException">A non-finite loss or gradient stopped the run (the message says where).</exception>
    /// <param name="comm">The ranks of a data-parallel run (null: this process alone). With <c>--norm sync</c> the
    /// SyncBatchNorm layers share their statistics over it; every other norm is per shard.</param>
    /// <exception cref="IOException">The output folder cannot be written, before training or at a save.</exception>
    public static TrainResult Run(TrainOptions o, Action<string> log, Action<TrainProgress>? progress = null, CancellationToken interrupt = default,
        ICommunicator? comm = null)
    {
        comm ??= SingleProcess.Instance;
        bool lead = comm.Rank == 0;
        if (!lead)
        {
            log = _ => { };
            progress = null;
        }
        Threading.Team.SetSize(o.Threads);
        var (train, test) = Datasets.Load(o.DataFolder, o.Spec.Binarize);   // first: data that are rejected leave no run folder
        if (o.Batch < comm.Size)
            throw new ArgumentException($"--batch {o.Batch} cannot be split over {comm.Size} ranks: every rank needs at least one image of each batch");
        if (lead)
        {
            OutputFolder.EnsureWritable(o.Out);
            TrainCheckpoint.DeleteStaleTemporaries(o.Out);
        }
        string metrics = Path.Combine(o.Out, TrainCheckpoint.MetricsName);
        var rng = new Rng(o.Seed);
        Module model = o.Spec.Build(rng);
        if (o.Spec.Norm.Kind == Models.NormKind.Sync && comm.Size > 1)
            model = SyncBatchNorm.ConvertSyncBatchNorm(model, comm);
        var parallel = comm.Size > 1 ? new DataParallel(model, comm) : null;
        Optimizer optimizer = o.Optimizer switch
        {
            "sgd" => new Sgd(model.Parameters(), o.Lr, o.Momentum, weightDecay: o.WeightDecay),
            "adam" => new Adam(model.Parameters(), o.Lr, weightDecay: o.WeightDecay),
            _ => throw new ArgumentException($"unknown --optimizer '{o.Optimizer}' (known: sgd, adam)"),
        };
        // Drop a ragged last batch: a batch of one cannot be normalized in training.
        var loader = new DataLoader(train, o.Batch, dropLast: true, rng: rng.Fork());
        long total = o.Steps ?? (long)o.Epochs!.Value * loader.BatchesPerEpoch;
        // Batch renormalization's schedule is the paper's 40k-step one, compressed to this run's length.
        foreach (var renorm in model.Modules().OfType<BatchRenorm>())
            renorm.Schedule = RenormSchedule.Scaled(total / 40000.0);
        if (lead)
            OutputFolder.EnsureSpace(o.Out, TrainCheckpoint.Bytes(model, train.Count));

        var meta = o.Spec.ToMetadata();
        meta["seed"] = o.Seed.ToString(CultureInfo.InvariantCulture);
        var tally = new RunTally();
        var last = new TrainResult(0, double.NaN, double.NaN, double.NaN, double.NaN, 0);
        long saved = -1;   // the step of the last complete checkpoint, -1 for none
        if (o.Resume && ResumeFileSeen(o.Out, comm))
        {
            tally = TrainCheckpoint.Load(o.Out, model, optimizer, loader);
            saved = optimizer.StepCount;
            meta["step"] = saved.ToString(CultureInfo.InvariantCulture);
            if (lead)
            {
                TrainCheckpoint.LevelModelFile(o.Out, model, meta);
                last = TrainCheckpoint.TrimMetrics(o.Out, saved) ?? last with { Steps = saved };
            }
            log($"resumed from {Path.Combine(o.Out, ResumeName)} at step {saved}");
        }
        else if (lead)
            AtomicFile.WriteAllText(metrics, TrainCheckpoint.MetricsHeader);
        if (lead)
            AtomicFile.WriteAllText(Path.Combine(o.Out, "config.json"), Config(o));
        // The same start on every rank, whatever each built or read.
        parallel?.BroadcastState();

        var guard = new NanGuard(model, optimizer, o.OnNan);
        string LastGood() => saved < 0 ? "no checkpoint was written yet" : $"the last good checkpoint (step {saved}) is kept in {o.Out}";
        void Save(long step)
        {
            if (!guard.StateFinite())
                throw new ArithmeticException($"{NonFinite.FirstInState(model)} became non-finite by step {step}; stopped without saving: {LastGood()}. Try a smaller --lr");
            meta["step"] = step.ToString(CultureInfo.InvariantCulture);
            if (!lead)
            {
                saved = step;
                return;
            }
            try
            {
                TrainCheckpoint.Save(o.Out, model, optimizer, loader, tally, meta, () => saved = step);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                string from = saved < 0 ? "no checkpoint was written yet" : $"--resume continues from the last complete checkpoint (step {saved})";
                throw new IOException($"saving the checkpoint of step {step} failed: {e.Message}. {from}", e);
            }
        }

        var loss = new SoftmaxCrossEntropy();
        var clock = Stopwatch.StartNew();
        long firstStep = optimizer.StepCount;
        var (shardStart, shardCount) = parallel?.Shard(o.Batch) ?? (0, o.Batch);
        var shard = new ShardView();
        // Under data parallel, Ctrl+C on any rank stops every rank after the same step (the flag travels with the gradients).
        bool stopAll = false;
        bool Stopping() => parallel is null ? interrupt.IsCancellationRequested : stopAll;
        while (optimizer.StepCount < total && !Stopping())
        {
            if (!loader.TryNext(out var images, out var flat, out var labels))
                continue;
            var input = o.Spec.Flat ? flat : images;
            if (parallel is not null)
            {
                input = shard.Of(input, shardStart, shardCount);
                labels = labels.Slice(shardStart, shardCount);
            }
            guard.BeforeStep();
            optimizer.ZeroGrad();
            var logits = model.Forward(input);
            float l = loss.Forward(logits, labels);
            int correct = SoftmaxCrossEntropy.CountCorrect(logits, labels);
            if (parallel is not null)
            {
                // Every rank runs backward (a non-finite loss only makes non-finite sums), so the collectives stay matched.
                var gradient = loss.Backward();
                DataParallel.ScaleLossGradient(gradient, shardCount, o.Batch);
                model.Backward(gradient);
                (l, correct, stopAll) = parallel.AllReduceGradients(l * shardCount / o.Batch, correct, interrupt.IsCancellationRequested);
            }
            else if (float.IsFinite(l))
                model.Backward(loss.Backward());
            if (!guard.Passes(l))
            {
                long at = optimizer.StepCount + 1;
                // Weights already non-finite (an earlier update overflowed): no batch can be skipped past that.
                if (NonFinite.FirstInState(model) is { } broken)
                    throw new ArithmeticException($"{broken} became non-finite before step {at}; stopped without saving: {LastGood()}. Try a smaller --lr");
                string what = float.IsFinite(l) ? "a gradient became non-finite" : $"the loss became {l}";
                string where = guard.Fail(input, labels.ToArray(), loss, locate: parallel is null);
                if (o.OnNan == OnNan.Stop)
                    throw new ArithmeticException($"{what} at step {at} (first non-finite value: {where}); stopped without saving: {LastGood()}. Try a smaller --lr, or --on-nan skip");
                tally.Skipped++;
                log($"step {at}: {what} (first non-finite value: {where}); batch skipped, {tally.Skipped} so far");
                if (guard.SkipsInARow >= NanGuard.MaxSkipsInARow)
                    throw new ArithmeticException($"{guard.SkipsInARow} batches in a row were non-finite (the last at step {at}: {where}); the model itself has diverged, so skipping stops: {LastGood()}. Try a smaller --lr");
                continue;
            }
            guard.Passed();
            optimizer.Step();
            long step = optimizer.StepCount;
            tally.Add(l, correct, o.Batch);
            progress?.Invoke(new TrainProgress(step, total, tally.LossSum / tally.LossCount, (double)tally.Correct / tally.Seen,
                (step - firstStep) / Math.Max(clock.Elapsed.TotalSeconds, 1e-9)));
            if (lead && (step % o.EvalEvery == 0 || step == total))
            {
                var (testLoss, accuracy) = Evaluate(model, test, o.Spec.Flat);
                last = new TrainResult(step, tally.LossSum / tally.LossCount, (double)tally.Correct / tally.Seen, testLoss, accuracy, clock.Elapsed.TotalSeconds);
                File.AppendAllText(metrics, string.Create(CultureInfo.InvariantCulture,
                    $"{step},{loader.Epoch},{last.TrainLoss:R},{last.TrainAccuracy:R},{testLoss:R},{accuracy:R},{optimizer.LearningRate:R},{last.Seconds:F2}\n"));
                log(string.Create(CultureInfo.InvariantCulture,
                    $"step {step}/{total}  train loss {last.TrainLoss:F4}  train accuracy {last.TrainAccuracy:P2}  test loss {testLoss:F4}  test accuracy {accuracy:P2}"));
                tally.Reset();
            }
            if (step % o.CheckpointInterval == 0 || step == total)
                Save(step);
        }
        if (Stopping() && optimizer.StepCount < total)
        {
            if (saved != optimizer.StepCount)
                Save(optimizer.StepCount);
            return last with { Steps = optimizer.StepCount, Interrupted = true };
        }
        string skipped = tally.Skipped > 0 ? $", {tally.Skipped} batches skipped (non-finite)" : "";
        log($"done: {optimizer.StepCount} steps in {clock.Elapsed.TotalSeconds:F1} s{skipped}; model {Path.Combine(o.Out, ModelName)}, metrics {metrics}");
        if (parallel is not null)
            log(string.Create(CultureInfo.InvariantCulture,
                $"{comm.Size} ranks ({o.Distributed}): {parallel.CommunicationTime.TotalMilliseconds / Math.Max(1, parallel.Reductions):F3} ms per step in gradient all-reduce on rank 0"));
        return last;
    }

    /// <summary>
    /// Whether the resume file is there, agreed by every rank: a rank that cannot see it (another host without the output
    /// folder at the same path) would otherwise start from step 0 while the others resume.
    /// </summary>
    private static bool ResumeFileSeen(string folder, ICommunicator comm)
    {
        long[] seen = [TrainCheckpoint.Exists(folder) ? 1 : 0];
        comm.AllReduceSum(seen);
        if (seen[0] != 0 && seen[0] != comm.Size)
            throw new IOException(
                $"--resume: {seen[0]} of {comm.Size} ranks see {Path.Combine(folder, ResumeName)}; every rank reads rank 0's checkpoint, so --out must be at the same path on every host (a shared file system)");
        return seen[0] != 0;
    }

    /// <summary>A rank's rows of the loader's batch tensor, made again only when the loader's buffer changes (no allocation per step).</summary>
    private sealed class ShardView
    {
        private Tensor? _source, _view;

        public Tensor Of(Tensor batch, int start, int count)
        {
            if (!ReferenceEquals(batch, _source))
            {
                _source = batch;
                _view = batch.Slice(start, count);
            }
            return _view!;
        }
    }

    private static string Config(TrainOptions o) => System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, object?>
    {
        ["model"] = o.Spec.Model, ["norm"] = o.Spec.Norm.Kind.ToString().ToLowerInvariant(), ["norm_settings"] = o.Spec.Norm, ["norm_position"] = o.Spec.Position.ToString().ToLowerInvariant(),
        ["init_std"] = o.Spec.InitStd, ["binarize"] = o.Spec.Binarize, ["data"] = o.DataFolder, ["optimizer"] = o.Optimizer, ["lr"] = o.Lr,
        ["momentum"] = o.Momentum, ["weight_decay"] = o.WeightDecay, ["batch"] = o.Batch, ["steps"] = o.Steps, ["epochs"] = o.Epochs,
        ["eval_every"] = o.EvalEvery, ["checkpoint_every"] = o.CheckpointInterval, ["on_nan"] = o.OnNan.ToString().ToLowerInvariant(), ["seed"] = o.Seed, ["threads"] = o.Threads,
        ["distributed"] = o.Distributed, ["world_size"] = o.WorldSize,
    }, new System.Text.Json.JsonSerializerOptions { WriteIndented = true, Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() } });

    /// <summary>Mean test loss and accuracy in eval mode (running statistics).</summary>
    public static (double Loss, double Accuracy) Evaluate(Module model, ImageDataset test, bool flat)
    {
        model.Eval();
        var loader = new DataLoader(test, 500, shuffle: false);
        var loss = new SoftmaxCrossEntropy();
        double lossSum = 0;
        int correct = 0;
        while (loader.TryNext(out var images, out var flatImages, out var labels))
        {
            var logits = model.Forward(flat ? flatImages : images);
            lossSum += loss.Forward(logits, labels) * labels.Length;
            correct += SoftmaxCrossEntropy.CountCorrect(logits, labels);
        }
        model.Train();
        return (lossSum / test.Count, (double)correct / test.Count);
    }
}

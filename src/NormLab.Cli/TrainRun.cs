using System.Diagnostics;
using System.Globalization;
using NormLab.Data;

namespace NormLab.Cli;

/// <summary>What a run ends with (also the --json object).</summary>
internal sealed record TrainResult(long Steps, double TrainLoss, double TrainAccuracy, double TestLoss, double TestAccuracy, double Seconds);

/// <summary>Options of <c>normlab train</c>.</summary>
internal sealed record TrainOptions(ModelSpec Spec, string DataFolder, string Optimizer, double Lr, double Momentum, double WeightDecay,
    int Batch, int? Steps, int? Epochs, int EvalEvery, ulong Seed, string Out, bool Resume, int Threads);

/// <summary>Where a run stands, for a progress display: the running mean loss and accuracy since the last evaluation.</summary>
internal readonly record struct TrainProgress(long Step, long Total, double Loss, double Accuracy, double StepsPerSecond);

/// <summary>One training run: model, optimizer, loader, periodic evaluation, metrics.csv and a checkpoint in the output folder.</summary>
internal static class TrainRun
{
    public const string ModelName = "model.safetensors";
    public const string ResumeName = "resume.safetensors";

    /// <param name="o">The options.</param>
    /// <param name="log">Receives one line per evaluation and a summary.</param>
    /// <param name="progress">Called after every step, e.g. to drive a progress bar.</param>
    public static TrainResult Run(TrainOptions o, Action<string> log, Action<TrainProgress>? progress = null)
    {
        Threading.Team.SetSize(o.Threads);
        var (train, test) = Datasets.Load(o.DataFolder, o.Spec.Binarize);
        Directory.CreateDirectory(o.Out);
        string checkpoint = Path.Combine(o.Out, ModelName);
        string resumeFile = Path.Combine(o.Out, ResumeName);
        string metrics = Path.Combine(o.Out, "metrics.csv");
        var rng = new Rng(o.Seed);
        var model = o.Spec.Build(rng);
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

        if (o.Resume && File.Exists(checkpoint))
        {
            var meta = Checkpoint.LoadModel(checkpoint, model);
            if (!File.Exists(resumeFile))
                throw new NormLabFormatException($"{resumeFile}: missing; it holds the optimizer and data-loader state that --resume needs.");
            var extra = Checkpoint.LoadTrainingState(resumeFile, optimizer);
            // The two files are written one after the other; a crash between them leaves them at different steps.
            if (!meta.TryGetValue("step", out var savedStep) || savedStep != optimizer.StepCount.ToString(CultureInfo.InvariantCulture))
                throw new NormLabFormatException($"{checkpoint} (step {savedStep ?? "?"}) and {resumeFile} (step {optimizer.StepCount}) disagree; cannot resume exactly.");
            if (!extra.TryGetValue("loader.rng", out var lr) || !extra.TryGetValue("loader.order", out var order) || !extra.TryGetValue("loader.position", out var pos))
                throw new NormLabFormatException($"{resumeFile}: no data-loader state to resume from.");
            try
            {
                if (pos.Length != 2 || pos[0] is < -1 or > int.MaxValue || pos[1] is < 0 or > int.MaxValue)
                    throw new ArgumentException($"loader.position must be [cursor ≥ -1, epoch ≥ 0], got [{string.Join(", ", pos.Take(3))}{(pos.Length > 3 ? ", …" : "")}]");
                // Clamped, an index beyond int fails the loader's permutation check instead of wrapping around into a valid one.
                loader.SetState(lr.Select(v => (ulong)v).ToArray(), order.Select(v => (int)Math.Clamp(v, -1, int.MaxValue)).ToArray(), (int)pos[0], (int)pos[1]);
            }
            catch (ArgumentException e)
            {
                throw new NormLabFormatException($"{resumeFile}: the data-loader state (loader.rng, loader.order, loader.position) does not fit this dataset: {e.Message}", e);
            }
            log($"resumed from {checkpoint} at step {optimizer.StepCount}");
        }
        else if (!o.Resume || !File.Exists(metrics))
            File.WriteAllText(metrics, "step,epoch,train_loss,train_accuracy,test_loss,test_accuracy,lr,seconds\n");
        File.WriteAllText(Path.Combine(o.Out, "config.json"), System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, object?>
        {
            ["model"] = o.Spec.Model, ["norm"] = o.Spec.Norm.Kind.ToString().ToLowerInvariant(), ["norm_settings"] = o.Spec.Norm, ["norm_position"] = o.Spec.Position.ToString().ToLowerInvariant(),
            ["init_std"] = o.Spec.InitStd, ["binarize"] = o.Spec.Binarize, ["data"] = o.DataFolder, ["optimizer"] = o.Optimizer, ["lr"] = o.Lr,
            ["momentum"] = o.Momentum, ["weight_decay"] = o.WeightDecay, ["batch"] = o.Batch, ["steps"] = o.Steps, ["epochs"] = o.Epochs,
            ["eval_every"] = o.EvalEvery, ["seed"] = o.Seed, ["threads"] = o.Threads,
        }, new System.Text.Json.JsonSerializerOptions { WriteIndented = true, Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() } }));

        var loss = new SoftmaxCrossEntropy();
        var clock = Stopwatch.StartNew();
        long firstStep = optimizer.StepCount;
        double lossSum = 0;
        int lossCount = 0, correct = 0, seen = 0;
        var last = new TrainResult(optimizer.StepCount, double.NaN, double.NaN, double.NaN, double.NaN, 0);
        while (optimizer.StepCount < total)
        {
            if (!loader.TryNext(out var images, out var flat, out var labels))
                continue;
            optimizer.ZeroGrad();
            var logits = model.Forward(o.Spec.Flat ? flat : images);
            float l = loss.Forward(logits, labels);
            correct += SoftmaxCrossEntropy.CountCorrect(logits, labels);
            seen += labels.Length;
            if (!float.IsFinite(l))
                throw new ArithmeticException($"the loss became {l} at step {optimizer.StepCount + 1}; try a smaller --lr");
            model.Backward(loss.Backward());
            optimizer.Step();
            lossSum += l;
            lossCount++;
            long step = optimizer.StepCount;
            progress?.Invoke(new TrainProgress(step, total, lossSum / lossCount, (double)correct / seen,
                (step - firstStep) / Math.Max(clock.Elapsed.TotalSeconds, 1e-9)));
            if (step % o.EvalEvery == 0 || step == total)
            {
                var (testLoss, accuracy) = Evaluate(model, test, o.Spec.Flat);
                last = new TrainResult(step, lossSum / lossCount, (double)correct / seen, testLoss, accuracy, clock.Elapsed.TotalSeconds);
                File.AppendAllText(metrics, string.Create(CultureInfo.InvariantCulture,
                    $"{step},{loader.Epoch},{last.TrainLoss:R},{last.TrainAccuracy:R},{testLoss:R},{accuracy:R},{optimizer.LearningRate:R},{last.Seconds:F2}\n"));
                log(string.Create(CultureInfo.InvariantCulture,
                    $"step {step}/{total}  train loss {last.TrainLoss:F4}  train accuracy {last.TrainAccuracy:P2}  test loss {testLoss:F4}  test accuracy {accuracy:P2}"));
                lossSum = 0;
                lossCount = correct = seen = 0;
                Save(checkpoint, model, optimizer, loader, o);
            }
        }
        log($"done: {optimizer.StepCount} steps in {clock.Elapsed.TotalSeconds:F1} s; model {checkpoint}, metrics {metrics}");
        return last;
    }

    private static void Save(string path, Module model, Optimizer optimizer, DataLoader loader, TrainOptions o)
    {
        var (rngState, order, cursor, epoch) = loader.GetState();
        var meta = o.Spec.ToMetadata();
        meta["seed"] = o.Seed.ToString(CultureInfo.InvariantCulture);
        meta["step"] = optimizer.StepCount.ToString(CultureInfo.InvariantCulture);
        Checkpoint.SaveModel(path, model, meta);
        Checkpoint.SaveTrainingState(Path.Combine(Path.GetDirectoryName(path)!, ResumeName), optimizer,
        [
            ("loader.rng", rngState.Select(v => (long)v).ToArray()),
            ("loader.order", order.Select(v => (long)v).ToArray()),
            ("loader.position", [cursor, epoch]),
        ]);
    }

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

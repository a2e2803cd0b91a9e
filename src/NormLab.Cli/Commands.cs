using System.CommandLine;
using System.Runtime.InteropServices;
using System.Text.Json;
using Spectre.Console;
using NormLab.Distributed;
using NormLab.Models;

namespace NormLab.Cli;

/// <summary>The <c>normlab</c> command line.</summary>
internal static class Commands
{
    public static RootCommand Build(TextWriter? output = null, TextWriter? errors = null)
    {
        // A live progress bar only on a real terminal; redirected output and tests get plain lines.
        bool interactive = output is null && !Console.IsOutputRedirected;
        var log = output ?? Console.Out;
        var err = errors ?? Console.Error;
        var root = new RootCommand("NormLab: batch normalization, exact and fast, and a lab that tests what the literature claims.");
        root.Subcommands.Add(TrainCommand(log, err, interactive));
        root.Subcommands.Add(EvalCommand(log, err));
        root.Subcommands.Add(ExportCommand.Build(log, err));
        root.Subcommands.Add(ModelsCommand(log));
        root.Subcommands.Add(LabCommands.Lab(log, err, interactive));
        root.Subcommands.Add(LabCommands.Report(log, err));
        root.Subcommands.Add(SelfTestCommand.Build(log, err));
        return root;
    }

    private static Option<T> Opt<T>(string name, string description, T defaultValue) =>
        new(name) { Description = description, DefaultValueFactory = _ => defaultValue };

    private static Command TrainCommand(TextWriter log, TextWriter err, bool interactive)
    {
        var model = Opt("--model", $"network: {string.Join(", ", ModelSpec.Models)}", "ioffe-mlp");
        var norm = Opt("--norm", $"normalization: {string.Join(", ", ModelSpec.Norms)}", "batch");
        var position = Opt("--norm-position", "normalization before or after the activation", "before");
        var dataset = Opt("--dataset", $"shipped dataset: {string.Join(", ", Datasets.Names)}", "mnist-10k");
        var data = new Option<string?>("--data") { Description = "a folder of IDX files (train-/t10k- images and labels) instead of --dataset" };
        var optimizer = Opt("--optimizer", "sgd or adam", "sgd");
        var lr = Opt("--lr", "learning rate", 0.5);
        var momentum = Opt("--momentum", "SGD momentum", 0.0);
        var weightDecay = Opt("--weight-decay", "weight decay (L2)", 0.0);
        var batch = Opt("--batch", "mini-batch size", 60);
        var steps = new Option<int?>("--steps") { Description = "training steps (or give --epochs)" };
        var epochs = new Option<int?>("--epochs") { Description = "training epochs (or give --steps)" };
        var evalEvery = Opt("--eval-every", "evaluate every N steps", 500);
        var checkpointEvery = new Option<int?>("--checkpoint-every") { Description = "save a checkpoint every N steps (default: at every evaluation), at the end and on Ctrl+C" };
        var onNan = Opt("--on-nan", $"on a non-finite loss or gradient: stop (name the layer, keep the last checkpoint) or skip the batch (stop after {NanGuard.MaxSkipsInARow} in a row)", "stop");
        var seed = Opt("--seed", "seed of every random number", 1UL);
        var initStd = Opt("--init-std", "weight std of ioffe-mlp", 0.1);
        var binarize = Opt("--binarize", "binarize pixels at 0.5 (Ioffe & Szegedy's binary images)", false);
        var outDir = Opt("--out", "output folder (metrics.csv, model.safetensors, resume.safetensors)", "runs/latest");
        var resume = Opt("--resume", "continue from the checkpoint in --out", false);
        var groups = new Option<int?>("--groups") { Description = "--norm group: groups per layer (default 32, or the largest divisor of the channels below it)" };
        var virtualBatch = Opt("--virtual-batch", "--norm ghost: samples per virtual batch", 16);
        var whitenGroup = new Option<int?>("--whiten-group") { Description = "--norm whiten: channels whitened together (default: largest divisor up to 16)" };
        var noiseA = Opt("--noise-a", "--norm noisy: noise means from U(-a, a)", 1.0);
        var noiseB = Opt("--noise-b", "--norm noisy: noise scales from U(1, b)", 2.0);
        var noise = Opt("--noise", "--norm noisy: additive or multiplicative", "additive");
        var threads = Opt("--threads", "worker threads (results are the same for any number)", Environment.ProcessorCount);
        var distributed = Opt("--distributed", "data-parallel training: none, mpi (one rank per process, under mpirun) or threads (--world-size ranks in this process); use --norm sync for batch statistics over all ranks", "none");
        var worldSize = Opt("--world-size", "--distributed threads: the number of ranks", 2);
        var json = Opt("--json", "end standard output with one JSON object of the results", false);
        var cmd = new Command("train", "Train a network and write metrics and a checkpoint.")
        {
            model, norm, position, dataset, data, optimizer, lr, momentum, weightDecay, batch, steps, epochs, evalEvery, checkpointEvery, onNan, seed, initStd,
            binarize, outDir, resume, groups, virtualBatch, whitenGroup, noiseA, noiseB, noise, threads, distributed, worldSize, json,
        };
        cmd.SetAction(p => Guard(err, () =>
        {
            int? st = p.GetValue(steps), ep = p.GetValue(epochs);
            if ((st is null) == (ep is null))
                throw new ArgumentException("give exactly one of --steps and --epochs");
            if (st <= 0 || ep <= 0)
                throw new ArgumentException("--steps and --epochs must be positive");
            if (p.GetValue(batch) < 2)
                throw new ArgumentException($"--batch must be at least 2 (batch normalization needs more than one value per channel), got {p.GetValue(batch)}");
            if (p.GetValue(evalEvery) < 1)
                throw new ArgumentException("--eval-every must be positive");
            if (p.GetValue(checkpointEvery) < 1)
                throw new ArgumentException($"--checkpoint-every must be positive, got {p.GetValue(checkpointEvery)}");
            var nanPolicy = p.GetValue(onNan) switch
            {
                "stop" => OnNan.Stop,
                "skip" => OnNan.Skip,
                var other => throw new ArgumentException($"unknown --on-nan '{other}' (known: stop, skip)"),
            };
            if (p.GetValue(threads) is < 1 or > 1024)
                throw new ArgumentException($"--threads must be between 1 and 1024, got {p.GetValue(threads)}");
            if (!(p.GetValue(lr) > 0))
                throw new ArgumentException($"--lr must be positive, got {p.GetValue(lr)}");
            if (p.GetValue(virtualBatch) < 2)
                throw new ArgumentException($"--virtual-batch must be at least 2, got {p.GetValue(virtualBatch)}");
            var normSpec = new NormSpec(ModelSpec.ParseNorm(p.GetValue(norm)!), p.GetValue(groups), p.GetValue(virtualBatch), p.GetValue(whitenGroup),
                p.GetValue(noiseA), p.GetValue(noiseB), ModelSpec.ParseNoise(p.GetValue(noise)!));
            var spec = new ModelSpec(p.GetValue(model)!, normSpec, ModelSpec.ParsePosition(p.GetValue(position)!),
                p.GetValue(initStd), p.GetValue(binarize));
            spec.Build(new Rng(0));   // validates the model name before any data is read
            string mode = p.GetValue(distributed)!;
            if (mode is not ("none" or "mpi" or "threads"))
                throw new ArgumentException($"unknown --distributed '{mode}' (known: none, mpi, threads)");
            if (p.GetValue(worldSize) is < 1 or > 1024)
                throw new ArgumentException($"--world-size must be between 1 and 1024, got {p.GetValue(worldSize)}");
            if (mode != "threads" && p.GetResult(worldSize) is { Implicit: false })
                throw new ArgumentException("--world-size goes with --distributed threads (under mpirun, -np sets the number of ranks)");
            string folder = p.GetValue(data) ?? Datasets.Locate(p.GetValue(dataset)!);
            var options = new TrainOptions(spec, folder, p.GetValue(optimizer)!, p.GetValue(lr), p.GetValue(momentum), p.GetValue(weightDecay),
                p.GetValue(batch), st, ep, p.GetValue(evalEvery), p.GetValue(seed), p.GetValue(outDir)!, p.GetValue(resume),
                p.GetValue(threads), p.GetValue(checkpointEvery) ?? 0, nanPolicy, mode, mode == "threads" ? p.GetValue(worldSize) : 1);
            bool asJson = p.GetValue(json);
            // Ctrl+C: the run finishes its step, saves and returns; a second Ctrl+C ends the process at once (the
            // checkpoint on disk is whole either way).
            using var interrupt = new CancellationTokenSource();
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, ctx =>
            {
                if (interrupt.IsCancellationRequested)
                    return;
                ctx.Cancel = true;
                interrupt.Cancel();
            });
            TrainResult result;
            MpiCommunicator? world = mode == "mpi" ? MpiCommunicator.World() : null;
            if (world is not null)
                options = options with { WorldSize = world.Size };
            if (world is not null && world.Rank != 0)
            {
                // Only rank 0 reports; the others train and exit with its code.
                TrainRun.Run(options, _ => { }, interrupt: interrupt.Token, comm: world);
                world.Dispose();
                return 0;
            }
            if (mode == "threads")
                result = InProcessGroup.Run(options.WorldSize, comm => TrainRun.Run(options, log.WriteLine, interrupt: interrupt.Token, comm: comm))[0];
            else if (!interactive || asJson)
                result = TrainRun.Run(options, log.WriteLine, interrupt: interrupt.Token, comm: world);
            else
            {
                result = AnsiConsole.Progress()
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                    .Start(ctx =>
                    {
                        var task = ctx.AddTask($"training {Markup.Escape(spec.Model)}");
                        long shown = 0;
                        return TrainRun.Run(options, line => AnsiConsole.WriteLine(line), s =>
                        {
                            task.MaxValue = s.Total;
                            task.Value = s.Step;
                            // A new description costs a string: refresh it about ten times a second, not every step.
                            long now = Environment.TickCount64;
                            if (now - shown < 100 && s.Step != s.Total)
                                return;
                            shown = now;
                            task.Description = string.Create(System.Globalization.CultureInfo.InvariantCulture,
                                $"step {s.Step}/{s.Total}  loss {s.Loss:F4}  acc {s.Accuracy:P1}  {s.StepsPerSecond:F0} steps/s");
                        }, interrupt.Token, world);
                    });
                var table = new Table().RoundedBorder().AddColumns("steps", "train loss", "train acc", "test loss", "test acc", "seconds");
                table.AddRow($"{result.Steps}", $"{result.TrainLoss:F4}", $"{result.TrainAccuracy:P2}", $"{result.TestLoss:F4}", $"{result.TestAccuracy:P2}", $"{result.Seconds:F1}");
                if (!result.Interrupted)
                    AnsiConsole.Write(table);
            }
            // Finalizing synchronizes the ranks: only when every rank got here (a rank that threw leaves without it, and mpirun ends the job).
            world?.Dispose();
            if (result.Interrupted)
            {
                var again = p.Tokens.Select(t => t.Value.Any(char.IsWhiteSpace) ? $"'{t.Value}'" : t.Value).ToList();
                if (!p.GetValue(resume))
                    again.Add("--resume");
                err.WriteLine($"normlab: interrupted at step {result.Steps}; the checkpoint is saved in {options.Out}. Resume with: normlab {string.Join(' ', again)}");
                return 130;   // 128 + SIGINT, as shells report a process that Ctrl+C ended
            }
            if (asJson)
                log.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["steps"] = result.Steps, ["train_loss"] = result.TrainLoss, ["train_accuracy"] = result.TrainAccuracy,
                    ["test_loss"] = result.TestLoss, ["test_accuracy"] = result.TestAccuracy, ["seconds"] = result.Seconds,
                }));
            return 0;
        }));
        return cmd;
    }

    private static Command ModelsCommand(TextWriter log)
    {
        var json = Opt("--json", "end standard output with one JSON object of the results", false);
        var cmd = new Command("models", "List the model zoo with parameter counts.") { json };
        cmd.SetAction(p =>
        {
            var counts = new Dictionary<string, object>();
            foreach (var name in ModelSpec.Models)
            {
                long Count(NormKind kind) => new ModelSpec(name, kind, NormPosition.Before, 0.1, false).Build(new Rng(0)).Parameters().Sum(q => (long)q.Value.Length);
                long withBn = Count(NormKind.Batch), without = Count(NormKind.None);
                log.WriteLine($"{name,-10} {withBn,10:N0} parameters with --norm batch, {without,10:N0} with --norm none");
                counts[name] = new Dictionary<string, long> { ["batch"] = withBn, ["none"] = without };
            }
            if (p.GetValue(json))
                log.WriteLine(JsonSerializer.Serialize(counts));
            return 0;
        });
        return cmd;
    }

    private static Command EvalCommand(TextWriter log, TextWriter err)
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "a checkpoint written by normlab train", Required = true };
        var dataset = Opt("--dataset", $"shipped dataset: {string.Join(", ", Datasets.Names)}", "mnist-10k");
        var data = new Option<string?>("--data") { Description = "a folder of IDX files instead of --dataset" };
        var json = Opt("--json", "end standard output with one JSON object of the results", false);
        var cmd = new Command("eval", "Evaluate a checkpoint on a test set (eval mode, running statistics).") { checkpoint, dataset, data, json };
        cmd.SetAction(p => Guard(err, () =>
        {
            string path = p.GetValue(checkpoint)!;
            if (!File.Exists(path))
                throw new ArgumentException($"checkpoint '{path}' not found");
            var (_, meta) = SafeTensors.Read(path);
            var spec = ModelSpec.FromMetadata(meta, path);
            Sequential net;
            try
            {
                net = spec.Build(new Rng(0));
            }
            catch (ArgumentException e)
            {
                // Settings that parse but build no network (an unknown model, groups that do not divide the channels) are the file's defect.
                throw new NormLabFormatException($"{path}: its metadata describe no network NormLab can build: {e.Message}", e);
            }
            Checkpoint.LoadModel(path, net);
            string folder = p.GetValue(data) ?? Datasets.Locate(p.GetValue(dataset)!);
            var (_, test) = Datasets.Load(folder, spec.Binarize);
            var (loss, accuracy) = TrainRun.Evaluate(net, test, spec.Flat);
            log.WriteLine($"{spec.Model} (norm {spec.Norm.Kind.ToString().ToLowerInvariant()}) on {test.Count} test images: loss {loss:F4}, accuracy {accuracy:P2}");
            if (p.GetValue(json))
                log.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object> { ["test_loss"] = loss, ["test_accuracy"] = accuracy, ["images"] = test.Count }));
            return 0;
        }));
        return cmd;
    }

    /// <summary>Turns every expected failure into one line on standard error and exit code 1: no stack traces at users.</summary>
    internal static int Guard(TextWriter err, Func<int> action)
    {
        try
        {
            return action();
        }
        catch (Exception e) when (e is ArgumentException or NormLabFormatException or IOException or UnauthorizedAccessException or ArithmeticException)
        {
            err.WriteLine($"normlab: error: {OneLine(e.Message)}");
            return 1;
        }
    }

    /// <summary>A message as one line: names and values read from a file may hold line breaks or terminal escape codes, shown escaped.</summary>
    internal static string OneLine(string message)
    {
        if (!message.Any(c => char.IsControl(c) || c is '\u2028' or '\u2029'))
            return message;
        var sb = new System.Text.StringBuilder(message.Length + 16);
        foreach (char c in message)
        {
            if (char.IsControl(c) || c is '\u2028' or '\u2029')
                sb.Append($"\\u{(int)c:X4}");
            else
                sb.Append(c);
        }
        return sb.ToString();
    }
}

using NormLab.Lab.Measures;
using NormLab.Lab.Reporting;
using NormLab.Models;

namespace NormLab.Lab.Experiments;

/// <summary>
/// E10 (Hoffer, Hubara &amp; Soudry 2017): the authors' mnist_f1 MLP on Fashion-MNIST at batch 128, at batch 4096 with
/// plain BN, and at batch 4096 with ghost batches of 128, for the same number of epochs (so 32× fewer updates at 4096).
/// </summary>
public sealed class GhostBn : Experiment
{
    private const double BaseLr = 0.1, WeightDecay = 1e-4, Momentum = 0.9, Clip = 5;

    /// <summary>The authors' step decays (×0.1 at epochs 10, 20 and 30 of their 50), as fractions of the run.</summary>
    private static readonly double[] Decays = [10 / 50.0, 20 / 50.0, 30 / 50.0];

    private sealed record ArmSpec(string Key, string Label, bool Large, bool Ghost);

    private static readonly ArmSpec[] Arms =
    [
        new("small", "small batch, BN", false, false),
        new("large", "large batch, BN", true, false),
        new("ghost", "large batch, ghost BN", true, true),
    ];

    /// <inheritdoc/>
    public override string Name => "ghost-bn";

    /// <inheritdoc/>
    public override int Order => 9;

    /// <inheritdoc/>
    public override string Title => "E10: ghost batch normalization against the large-batch generalization gap (Hoffer, Hubara & Soudry 2017)";

    /// <inheritdoc/>
    public override string Claim =>
        "At the same number of epochs, large batches generalize worse; ghost batch normalization (BN statistics over small virtual batches) \"significantly\" reduces this gap without more updates.";

    /// <inheritdoc/>
    public override string Published =>
        "Hoffer et al. 2017 (abstract): GBN significantly reduces the generalization gap without increasing the number of updates, and adapting the training regime (more epochs) \"can completely eliminate\" it. "
        + "The paper's accuracy tables (small batch / large batch / +LR / +GBN / +RA) were not retrieved.";

    /// <inheritdoc/>
    public override string Criterion =>
        "Final test accuracy: small batch (128) ≥ ghost BN (4096, ghost batches of 128) > plain BN at 4096, and ghost BN recovers ≥ 50 % of the gap: (GBN − large)/(small − large) ≥ ½.";

    /// <inheritdoc/>
    public override Finding Run(LabRun run)
    {
        int width = run.Pick(64, 512, 512), depth = run.Pick(2, 5, 5);
        int small = run.Pick(16, 128, 128), large = run.Pick(512, 4096, 4096);
        int epochs = run.Pick(2, 3, 50);
        var (fullTrain, test) = run.Data.Fashion();
        var train = LabData.Subset(fullTrain, run.Pick(2048, 60_000, 60_000));
        int testImages = run.Pick(500, 10_000, 10_000), trainImages = run.Pick(200, 2000, 10_000);
        run.Plan(Arms.Length * run.Seeds.Count);
        foreach (var arm in Arms)
        {
            int batch = arm.Large ? large : small;
            long perEpoch = train.Count / batch, steps = epochs * perEpoch;
            NormSpec norm = arm.Ghost ? new NormSpec(NormKind.Ghost, VirtualBatch: small) : NormKind.Batch;
            var setup = new TrainSetup
            {
                Build = rng => Zoo.Mlp(784, Enumerable.Repeat(width, depth).ToArray(), 10, ActivationKind.ReLU, norm, rng: rng),
                Train = train, Test = test, Flat = true, Standardize = true, Batch = batch, Steps = steps,
                Lr = BaseLr * Math.Sqrt((double)batch / small), Momentum = Momentum, WeightDecay = WeightDecay, ClipNorm = Clip,
                Schedule = step => Math.Pow(0.1, Decays.Count(d => (step - 1.0) / perEpoch >= d * epochs)),
                EvalEvery = (int)Math.Max(1, perEpoch / 2), EvalImages = testImages, TrainEvalImages = trainImages,
            };
            run.ArmAllSeeds(arm.Key, (log, seed, progress) =>
            {
                Training.Run(setup, seed, log, progress);
                log.Set("batch", batch);
                log.Set("updates", steps);
                log.Set("lr", setup.Lr);
                log.Set("final_train_accuracy", log.Last("train_eval_accuracy"));
            });
        }
        return Judge(run, train.Count, testImages, trainImages, width, depth, small, large, epochs);
    }

    private Finding Judge(LabRun run, int trainCount, int testImages, int trainImages, int width, int depth, int small, int large, int epochs)
    {
        var report = run.Report;
        report.Heading("Setup").Bullets([
            $"Fashion-MNIST ({Fmt.N(trainCount)} training images, standardized; {Fmt.N(testImages)} test images). mnist_f1: 784 → {depth} × (Linear {width} → BN → ReLU) → 10, PyTorch's default initialization.",
            $"SGD, momentum {Fmt.G(Momentum)}, weight decay {Fmt.G(WeightDecay)}, gradient norm clipped to {Fmt.G(Clip)}; lr = {Fmt.G(BaseLr)}·√(B/{small}) (the authors' --lr_bb_fix); ×0.1 at {string.Join(", ", Decays.Select(d => Fmt.F(d * epochs, 1)))} of {epochs} epochs (the authors' epochs 10/20/30 of 50, compressed to the run).",
            $"Arms: batch {small} with BN; batch {large} with BN; batch {large} with ghost BN over virtual batches of {small} (statistics and running-average updates per virtual batch, as the authors' chunked forward). Same {epochs} epochs for all, so batch {large} takes {large / small}× fewer updates.",
            $"{run.Seeds.Count} seeds per arm; same initialization for every arm of a seed. Train accuracy is measured in eval mode on {Fmt.N(trainImages)} training images.",
        ]);
        report.Choice($"Fashion-MNIST instead of MNIST (§6), and {epochs} epochs instead of the authors' 50 (quick budget; a 5×512 MLP at batch 4096 is heavy on two cores); the decays are compressed in proportion.");
        report.Choice("Inputs standardized with the training set's pixel mean and std (the authors' loader normalizes MNIST; the exact constants are theirs, ours are Fashion-MNIST's).");
        report.Choice("No regime-adaptation arm (epochs ×32 at batch 4096): it costs 32 times the large-batch arm.");

        double Acc(string key, string metric = "final_test_accuracy") => Stats.Mean(run.Of(key).Select(r => r.Scalar(metric)));
        report.Heading("Results").Table(["arm", "batch", "lr", "updates", "test accuracy", "train accuracy", "train − test (points)"],
            Arms.Select(a => (IReadOnlyList<string>)[a.Label, Fmt.N((long)run.Of(a.Key)[0].Scalar("batch")), Fmt.G(run.Of(a.Key)[0].Scalar("lr")),
                Fmt.N((long)run.Of(a.Key)[0].Scalar("updates")), Fmt.PctMeanStd(run.Of(a.Key).Select(r => r.Scalar("final_test_accuracy"))),
                Fmt.PctMeanStd(run.Of(a.Key).Select(r => r.Scalar("final_train_accuracy"))), Fmt.F(100 * (Acc(a.Key, "final_train_accuracy") - Acc(a.Key)), 2)]));

        long largeUpdates = (long)run.Of("large")[0].Scalar("updates"), largePerEpoch = trainCount / large;
        report.Text($"At batch {large} the run has {Fmt.N(largeUpdates)} updates, {Fmt.N((long)Math.Ceiling(Decays[0] * epochs * largePerEpoch))} of them before the first decay; "
            + "train accuracy is measured in eval mode, so early points also show how far the running averages lag the weights.");

        var chart = new Chart { Title = "Accuracy over training, mnist_f1 on Fashion-MNIST", XLabel = "epoch", YLabel = "accuracy (%)" };
        for (int i = 0; i < Arms.Length; i++)
        {
            var a = Arms[i];
            double perStep = 1.0 / (trainCount / (int)run.Of(a.Key)[0].Scalar("batch"));   // an epoch is the loader's full batches
            foreach (var (metric, suffix, dashed) in new[] { ("test_accuracy", "test", false), ("train_eval_accuracy", "train", true) })
            {
                var (x, m, s) = Stats.AcrossSeeds(run.Of(a.Key), metric);
                chart.Add(Series.MeanStd($"{a.Label}, {suffix}", x.Select(v => v * perStep).ToArray(), m.Select(v => 100 * v).ToArray(), s.Select(v => 100 * v).ToArray(), dashed, i));
            }
        }
        report.Plot(chart, "accuracy", "Test (solid) and train (dashed) accuracy against epochs, mean ± std over seeds.");

        double sb = Acc("small"), lb = Acc("large"), gbn = Acc("ghost"), gap = sb - lb, recovered = gap > 0 ? (gbn - lb) / gap : double.NaN;
        string Pts(double v) => Fmt.F(100 * v, 2) + " points";
        var checks = new[]
        {
            new Check("small batch ≥ ghost BN", $"{Fmt.Pct(sb)} vs {Fmt.Pct(gbn)}", sb >= gbn),
            new Check("ghost BN > plain large batch", $"{Fmt.Pct(gbn)} vs {Fmt.Pct(lb)}", gbn > lb),
            new Check("ghost BN recovers ≥ 50 % of the gap", gap > 0 ? $"{Pts(gbn - lb)} of {Pts(gap)} ({Fmt.Pct(recovered, 0)})" : $"undefined: no gap ({Pts(gap)})", gap > 0 && recovered >= 0.5),
        };
        string ours = $"test accuracy batch {small} {Fmt.Pct(sb)}, batch {large} {Fmt.Pct(lb)}, batch {large} + ghost {small} {Fmt.Pct(gbn)}"
            + (gap > 0 ? $" (ghost BN recovers {Fmt.Pct(recovered, 0)} of the {Pts(gap)} gap)" : "") + $"; {epochs} epochs of Fashion-MNIST";
        return Finding.FromChecks(ours, checks);
    }
}

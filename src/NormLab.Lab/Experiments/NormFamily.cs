using NormLab.Lab.Measures;
using NormLab.Lab.Reporting;
using NormLab.Models;

namespace NormLab.Lab.Experiments;

/// <summary>
/// Every normalization of the family on the same network, data, seeds and budget: accuracy and the cost of a training
/// step. No paper makes this comparison in one setting, so it is exploratory; it also measures how much slower
/// whitening is, which the normalization-family issue asks the lab to report.
/// </summary>
public sealed class NormFamily : Experiment
{
    /// <inheritdoc/>
    public override string Name => "norm-family";

    /// <inheritdoc/>
    public override int Order => 14;

    /// <inheritdoc/>
    public override string Title => "The normalization family side by side: accuracy and cost per step of every --norm on one CNN";

    /// <inheritdoc/>
    public override string Claim =>
        "Alternatives to BN (GroupNorm, LayerNorm, InstanceNorm, ℓp normalization, batch renormalization, ghost batches, whitening) train comparably at moderate batch sizes; whitening costs more per step.";

    /// <inheritdoc/>
    public override string Published =>
        "No single published comparison in this setting: Wu & He 2018 (GN ≈ BN at batch 32, LN/IN behind on ImageNet), Santurkar et al. 2018 (ℓp normalizations comparable to BN), Huang et al. 2018 (whitening improves on BN at extra cost).";

    /// <inheritdoc/>
    public override string Criterion => "exploratory: reported side by side, no verdict.";

    private static readonly (string Arm, NormKind Kind)[] Kinds =
    [
        ("none", NormKind.None), ("batch", NormKind.Batch), ("frozen", NormKind.Frozen), ("renorm", NormKind.Renorm), ("ghost", NormKind.Ghost),
        ("group", NormKind.Group), ("layer", NormKind.Layer), ("instance", NormKind.Instance), ("noisy", NormKind.Noisy), ("whiten", NormKind.Whiten),
        ("lp1", NormKind.Lp1), ("lp2", NormKind.Lp2), ("lpinf", NormKind.LpInf),
    ];

    /// <inheritdoc/>
    public override Finding Run(LabRun run)
    {
        long steps = run.Pick(12, 500, 5000);
        int batch = run.Pick(32, 64, 64), evalEvery = run.Pick(6, 100, 500), evalImages = run.Pick(200, 2000, 10_000);
        var (fullTrain, test) = run.Data.Fashion();
        var train = run.Budget == Budget.Tiny ? LabData.Subset(fullTrain, 2000) : fullTrain;
        var kinds = run.Budget == Budget.Tiny ? Kinds.Where(k => k.Arm is "none" or "batch" or "whiten").ToArray() : Kinds;
        run.Plan(kinds.Length * run.Seeds.Count);
        foreach (var (arm, kind) in kinds)
        {
            var setup = new TrainSetup
            {
                Build = rng =>
                {
                    var model = Zoo.Cnn(kind, rng: rng);
                    // Batch renormalization's 40k-step schedule, compressed to this run (as normlab train does).
                    foreach (var renorm in model.Modules().OfType<BatchRenorm>())
                        renorm.Schedule = RenormSchedule.Scaled(steps / 40000.0);
                    return model;
                },
                Train = train, Test = test, Flat = false, Lr = 0.05, Momentum = 0.9, Batch = batch, Steps = steps, EvalEvery = evalEvery, EvalImages = evalImages,
            };
            run.ArmAllSeeds(arm, (log, seed, progress) => Training.Run(setup, seed, log, progress));
        }

        var report = run.Report;
        report.Heading("Setup").Bullets([
            $"The zoo's CNN (conv3×3(32)-norm-ReLU-maxpool, conv3×3(64)-norm-ReLU-maxpool, linear(3136→128)-norm-ReLU, linear(128→10)) with each `--norm`, the module's defaults (GroupNorm: 32 groups or the largest divisor below; ghost: virtual batches of 16; whitening: groups of 16 channels; noisy: additive, a = 1, b = 2; InstanceNorm on the dense layer is LayerNorm).",
            $"Fashion-MNIST ({Fmt.N(train.Count)} training images), SGD lr 0.05, momentum 0.9, batch {batch}, {Fmt.N(steps)} steps; test accuracy on {Fmt.N(Math.Min(evalImages, test.Count))} test images every {evalEvery} steps, normalization in eval mode.",
            "Time per step: the training steps alone (forward, loss, backward, update; no evaluation), mean over the run, median over seeds; the machine is shared, so compare ratios to BN, not absolute times.",
        ]);
        report.Choice("Network, learning rate, momentum, batch size and budget are ours; each variant uses its module's defaults, untuned.");

        double bnTime = Stats.Median(run.Of("batch").Select(r => r.Scalar("seconds_per_step")));
        var rows = new List<string[]>();
        var accuracy = new BarChart { Title = $"Final test accuracy of each normalization ({Fmt.N(steps)} steps)", YLabel = "test accuracy (%)" };
        var cost = new BarChart { Title = "Cost of a training step relative to BatchNorm", YLabel = "time per step ÷ BatchNorm's" };
        cost.HorizontalLines.Add((1, "BatchNorm"));
        var curves = new Chart { Title = "Test accuracy over training", XLabel = "training step", YLabel = "test accuracy (%)" };
        int i = 0;
        foreach (var (arm, _) in kinds)
        {
            var r = run.Of(arm);
            var final = r.Select(x => x.Scalar("final_test_accuracy")).ToArray();
            double time = Stats.Median(r.Select(x => x.Scalar("seconds_per_step")));
            rows.Add([arm, Fmt.PctMeanStd(final), Fmt.F(Stats.Mean(r.Select(x => x.Last("train_loss"))), 3), Fmt.F(1000 * time, 2), Fmt.F(time / bnTime, 2) + "×"]);
            accuracy.Bars.Add((arm, 100 * Stats.Mean(final), 100 * Stats.Std(final)));
            cost.Bars.Add((arm, time / bnTime, 0));
            var (x, m, s) = Stats.AcrossSeeds(r, "test_accuracy");
            curves.Add(new Series(arm, x, m.Select(v => 100 * v).ToArray(), Dashed: i >= 10, Color: i % 10));
            i++;
        }
        report.Heading("Results").Table(["--norm", "final test accuracy", "final train loss", "ms per step", "time ÷ BN"], rows);
        report.Plot(accuracy, "accuracy", "Final test accuracy, mean ± std over seeds.");
        report.Plot(cost, "cost", "Time of a training step relative to BatchNorm (median over seeds).");
        report.Plot(curves, "curves", "Test accuracy over training (mean over seeds).");

        var best = kinds.Select(k => (k.Arm, Acc: Stats.Mean(run.Of(k.Arm).Select(r => r.Scalar("final_test_accuracy"))))).OrderByDescending(t => t.Acc).First();
        double whitenCost = kinds.Any(k => k.Arm == "whiten") ? Stats.Median(run.Of("whiten").Select(r => r.Scalar("seconds_per_step"))) / bnTime : double.NaN;
        string ours = $"BN {Fmt.PctMeanStd(run.Of("batch").Select(r => r.Scalar("final_test_accuracy")))}, no normalization {Fmt.PctMeanStd(run.Of("none").Select(r => r.Scalar("final_test_accuracy")))}; "
            + $"best {best.Arm} {Fmt.Pct(best.Acc)}; a whitening step costs {Fmt.F(whitenCost, 1)}× a BN step";
        return new Finding(Verdict.Exploratory, ours, []);
    }
}

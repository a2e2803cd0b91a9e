using NormLab.Lab.Measures;
using NormLab.Lab.Reporting;
using NormLab.Models;

namespace NormLab.Lab.Experiments;

/// <summary>
/// BN as a regularizer (Ioffe &amp; Szegedy §3.4): a ReLU MLP trained on 5,000 Fashion-MNIST images, where it overfits,
/// without normalization, with dropout, with BN, and with both; the train–test gap and test accuracy over training.
/// </summary>
public sealed class Regularization : Experiment
{
    /// <inheritdoc/>
    public override string Name => "regularization";

    /// <inheritdoc/>
    public override int Order => 11;

    /// <inheritdoc/>
    public override string Title => "BN as a regularizer: no normalization, dropout, BN, BN + dropout on a small training set";

    /// <inheritdoc/>
    public override string Claim =>
        "BN regularizes: each example is normalized with the statistics of a random mini-batch, so with BN dropout \"can be either removed or reduced in strength\" (Ioffe & Szegedy §3.4).";

    /// <inheritdoc/>
    public override string Published =>
        "Ioffe & Szegedy §3.4 (and BN-Inception, trained without dropout, §4.2): BN acts as a regularizer and can replace dropout. No figure isolates the effect; the claim is qualitative.";

    /// <inheritdoc/>
    public override string Criterion =>
        "Fixed by the issue: reproduced if BN alone has a smaller final train–test gap than no normalization and a final test accuracy within 0.5 points of dropout alone or better "
        + "(means over seeds); partly if one of the two holds.";

    private sealed record Variant(string Arm, string Label, bool Bn, double Dropout);

    private const double DropoutP = 0.5, Lr = 0.1;
    private const int Batch = 60, TrainImages = 5000;
    private static readonly int[] Hidden = [512, 512];

    private static readonly Variant[] Variants =
    [
        new("none", "no normalization", false, 0),
        new("dropout", $"dropout {DropoutP}", false, DropoutP),
        new("bn", "BN", true, 0),
        new("bn + dropout", $"BN + dropout {DropoutP}", true, DropoutP),
    ];

    /// <inheritdoc/>
    public override Finding Run(LabRun run)
    {
        long steps = run.Pick(40, 3000, 15_000);
        int evalEvery = run.Pick(20, 100, 500), evalImages = run.Pick(200, 10_000, 10_000), trainEval = run.Pick(200, TrainImages, TrainImages);
        var (fullTrain, test) = run.Data.Fashion();
        var train = LabData.Subset(fullTrain, TrainImages);
        run.Plan(Variants.Length * run.Seeds.Count);
        foreach (var v in Variants)
        {
            var setup = new TrainSetup
            {
                Build = rng => SameInitNets.Mlp(Hidden, v.Bn, NormPosition.Before, v.Dropout, rng),
                Train = train, Test = test, Flat = true, Lr = Lr, Batch = Batch, Steps = steps, EvalEvery = evalEvery,
                EvalImages = evalImages, TrainEvalImages = trainEval,
            };
            run.ArmAllSeeds(v.Arm, (log, seed, progress) =>
            {
                Training.Run(setup, seed, log, progress);
                var (x, trainAcc) = log.Series("train_eval_accuracy");
                var (_, testAcc) = log.Series("test_accuracy");
                for (int k = 0; k < x.Length; k++)
                    log.Log((long)x[k], "train_test_gap", trainAcc[k] - testAcc[k]);
                log.Set("final_gap", log.Last("train_test_gap"));
                log.Set("best_test_accuracy", testAcc.Max());
            });
        }
        return Judge(run, steps, evalImages, trainEval, train.Count);
    }

    private static Finding Judge(LabRun run, long steps, int evalImages, int trainEval, int trainCount)
    {
        var report = run.Report;
        report.Heading("Setup").Bullets([
            $"{Fmt.N(trainCount)} Fashion-MNIST training images (class-balanced subset), grey levels in [0, 1]; test on {Fmt.N(evalImages)} test images.",
            $"ReLU MLP 784-{string.Join("-", Hidden)}-10; BN (when present) between each hidden layer and its ReLU, that layer without bias; dropout (when present) after each hidden ReLU, p = {DropoutP}.",
            $"Plain SGD, lr {Lr}, batch {Batch}, {Fmt.N(steps)} steps ({Fmt.F((double)steps * Batch / trainCount, 0)} epochs); every arm starts from the same weights and sees the same data order.",
            $"Train–test gap = accuracy on {Fmt.N(trainEval)} training images minus test accuracy, both in eval mode (running statistics, no dropout).",
            $"{run.Seeds.Count} seeds per arm.",
        ]);
        report.Choice($"The training-set size ({Fmt.N(TrainImages)}), the network, lr {Lr}, batch {Batch} and the step count are ours: the paper reports no experiment isolating the effect.");
        report.Choice($"Dropout p = {DropoutP} (the usual rate for hidden units) in both dropout arms; BN + dropout keeps the same p so that the arms differ by one thing.");
        report.Choice("The criterion uses the values at the end of training (not the best over training); the best is reported beside them.");

        var acc = new Chart { Title = $"Test accuracy, {Fmt.N(trainCount)} Fashion-MNIST training images", XLabel = "training step", YLabel = "test accuracy (%)" };
        var gap = new Chart { Title = "Train–test gap (eval mode)", XLabel = "training step", YLabel = "train accuracy − test accuracy (points)" };
        foreach (var (v, i) in Variants.Select((v, i) => (v, i)))
        {
            var (x, m, s) = Stats.AcrossSeeds(run.Of(v.Arm), "test_accuracy");
            acc.Add(Series.MeanStd(v.Label, x, Pct(m), Pct(s), color: i));
            var (gx, gm, gs) = Stats.AcrossSeeds(run.Of(v.Arm), "train_test_gap");
            gap.Add(Series.MeanStd(v.Label, gx, Pct(gm), Pct(gs), color: i));
        }
        report.Plot(acc, "test-accuracy", "Test accuracy over training, mean ± std over seeds.");
        report.Plot(gap, "train-test-gap", "Train–test gap over training, mean ± std over seeds: the size of the overfitting.");

        double[] Of(string arm, string scalar) => run.Of(arm).Select(r => r.Scalar(scalar)).ToArray();
        double[] TrainFinal(string arm) => run.Of(arm).Select(r => r.Last("train_eval_accuracy")).ToArray();
        report.Heading("Results").Table(["arm", "final test accuracy", "best test accuracy", "final train accuracy", "final train − test gap (points)"],
            Variants.Select(v => (IReadOnlyList<string>)[v.Label, Fmt.PctMeanStd(Of(v.Arm, "final_test_accuracy")), Fmt.PctMeanStd(Of(v.Arm, "best_test_accuracy")),
                Fmt.PctMeanStd(TrainFinal(v.Arm)), Fmt.MeanStd(Of(v.Arm, "final_gap").Select(g => 100 * g), 2)]));
        report.Text("The gap is taken after a fixed number of steps: an arm that has not yet fit its training set (final train accuracy below 100 %) "
            + "has a smaller gap for that reason as well as for any regularization. All arms see the same data order, so step-to-step fluctuations of the test accuracy can be shared across arms.");

        double gapBn = Stats.Mean(Of("bn", "final_gap")), gapNone = Stats.Mean(Of("none", "final_gap"));
        double accBn = Stats.Mean(Of("bn", "final_test_accuracy")), accDropout = Stats.Mean(Of("dropout", "final_test_accuracy"));
        double accNone = Stats.Mean(Of("none", "final_test_accuracy")), accBoth = Stats.Mean(Of("bn + dropout", "final_test_accuracy"));
        var checks = new[]
        {
            new Check("BN alone: smaller final train–test gap than no normalization",
                $"BN {Fmt.F(100 * gapBn, 2)} vs none {Fmt.F(100 * gapNone, 2)} points", gapBn < gapNone),
            new Check("BN alone: final test accuracy ≥ dropout alone − 0.5 points",
                $"BN {Fmt.Pct(accBn)} vs dropout {Fmt.Pct(accDropout)} ({Fmt.F(100 * (accBn - accDropout), 2)} points)", accBn >= accDropout - 0.005),
        };
        string ours = $"final test accuracy: none {Fmt.Pct(accNone)}, dropout {Fmt.Pct(accDropout)}, BN {Fmt.Pct(accBn)}, BN + dropout {Fmt.Pct(accBoth)}; "
            + $"train–test gap BN {Fmt.F(100 * gapBn, 1)} vs none {Fmt.F(100 * gapNone, 1)} points ({Fmt.N(trainCount)} training images)";
        return Finding.FromChecks(ours, checks);
    }

    private static double[] Pct(double[] v) => v.Select(x => 100 * x).ToArray();
}

using NormLab.Lab.Measures;
using NormLab.Lab.Reporting;
using NormLab.Models;

namespace NormLab.Lab.Experiments;

/// <summary>
/// Sensitivity to the initialization scale (Ioffe &amp; Szegedy §3.3: BN(Wu) = BN((aW)u)): a ReLU MLP on Fashion-MNIST whose
/// every weight starts at s × PyTorch's default, s from 0.01 to 10, with and without BN, at one learning rate.
/// </summary>
public sealed class InitScale : Experiment
{
    private const double Chance = 0.1, Lr = 0.1;

    /// <inheritdoc/>
    public override string Name => "init-scale";

    /// <inheritdoc/>
    public override int Order => 12;

    /// <inheritdoc/>
    public override string Title => "BN makes training insensitive to the initialization scale (Ioffe & Szegedy 2015, §3.3)";

    /// <inheritdoc/>
    public override string Claim =>
        "With BN the scale of the weights does not matter: BN(Wu) = BN((aW)u), \"the scale of W affects neither the layer Jacobian nor gradient propagation\", so a network trains from a wide range of initialization scales.";

    /// <inheritdoc/>
    public override string Published =>
        "§3.3 (analytical, no experiment): ∂BN((aW)u)/∂u = ∂BN(Wu)/∂u and ∂BN((aW)u)/∂(aW) = (1/a)·∂BN(Wu)/∂W; \"larger weights lead to smaller gradients\". The criterion is the issue's.";

    /// <inheritdoc/>
    public override string Criterion =>
        "The range (max − min) of BN's mean final test accuracies across the initialization scales is under a third of the range without BN, and no BN arm diverges (no seed at any scale).";

    /// <inheritdoc/>
    public override Finding Run(LabRun run)
    {
        var (train, test) = run.Data.Fashion();
        double[] scales = run.Pick<double[]>([0.01, 1, 10], [0.01, 0.1, 0.3, 1, 3, 10], [0.01, 0.1, 0.3, 1, 3, 10]);
        long steps = run.Pick(40, 2_000, 20_000);
        int evalEvery = run.Pick(10, 100, 500), evalImages = run.Pick(200, 2_000, 10_000);
        run.Plan(scales.Length * 2 * run.Seeds.Count);
        foreach (var bn in new[] { false, true })
            foreach (double scale in scales)
            {
                var setup = new TrainSetup
                {
                    Build = rng => Nets.ScaleWeights(Nets.WithSharedWeights(
                        r => Zoo.Mlp(784, [100, 100, 100], 10, ActivationKind.ReLU, bn ? NormKind.Batch : NormKind.None, NormPosition.Before, r), rng), scale),
                    Train = train, Test = test, Flat = true, Lr = Lr, Batch = 60, Steps = steps, EvalEvery = evalEvery, EvalImages = evalImages,
                };
                run.ArmAllSeeds(Arm(bn, scale), (log, seed, progress) =>
                {
                    // The weights' norms explain BN's behaviour: a scale-invariant layer's effective step is lr/‖W‖².
                    void Norms(long step, Sequential model)
                    {
                        var weights = Nets.Weights(model);
                        for (int k = 0; k < weights.Length; k++)
                            log.Log(step, $"weight_norm_layer{k + 1}", Nets.Norm(weights[k].Value.Span));
                    }
                    Training.Run(setup, seed, log, progress, beforeStep: ctx =>
                    {
                        if (ctx.Step == 1)
                            Norms(0, ctx.Model);
                    }, afterEval: Norms);
                });
            }
        return Judge(run, scales, steps, evalEvery, evalImages);
    }

    private static string Arm(bool bn, double scale) => $"{(bn ? "bn" : "baseline")} scale {Fmt.G(scale)}";

    private static double[] Finals(LabRun run, bool bn, double scale) => run.Of(Arm(bn, scale)).Select(r => r.Scalar("final_test_accuracy")).ToArray();

    private Finding Judge(LabRun run, double[] scales, long steps, int evalEvery, int evalImages)
    {
        var report = run.Report;
        report.Heading("Setup").Bullets([
            "Fashion-MNIST (60,000 training images, grey levels in [0, 1]); ReLU MLP 784-100-100-100-10; BN (ε 1e-5, momentum 0.1) before every ReLU, no hidden bias then.",
            $"Every weight (all four layers, the output layer included) starts at s × PyTorch's default U(±1/√fan_in), i.e. std × s, for s in {{{string.Join(", ", scales.Select(Fmt.G))}}}; biases keep their default; for a seed the weights are the same draw in every arm, only scaled.",
            $"Plain SGD, lr {Fmt.G(Lr)}, batch 60, {Fmt.N(steps)} steps; test accuracy on the first {Fmt.N(evalImages)} test images every {evalEvery} steps (BN in eval mode).",
            $"{run.Seeds.Count} seeds per arm; all arms of a seed share the data order.",
            "Expectation from §3.3: without BN a ReLU network's output scales as s⁴ (positive homogeneity), so small s starves the gradients and large s blows up; with BN the hidden layers are invariant to s, but their effective step is lr/‖W‖² and the output layer (not normalized) still sees s.",
        ]);
        report.Choice("ReLU rather than sigmoid: PyTorch's default initialization is the usual start for ReLU layers, so s = 1 is a good operating point for the baseline, and ReLU's positive homogeneity makes the scale compound over depth as s⁴ — the case §3.3 is about. With sigmoid, saturation would confound the scale's effect.");
        report.Choice("The scale multiplies every weight including the unnormalized output layer (the issue: \"weight std ×0.01 … ×10\"); biases are left at their default.");
        report.Choice($"One learning rate ({Fmt.G(Lr)}, plain SGD) for every arm: the question is the initialization, not the learning rate. Fashion-MNIST rather than MNIST-10k, like E3 and E4.");

        var rows = scales.Select(s => (IReadOnlyList<string>)[Fmt.G(s), Cell(run, false, s), Cell(run, true, s)]).ToList();
        double[] baseMeans = scales.Select(s => Stats.Mean(Finals(run, false, s))).ToArray();
        double[] bnMeans = scales.Select(s => Stats.Mean(Finals(run, true, s))).ToArray();
        double baseRange = baseMeans.Max() - baseMeans.Min(), bnRange = bnMeans.Max() - bnMeans.Min();
        rows.Add(["range (max − min)", Fmt.F(100 * baseRange, 2) + " points", Fmt.F(100 * bnRange, 2) + " points"]);
        report.Heading("Results").Table(["init scale s", "without BN: final test accuracy", "with BN"], rows);

        var sweep = new Chart { LegendOutside = true, Title = "Final test accuracy against the initialization scale", XLabel = "weight scale s (× default std, log scale)", YLabel = "final test accuracy (%)", LogX = true, Markers = true };
        foreach (var bn in new[] { false, true })
            sweep.Add(Series.MeanStd(bn ? "with BN" : "without BN", scales, scales.Select(s => 100 * Stats.Mean(Finals(run, bn, s))).ToArray(),
                scales.Select(s => 100 * Stats.Std(Finals(run, bn, s))).ToArray(), color: bn ? 1 : 0));
        sweep.HorizontalLines.Add((100 * Chance, "chance (10 %)"));
        report.Plot(sweep, "final-vs-scale", "Final test accuracy (mean ± std over seeds) against the initialization scale.");

        foreach (var bn in new[] { false, true })
        {
            var curves = new Chart { LegendOutside = true, Title = $"Test accuracy over training {(bn ? "with" : "without")} BN, by initialization scale", XLabel = "training step", YLabel = "test accuracy (%)" };
            for (int k = 0; k < scales.Length; k++)
            {
                var (x, m, sd) = Stats.AcrossSeeds(run.Of(Arm(bn, scales[k])), "test_accuracy");
                curves.Add(Series.MeanStd($"s = {Fmt.G(scales[k])}", x, m.Select(v => 100 * v).ToArray(), sd.Select(v => 100 * v).ToArray(), color: k));
            }
            report.Plot(curves, $"curves-{(bn ? "bn" : "baseline")}", $"Test accuracy over training {(bn ? "with" : "without")} BN, one line per scale (mean ± std over seeds).");
        }

        var norms = new Chart { LegendOutside = true, Title = "First-layer weight norm over training with BN, by initialization scale", XLabel = "training step", YLabel = "‖W₁‖ (log scale)", LogY = true };
        for (int k = 0; k < scales.Length; k++)
        {
            var (x, m, _) = Stats.AcrossSeeds(run.Of(Arm(true, scales[k])), "weight_norm_layer1");
            norms.Add(new Series($"s = {Fmt.G(scales[k])}", x, m, Color: k));
        }
        report.Plot(norms, "weight-norm-bn", "With BN, ‖W₁‖ from initialization (step 0) over training (mean over seeds): a BN layer's effective step is lr/‖W‖², so small starts grow and large starts learn slowly.");

        int bnDiverged = scales.Sum(s => run.Of(Arm(true, s)).Count(r => r.Scalar("diverged") > 0));
        var checks = new[]
        {
            new Check("BN's range of final accuracies < ⅓ of the range without BN",
                $"{Fmt.F(100 * bnRange, 2)} vs {Fmt.F(100 * baseRange, 2)} points (ratio {Fmt.F(bnRange / baseRange, 2)})", bnRange < baseRange / 3),
            new Check("no BN arm diverges", $"{bnDiverged} of {scales.Length * run.Seeds.Count} BN runs diverged", bnDiverged == 0),
        };
        string ours = $"final accuracy over s = {Fmt.G(scales[0])}…{Fmt.G(scales[^1])}: with BN {Fmt.Pct(bnMeans.Min(), 1)}–{Fmt.Pct(bnMeans.Max(), 1)} (range {Fmt.F(100 * bnRange, 1)} points), "
            + $"without {Fmt.Pct(baseMeans.Min(), 1)}–{Fmt.Pct(baseMeans.Max(), 1)} (range {Fmt.F(100 * baseRange, 1)} points); {bnDiverged} BN runs diverged";
        return Finding.FromChecks(ours, checks);
    }

    private static string Cell(LabRun run, bool bn, double scale)
    {
        int diverged = run.Of(Arm(bn, scale)).Count(r => r.Scalar("diverged") > 0);
        return Fmt.PctMeanStd(Finals(run, bn, scale)) + (diverged > 0 ? $" ({diverged} diverged)" : "");
    }
}

using NormLab.Lab.Measures;
using NormLab.Lab.Reporting;
using NormLab.Models;

namespace NormLab.Lab.Experiments;

/// <summary>
/// E7: Santurkar et al.'s loss-landscape measurements (2018, §3.1, Fig. 4): along the gradient at each probed step, the
/// loss variation, the gradient predictiveness and the effective β-smoothness, for E5's standard and BN networks at the
/// same learning rate, plus ℓ1/ℓ2/ℓ∞ batch normalization (§3.3).
/// </summary>
public sealed class LossLandscape : Experiment
{
    /// <inheritdoc/>
    public override string Name => "landscape";

    /// <inheritdoc/>
    public override int Order => 6;

    /// <inheritdoc/>
    public override string Title => "E7: BN smooths the loss landscape along the gradient (Santurkar et al. 2018, §3.1, Fig. 4; ℓp variants §3.3)";

    /// <inheritdoc/>
    public override string Claim =>
        "BN makes the landscape smoother: along the gradient direction the loss varies less, the gradient changes less (it stays \"predictive\") and the effective β-smoothness is smaller; "
        + "ℓp normalizations smooth it similarly and train comparably, so the effect is \"not uniquely tied to BatchNorm\".";

    /// <inheritdoc/>
    public override string Published =>
        "VGG on CIFAR-10 (Fig. 4): loss variation, gradient predictiveness (ℓ2 change of the gradient) and effective β-smoothness are all clearly smaller with BN, especially early in training "
        + "(a secondary source: gradient predictiveness better by \"nearly two orders of magnitude\"); ℓ1/ℓ2/ℓ∞ normalizations perform comparably to BN (§3.3). Step-size grid not available.";

    /// <inheritdoc/>
    public override string Criterion =>
        "At lr 0.1 on the grid H = lr × {0.05, 0.1, 0.2, 0.3, 0.4}: BN's median over probed steps (per seed, then the mean over seeds) of (a) the loss range max − min over H, (b) the largest gradient change max_H Δ(η), "
        + "(c) β_eff is each below the standard network's (three checks), and at least two of the three are ≥ 2× smaller (a fourth). The ℓp arms and the absolute-step grid are reported without a verdict.";

    private static readonly double[] Fractions = [0.05, 0.1, 0.2, 0.3, 0.4];
    private const double MainLr = 0.1;

    private sealed record Kind(string Key, string Label, NormKind Norm);

    private static readonly Kind[] Kinds =
    [
        new("standard", "standard", NormKind.None), new("bn", "+ BN", NormKind.Batch),
        new("l1", "+ ℓ1 BN", NormKind.Lp1), new("l2", "+ ℓ2 BN", NormKind.Lp2), new("linf", "+ ℓ∞ BN", NormKind.LpInf),
    ];

    /// <summary>ScottPlot's font has no ℓ.</summary>
    private static string ChartLabel(Kind kind) => kind.Label.Replace("ℓ", "L", StringComparison.Ordinal);

    private static string Arm(Kind kind, double lr) => $"{kind.Key} lr{Fmt.G(lr)}";

    private static readonly (string Key, string Label)[] Measures =
        [("loss_range", "(a) loss range along −ηg"), ("delta_max", "(b) max gradient change Δ"), ("beta_eff", "(c) effective β-smoothness")];

    /// <inheritdoc/>
    public override Finding Run(LabRun run)
    {
        long steps = run.Pick(40, 3000, 15_000);
        int probeEvery = run.Pick(20, 50, 100), evalEvery = run.Pick(20, 250, 500), evalImages = run.Pick(500, 2000, 10_000);
        var arms = Kinds.Select(k => (Kind: k, Lr: MainLr)).ToList();
        if (run.Budget != Budget.Tiny)
            arms.AddRange(Kinds.Take(2).Select(k => (Kind: k, Lr: 0.5)));
        run.Plan(arms.Count * run.Seeds.Count);
        var (train, test) = run.Data.Fashion();
        foreach (var (kind, lr) in arms)
        {
            var setup = new TrainSetup
            {
                Build = rng => ProbeNets.Mlp(rng, NoisyBn.Widths, ProbeNets.Norm(kind.Norm), hiddenBias: kind.Norm == NormKind.None),
                Train = train, Test = test, Flat = true, Lr = lr, Batch = 128, Steps = steps, EvalEvery = evalEvery, EvalImages = evalImages,
            };
            double[] relative = Fractions.Select(f => f * lr).ToArray();
            run.ArmAllSeeds(Arm(kind, lr), (log, seed, progress) =>
            {
                ModelState? state = null;
                Training.Run(setup, seed, log, progress, beforeStep: ctx =>
                {
                    if ((ctx.Step - 1) % probeEvery != 0)
                        return;
                    state ??= new ModelState(ctx.Model);
                    var objective = NetworkObjective.CrossEntropy(ctx.Model, ctx.Input, ctx.Labels, state);
                    var w = objective.Vector.Read();
                    Record(log, ctx.Step - 1, "", Landscape.Measure(objective.Evaluate, w, relative));
                    Record(log, ctx.Step - 1, "_abs", Landscape.Measure(objective.Evaluate, w, Fractions));
                    objective.Restore();
                });
                foreach (var suffix in new[] { "", "_abs" })
                    foreach (var (key, _) in Measures)
                        log.Set($"median_{key}{suffix}", Stats.Median(log.Series(key + suffix).Values));
            });
        }
        return Judge(run, arms.Select(a => a.Lr).Distinct().ToArray(), steps, probeEvery, evalImages, train.Count);
    }

    private static void Record(ArmResult log, long step, string suffix, LandscapeSample s)
    {
        log.Log(step, "loss" + suffix, s.Loss);
        log.Log(step, "grad_norm" + suffix, s.GradientNorm);
        log.Log(step, "loss_min" + suffix, s.LossMin);
        log.Log(step, "loss_max" + suffix, s.LossMax);
        log.Log(step, "loss_range" + suffix, s.LossRange);
        log.Log(step, "delta_min" + suffix, s.DeltaMin);
        log.Log(step, "delta_max" + suffix, s.DeltaMax);
        log.Log(step, "beta_eff" + suffix, s.BetaEffective);
    }

    private static double MedianOf(LabRun run, Kind kind, double lr, string key) => Stats.Mean(run.Of(Arm(kind, lr)).Select(r => r.Scalar("median_" + key)));

    private Finding Judge(LabRun run, double[] lrs, long steps, int probeEvery, int evalImages, int trainCount)
    {
        var report = run.Report;
        report.Heading("Setup").Bullets([
            $"E5's ReLU MLP {string.Join("-", NoisyBn.Widths)} on Fashion-MNIST ({Fmt.N(trainCount)} training images): standard, + BN, and + ℓ1/ℓ2/ℓ∞ batch normalization (x̂ = (x − μ_B)/s_p per unit over the batch, s_p the p-th root of the mean p-th power of |x − μ_B|; p = ∞: the max), each before the ReLU; every arm of a seed from the same weights and data order.",
            $"Plain SGD, batch 128, {Fmt.N(steps)} steps at lr {Fmt.G(MainLr)}" + (lrs.Length > 1 ? " (standard and BN also at lr 0.5)" : "") + $"; test accuracy on {Fmt.N(evalImages)} test images.",
            $"Every {probeEvery} steps, before the update and on that step's batch B_t (training mode, so BN uses B_t's statistics): g = ∇L(w_t; B_t); for η ∈ H, L(η) = L(w_t − ηg; B_t) and Δ(η) = ‖∇L(w_t − ηg; B_t) − g‖₂; "
                + "reported: (a) max − min of L(η), (b) the range of Δ(η) (its max for the verdict), (c) β_eff = max_η Δ(η)/‖ηg‖₂. All parameters (weights, biases, γ, β) move; weights and running statistics are put back after each probe.",
            $"Grids: H = lr × {{{string.Join(", ", Fractions.Select(Fmt.G))}}} (the verdict's), and the same numbers as absolute step sizes η ∈ {{{string.Join(", ", Fractions.Select(Fmt.G))}}} (at lr 0.1: 0.5–4 SGD steps).",
            $"Per seed, the median over probed steps; then mean ± std over {run.Seeds.Count} seeds.",
        ]);
        report.Choice("The step-size grids are ours (literature §2.8): the paper's grid is not available (a recollection of a 0.4× cap is why the first grid stops at 0.4 lr).");
        report.Choice("A ReLU MLP on Fashion-MNIST instead of VGG on CIFAR-10; the ℓp normalization formula is our reconstruction of §3.3 (LpBatchNorm).");
        report.Choice("Gradient predictiveness is summarized by the largest Δ over the grid (the top of the paper's shaded range); the table also gives the smallest.");

        // Fig. 4 analogues: standard vs BN at the main lr.
        var main = new[] { Kinds[0], Kinds[1] };
        var lossChart = new Chart { Title = $"(a) Loss variation along the gradient, lr {Fmt.G(MainLr)}", XLabel = "training step", YLabel = "loss L(w − ηg) over η ∈ H (band), L(w) (line)", LegendOutside = true };
        var deltaChart = new Chart { Title = $"(b) Gradient predictiveness, lr {Fmt.G(MainLr)}", XLabel = "training step", YLabel = "‖∇L(w − ηg) − ∇L(w)‖₂ over η ∈ H", LogY = Axes.Log(main.SelectMany(k => run.Of(Arm(k, MainLr)).SelectMany(r => r.Series("delta_min").Values.Concat(r.Series("delta_max").Values)))) };
        for (int k = 0; k < main.Length; k++)
        {
            var results = run.Of(Arm(main[k], MainLr));
            var (x, loss, _) = Stats.AcrossSeeds(results, "loss");
            var (_, lo, _) = Stats.AcrossSeeds(results, "loss_min");
            var (_, hi, _) = Stats.AcrossSeeds(results, "loss_max");
            lossChart.Add(new Series(main[k].Label, x, loss, lo, hi, Color: k));
            var (dx, dlo, _) = Stats.AcrossSeeds(results, "delta_min");
            var (_, dhi, _) = Stats.AcrossSeeds(results, "delta_max");
            deltaChart.Add(new Series(main[k].Label + " (max; band: min–max)", dx, dhi, dlo, dhi, Color: k));
        }
        report.Heading("Landscape along the gradient");
        report.Plot(lossChart, "loss-variation", "Fig. 4(a) analogue: the band is the range of the loss over the step sizes H (mean over seeds of its min and max); the line is the loss at w_t.");
        report.Plot(deltaChart, "gradient-predictiveness", "Fig. 4(b) analogue: range of the gradient change over H, mean over seeds.");
        var betaChart = new Chart { Title = $"(c) Effective β-smoothness, lr {Fmt.G(MainLr)}", XLabel = "training step", YLabel = "β_eff = max_η Δ(η)/‖ηg‖₂" };
        var trainChart = new Chart
        {
            Title = $"Training loss, lr {Fmt.G(MainLr)}", XLabel = "training step", YLabel = "training cross-entropy (running mean)",
            LogY = Axes.Log(Kinds.SelectMany(k => Stats.AcrossSeeds(run.Of(Arm(k, MainLr)), "train_loss").Mean)),
        };
        for (int k = 0; k < Kinds.Length; k++)
        {
            var results = run.Of(Arm(Kinds[k], MainLr));
            var (x, m, s) = Stats.AcrossSeeds(results, "beta_eff");
            var (tx, tm, ts) = Stats.AcrossSeeds(results, "train_loss");
            // Bands for the two arms of the verdict only: five overlapping bands hide the lines.
            betaChart.Add(k > 1 ? new Series(ChartLabel(Kinds[k]), x, m, Dashed: true, Color: k) : Series.MeanStd(Kinds[k].Label, x, m, s, color: k));
            trainChart.Add(k > 1 ? new Series(ChartLabel(Kinds[k]), tx, tm, Dashed: true, Color: k) : Series.MeanStd(Kinds[k].Label, tx, tm, ts, color: k));
        }
        report.Plot(betaChart, "beta-effective", "Fig. 4(c) analogue: mean ± std over seeds for standard and BN; the ℓp arms (dashed) as means.");
        report.Plot(trainChart, "train-loss");

        foreach (var (suffix, grid) in new[] { ("", "H = lr × {0.05 … 0.4}"), ("_abs", "absolute η ∈ {0.05 … 0.4}") })
        {
            var rows = new List<string[]>();
            foreach (double lr in lrs)
                foreach (var kind in Kinds.Where(k => run.Of(Arm(k, lr)).Length > 0))
                {
                    var results = run.Of(Arm(kind, lr));
                    var cells = new List<string> { Fmt.G(lr), kind.Label };
                    foreach (var (key, _) in Measures)
                    {
                        double value = MedianOf(run, kind, lr, key + suffix), baseline = MedianOf(run, Kinds[0], lr, key + suffix);
                        cells.Add(Fmt.G(value) + (kind == Kinds[0] ? "" : $" ({Fmt.G(baseline / value)}×)"));
                    }
                    cells.Add(Fmt.G(Stats.Mean(results.Select(r => Stats.Median(r.Series("delta_min" + suffix).Values)))));
                    cells.Add(Fmt.PctMeanStd(results.Select(r => r.Scalar("final_test_accuracy"))));
                    rows.Add([.. cells]);
                }
            report.Heading($"Medians over training, grid {grid}")
                .Text("Each cell: the median over probed steps, mean over seeds; in brackets, how many times smaller than the standard network at the same lr.")
                .Table(["lr", "arm", .. Measures.Select(m => m.Label), "min gradient change Δ", "final test accuracy"], rows);
        }

        var ratios = Measures.Select(m => MedianOf(run, Kinds[0], MainLr, m.Key) / MedianOf(run, Kinds[1], MainLr, m.Key)).ToArray();
        var checks = Measures.Select((m, i) => new Check($"{m.Label}: BN's median below the standard network's (lr {Fmt.G(MainLr)})",
            $"standard {Fmt.G(MedianOf(run, Kinds[0], MainLr, m.Key))}, BN {Fmt.G(MedianOf(run, Kinds[1], MainLr, m.Key))} ({Fmt.G(ratios[i])}×)", ratios[i] > 1)).ToList();
        int twice = ratios.Count(r => r >= 2);
        checks.Add(new Check("≥ 2× smaller with BN on at least two of the three", $"{twice} of 3 (ratios {string.Join(", ", ratios.Select(r => Fmt.G(r) + "×"))})", twice >= 2));
        string ours = $"lr {Fmt.G(MainLr)}, standard/BN ratio of the medians: loss range {Fmt.G(ratios[0])}×, gradient change {Fmt.G(ratios[1])}×, β_eff {Fmt.G(ratios[2])}×; "
            + $"test accuracy BN {Fmt.PctMeanStd(run.Of(Arm(Kinds[1], MainLr)).Select(r => r.Scalar("final_test_accuracy")))}, standard {Fmt.PctMeanStd(run.Of(Arm(Kinds[0], MainLr)).Select(r => r.Scalar("final_test_accuracy")))}";
        return Finding.FromChecks(ours, [.. checks]);
    }
}

using NormLab.Lab.Measures;
using NormLab.Lab.Reporting;

namespace NormLab.Lab.Experiments;

/// <summary>
/// E5: Santurkar et al.'s test of the internal-covariate-shift explanation (2018, §2.1, Fig. 2): noise whose distribution
/// is re-sampled at every step, added after BN ("noisy BN"), against BN, the standard network, and the standard network
/// with the same noise. A ReLU MLP on Fashion-MNIST at the paper's two learning rates.
/// </summary>
public sealed class NoisyBn : Experiment
{
    /// <inheritdoc/>
    public override string Name => "noisy-bn";

    /// <inheritdoc/>
    public override int Order => 4;

    /// <inheritdoc/>
    public override string Title => "E5: BN still helps when noise keeps shifting its outputs' distribution (Santurkar et al. 2018, §2.1, Fig. 2)";

    /// <inheritdoc/>
    public override string Claim =>
        "Distributional stability of layer inputs is not what makes BN work: with noise of a per-step re-sampled distribution after BN (\"noisy\" BN) "
        + "training is almost as good as with BN and better than without, although the noisy layer's distribution moves more than the standard network's; "
        + "the same noise in the standard network \"prevents it from training entirely\".";

    /// <inheritdoc/>
    public override string Published =>
        "VGG on CIFAR-10 at lr 0.1 and 0.5 (Fig. 2, quoted by secondary notes): \"the performance difference between models with BatchNorm layers, and 'noisy' BatchNorm layers is almost non-existent\"; "
        + "both perform much better than standard networks; the noisy BN network's activation histograms are \"less stable\" than the standard network's; "
        + "\"adding the same amount of noise to the activations of the standard (non-BatchNorm) network prevents it from training entirely\". No numbers in the text.";

    /// <inheritdoc/>
    public override string Criterion =>
        "At each learning rate where the standard network is stable (no seed diverges): |final test accuracy of noisy BN − BN| ≤ 2 points; BN and noisy BN both above standard; "
        + "the drift (E2's measure: Σ|Δ median| + |Δ(p85 − p15)| over the final p85 − p15, mean over 3 units and the seeds) of noisy BN's layer input larger than the standard network's; "
        + "standard + noise near chance (≤ 15 %) or clearly worst (≥ 2 points below every other arm).";

    internal sealed record Kind(string Key, string Label, Func<double, double, ProbeNets.After> After, bool HiddenBias);

    internal static readonly Kind Standard = new("standard", "standard", (_, _) => ProbeNets.Norm(Models.NormKind.None), true);
    internal static readonly Kind Bn = new("bn", "+ BN", (_, _) => ProbeNets.Norm(Models.NormKind.Batch), false);
    internal static readonly Kind NoisyBatchNorm = new("noisy-bn", "+ noisy BN", ProbeNets.NoisyBatchNorm, false);
    internal static readonly Kind StandardNoise = new("standard+noise", "standard + same noise", ProbeNets.Noise, true);
    private static readonly Kind[] Kinds = [Standard, Bn, NoisyBatchNorm, StandardNoise];

    internal static readonly int[] Widths = [784, 100, 100, 100, 10];
    private const double MainA = 1, MainB = 2;
    private static readonly int[] Units = [0, 1, 2];

    private sealed record ArmSpec(Kind Kind, double Lr, double A, double B)
    {
        public string Name => Kind.Key + " lr" + Fmt.G(Lr) + (A == MainA && B == MainB ? "" : $" a{Fmt.G(A)} b{Fmt.G(B)}");
    }

    /// <inheritdoc/>
    public override Finding Run(LabRun run)
    {
        long steps = run.Pick(60, 3000, 15_000);
        int evalEvery = run.Pick(30, 250, 500), probeEvery = run.Pick(20, 50, 100);
        int evalImages = run.Pick(500, 2000, 10_000), probeImages = run.Pick(200, 500, 1000);
        double[] lrs = run.Budget == Budget.Tiny ? [0.1] : [0.1, 0.5];
        var sweep = run.Budget == Budget.Tiny ? [] : new[] { (0.5, 1.25), (2.0, 4.0) };
        var arms = lrs.SelectMany(lr => Kinds.Select(k => new ArmSpec(k, lr, MainA, MainB))).ToList();
        foreach (var (a, b) in sweep)
            arms.AddRange([new ArmSpec(NoisyBatchNorm, 0.1, a, b), new ArmSpec(StandardNoise, 0.1, a, b)]);
        run.Plan(arms.Count * run.Seeds.Count);

        var (train, test) = run.Data.Fashion();
        var (probe, _) = LabData.Batch(test, probeImages, flat: true);
        foreach (var arm in arms)
        {
            var setup = new TrainSetup
            {
                Build = rng => ProbeNets.Mlp(rng, Widths, arm.Kind.After(arm.A, arm.B), arm.Kind.HiddenBias),
                Train = train, Test = test, Flat = true, Lr = arm.Lr, Batch = 128, Steps = steps, EvalEvery = evalEvery, EvalImages = evalImages,
            };
            bool probed = arm.A == MainA && arm.B == MainB;
            run.ArmAllSeeds(arm.Name, (log, seed, progress) =>
            {
                var probeLayer = probed ? new LayerProbe() : null;
                Training.Run(setup, seed, log, progress, beforeStep: ctx =>
                {
                    if (probeLayer is null || (ctx.Step - 1) % probeEvery != 0)
                        return;
                    var input = probeLayer.InputOfLastReLU(ctx.Model, probe);
                    long at = ctx.Step - 1;
                    foreach (int u in Units)
                    {
                        var (p15, p50, p85) = Drift.Percentiles(input, probe.Dim(0), Widths[^2], u);
                        log.Log(at, $"unit{u}_p15", p15);
                        log.Log(at, $"unit{u}_p50", p50);
                        log.Log(at, $"unit{u}_p85", p85);
                    }
                    var column = Enumerable.Range(0, probe.Dim(0)).Select(i => (double)input[i * Widths[^2]]).ToArray();
                    log.Log(at, "unit0_p5", Stats.Percentile(column, 5));
                    log.Log(at, "unit0_p95", Stats.Percentile(column, 95));
                });
                if (probed)
                    foreach (int u in Units)
                        log.Set($"unit{u}_drift", Drift.Of(log.Series($"unit{u}_p15").Values, log.Series($"unit{u}_p50").Values, log.Series($"unit{u}_p85").Values));
            });
        }
        return Judge(run, lrs, sweep, steps, evalEvery, probeEvery, probeImages, evalImages, train.Count);
    }

    /// <summary>
    /// The input of the last hidden ReLU on a fixed batch in training mode (noise included, as the network sees it);
    /// weights, running statistics and noise generators are put back, so the probe does not change training.
    /// </summary>
    private sealed class LayerProbe
    {
        private ModelState? _state;
        private NoiseStreams? _noise;
        private float[] _copy = [];

        public float[] InputOfLastReLU(Sequential model, Tensor batch)
        {
            _state ??= new ModelState(model);
            _noise ??= new NoiseStreams(model);
            _state.Save();
            _noise.Save();
            var relu = model.Modules().OfType<ReLU>().Last();
            relu.ForwardHook = (_, x, _) => _copy = x.ToArray();
            model.Forward(batch);
            relu.ForwardHook = null;
            _noise.Restore();
            _state.Restore();
            return _copy;
        }
    }

    private static string ArmName(Kind kind, double lr) => new ArmSpec(kind, lr, MainA, MainB).Name;

    private static double[] Final(LabRun run, string arm) => run.Of(arm).Select(r => r.Scalar("final_test_accuracy")).ToArray();

    private static double DriftOf(LabRun run, string arm) => Stats.Mean(run.Of(arm).SelectMany(r => Units.Select(u => r.Scalar($"unit{u}_drift"))));

    private Finding Judge(LabRun run, double[] lrs, (double, double)[] sweep, long steps, int evalEvery, int probeEvery, int probeImages, int evalImages, int trainCount)
    {
        var report = run.Report;
        report.Heading("Setup").Bullets([
            $"ReLU MLP {string.Join("-", Widths)} on Fashion-MNIST ({Fmt.N(trainCount)} training images, grey levels in [0, 1]); PyTorch's default initialization, every arm of a seed from the same weights and data order.",
            "Arms: standard (Linear + bias → ReLU); + BN (Linear → BN → ReLU); + noisy BN (Linear → BN → noise → ReLU); standard + the same noise (Linear + bias → noise → ReLU, the very same noise numbers as the noisy BN arm).",
            $"Noise (ours, literature §2.8): at every training step and for every unit j, μ_j ~ U(−a, a), s_j ~ U(1, b), and each sample's value gets n ~ N(μ_j, s_j²) added; a = {Fmt.G(MainA)}, b = {Fmt.G(MainB)}; training only (evaluation is noise-free)."
                + (sweep.Length > 0 ? $" Also (a, b) = {string.Join(", ", sweep.Select(s => $"({Fmt.G(s.Item1)}, {Fmt.G(s.Item2)})"))} at lr 0.1." : ""),
            $"Plain SGD, batch 128, {Fmt.N(steps)} steps, lr {string.Join(" and ", lrs.Select(Fmt.G))}; test accuracy on {Fmt.N(evalImages)} test images every {evalEvery} steps (eval mode).",
            $"Activation distribution: the input of the last hidden layer's ReLU (after BN / noise) on a fixed batch of {probeImages} test images in training mode, every {probeEvery} steps; percentiles of units {string.Join(", ", Units)}.",
            $"{run.Seeds.Count} seeds per arm.",
        ]);
        report.Choice("The noise distribution (additive, μ ~ U(−1, 1), s ~ U(1, 2) per unit and step) is ours: the paper's Appendix A values were not available (literature §2.8). The sweep over (a, b) shows how much the conclusion depends on it.");
        report.Choice("A ReLU MLP on Fashion-MNIST instead of VGG on CIFAR-10 (two-core budget); batch 128, plain SGD without momentum or weight decay, PyTorch's initialization and BN defaults.");
        report.Choice("Accuracy is compared on the test set in eval mode (noise-free); the training curves include the noise.");

        var rows = new List<string[]>();
        var checks = new List<Check>();
        foreach (double lr in lrs)
        {
            var accChart = new Chart { Title = $"Training accuracy, lr {Fmt.G(lr)}", XLabel = "training step", YLabel = "training accuracy (%, running mean)" };
            var lossChart = new Chart
            {
                Title = $"Training loss, lr {Fmt.G(lr)}", XLabel = "training step", YLabel = "training cross-entropy (running mean)",
                LogY = Axes.Log(Kinds.SelectMany(k => Stats.AcrossSeeds(run.Of(ArmName(k, lr)), "train_loss").Mean)),
            };
            for (int k = 0; k < Kinds.Length; k++)
            {
                var results = run.Of(ArmName(Kinds[k], lr));
                var (x, m, s) = Stats.AcrossSeeds(results, "train_accuracy");
                accChart.Add(Series.MeanStd(Kinds[k].Label, x, m.Select(v => 100 * v).ToArray(), s.Select(v => 100 * v).ToArray(), color: k));
                var (lx, lm, ls) = Stats.AcrossSeeds(results, "train_loss");
                lossChart.Add(Series.MeanStd(Kinds[k].Label, lx, lm, ls, color: k));
                rows.Add([Fmt.G(lr), Kinds[k].Label, Fmt.PctMeanStd(results.Select(r => r.Last("train_accuracy"))), Fmt.PctMeanStd(Final(run, ArmName(Kinds[k], lr))),
                    Fmt.F(DriftOf(run, ArmName(Kinds[k], lr)), 1), $"{results.Count(r => r.Scalar("diverged") == 1)} / {results.Count(r => r.Scalar("final_test_accuracy") <= 0.15)}"]);
            }
            accChart.HorizontalLines.Add((10, "chance"));
            report.Plot(accChart, $"train-accuracy-lr{Fmt.G(lr)}", $"Fig. 2 analogue: training accuracy at lr {Fmt.G(lr)}, mean ± std over seeds (running mean since the previous evaluation, noise included).");
            report.Plot(lossChart, $"train-loss-lr{Fmt.G(lr)}");
            checks.AddRange(ChecksAt(run, lr));
        }
        report.Heading("Results").Table(["lr", "arm", "final training accuracy (noise on)", "final test accuracy", "drift of the ReLU input", "seeds diverged (non-finite loss) / at chance (≤ 15 %)"], rows);

        // Percentiles over time (the paper's histograms) for each arm at lr 0.1, first seed, unit 0.
        report.Heading("Activation distribution over training");
        foreach (var kind in Kinds)
        {
            var r = run.Of(ArmName(kind, lrs[0]))[0];
            var chart = new Chart { Title = $"Input of a last-layer ReLU, {kind.Label} (lr {Fmt.G(lrs[0])})", XLabel = "training step", YLabel = "ReLU input (unit 0)", LegendOutside = true };
            foreach (var (p, dashed) in new[] { ("p95", true), ("p85", false), ("p50", false), ("p15", false), ("p5", true) })
            {
                var (x, y) = r.Series($"unit0_{p}");
                chart.Add(new Series($"{p[1..]}th percentile", x, y, Dashed: dashed, Color: p == "p50" ? 0 : p is "p15" or "p85" ? 1 : 2));
            }
            report.Plot(chart, $"distribution-{kind.Key}", $"{kind.Label}: 5/15/50/85/95th percentiles of one unit's ReLU input over {probeImages} held-out images (training mode), seed {r.Seed}.");
        }

        if (sweep.Length > 0)
        {
            var sweepRows = new List<string[]> { new[] { Fmt.G(MainA), Fmt.G(MainB), Fmt.PctMeanStd(Final(run, ArmName(NoisyBatchNorm, 0.1))), Fmt.PctMeanStd(Final(run, ArmName(StandardNoise, 0.1))) } };
            foreach (var (a, b) in sweep)
                sweepRows.Add([Fmt.G(a), Fmt.G(b), Fmt.PctMeanStd(Final(run, new ArmSpec(NoisyBatchNorm, 0.1, a, b).Name)), Fmt.PctMeanStd(Final(run, new ArmSpec(StandardNoise, 0.1, a, b).Name))]);
            report.Heading("Noise strength (lr 0.1)").Text($"BN alone: {Fmt.PctMeanStd(Final(run, ArmName(Bn, 0.1)))}; standard alone: {Fmt.PctMeanStd(Final(run, ArmName(Standard, 0.1)))} (final test accuracy).")
                .Table(["a (means in ±a)", "b (scales in [1, b])", "noisy BN", "standard + same noise"], sweepRows);
        }

        double lr0 = lrs[0];
        string ours = $"lr {Fmt.G(lr0)}: test accuracy BN {Fmt.PctMeanStd(Final(run, ArmName(Bn, lr0)))}, noisy BN {Fmt.PctMeanStd(Final(run, ArmName(NoisyBatchNorm, lr0)))}, "
            + $"standard {Fmt.PctMeanStd(Final(run, ArmName(Standard, lr0)))}, standard + noise {Fmt.PctMeanStd(Final(run, ArmName(StandardNoise, lr0)))}; "
            + $"drift noisy BN {Fmt.F(DriftOf(run, ArmName(NoisyBatchNorm, lr0)), 1)} vs standard {Fmt.F(DriftOf(run, ArmName(Standard, lr0)), 1)}";
        return Finding.FromChecks(ours, [.. checks]);
    }

    private static IEnumerable<Check> ChecksAt(LabRun run, double lr)
    {
        string at = $"lr {Fmt.G(lr)}: ";
        if (run.Of(ArmName(Standard, lr)).Any(r => r.Scalar("diverged") == 1))
        {
            // Not a check: the criterion applies only where the standard network is stable.
            run.Report.Text($"At lr {Fmt.G(lr)} the standard network diverged in at least one seed, so the criterion is not applied there (§6: \"where stable\").");
            yield break;
        }
        double bn = Stats.Mean(Final(run, ArmName(Bn, lr))), noisy = Stats.Mean(Final(run, ArmName(NoisyBatchNorm, lr)));
        double standard = Stats.Mean(Final(run, ArmName(Standard, lr))), noise = Stats.Mean(Final(run, ArmName(StandardNoise, lr)));
        double gap = 100 * Math.Abs(noisy - bn);
        yield return new Check(at + "|noisy BN − BN| ≤ 2 points (final test accuracy)", $"{Fmt.Pct(noisy)} vs {Fmt.Pct(bn)} ({Fmt.F(gap, 2)} points)", gap <= 2);
        yield return new Check(at + "BN and noisy BN both above standard", $"{Fmt.Pct(bn)}, {Fmt.Pct(noisy)} vs {Fmt.Pct(standard)}", bn > standard && noisy > standard);
        double noisyDrift = DriftOf(run, ArmName(NoisyBatchNorm, lr)), standardDrift = DriftOf(run, ArmName(Standard, lr));
        yield return new Check(at + "drift of noisy BN's layer input > standard's", $"{Fmt.F(noisyDrift, 2)} vs {Fmt.F(standardDrift, 2)}", noisyDrift > standardDrift);
        double others = new[] { bn, noisy, standard }.Min();
        bool nearChance = noise <= 0.15, clearlyWorst = others - noise >= 0.02;
        yield return new Check(at + "standard + noise near chance (≤ 15 %) or ≥ 2 points below every other arm",
            $"{Fmt.Pct(noise)}; worst of the others {Fmt.Pct(others)} ({Fmt.F(100 * (others - noise), 2)} points)", nearChance || clearlyWorst);
    }
}

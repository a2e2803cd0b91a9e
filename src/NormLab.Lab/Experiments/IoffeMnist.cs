using NormLab.Data;
using NormLab.Lab.Measures;
using NormLab.Lab.Reporting;
using NormLab.Models;

namespace NormLab.Lab.Experiments;

/// <summary>
/// E1 + E2: Ioffe &amp; Szegedy's MNIST experiment (§4.1, Figure 1): a 784-100-100-100-10 sigmoid MLP with and without BN
/// before each sigmoid; test accuracy over training, and the 15/50/85th percentiles of one sigmoid's input over training.
/// </summary>
public sealed class IoffeMnist : Experiment
{
    /// <inheritdoc/>
    public override string Name => "ioffe-mnist";

    /// <inheritdoc/>
    public override int Order => 1;

    /// <inheritdoc/>
    public override string Title => "E1 + E2: BN speeds up a sigmoid MLP and stabilizes its sigmoid inputs (Ioffe & Szegedy 2015, Figure 1)";

    /// <inheritdoc/>
    public override string Claim => "BN \"helps the network train faster and achieve higher accuracy\", and the distribution of a sigmoid's input is \"much more stable\" with BN.";

    /// <inheritdoc/>
    public override string Published =>
        "Fig. 1(a), full MNIST, 50k steps: the BN curve is above the baseline throughout (no numbers in the text; a third-party reproduction: BN 97.8–98.0 % vs 97.5–97.7 %). Fig. 1(b,c): the baseline's percentiles drift in mean and spread, BN's barely move.";

    /// <inheritdoc/>
    public override string Criterion =>
        "E1: BN's accuracy ≥ the baseline's at ≥ 90 % of evaluation points; BN reaches the baseline's final accuracy in fewer steps; the final gap is > 0 and larger than the seeds' std. "
        + "E2: the drift (Σ|Δ median| + |Δ(p85 − p15)|, over the final p85 − p15) is more than 2× larger for the baseline.";

    private sealed record Pair(string Key, string Label, bool Fashion, double Lr, double InitStd);

    /// <inheritdoc/>
    public override Finding Run(LabRun run)
    {
        long steps = run.Pick(300, 10_000, 50_000);
        int evalEvery = run.Pick(50, 500, 500), probeEvery = run.Pick(25, 100, 100), probeImages = run.Pick(200, 1000, 1000);
        int preciseImages = run.Pick(600, 6000, 6000);
        // The main comparison (lr 0.5, σ 0.1 on MNIST-10k, as the third-party reproduction), then the variations §6 asks for.
        var pairs = new List<Pair> { new("main", "MNIST-10k, lr 0.5, σ 0.1", false, 0.5, 0.1) };
        if (run.Budget != Budget.Tiny)
        {
            pairs.Add(new("lr0.1", "MNIST-10k, lr 0.1, σ 0.1", false, 0.1, 0.1));
            pairs.Add(new("init0.01", "MNIST-10k, lr 0.5, σ 0.01", false, 0.5, 0.01));
            pairs.Add(new("fashion", "Fashion-MNIST, lr 0.5, σ 0.1", true, 0.5, 0.1));
        }
        run.Plan(pairs.Count * 2 * run.Seeds.Count);
        var units = new[] { 0, 1, 2 };
        foreach (var pair in pairs)
            foreach (var bn in new[] { false, true })
            {
                var (train, test) = pair.Fashion ? run.Data.Fashion() : run.Data.Mnist(binarize: true);
                var (probe, _) = LabData.Batch(test, probeImages, flat: true);
                var setup = new TrainSetup
                {
                    Build = rng => Zoo.IoffeMlp(bn ? NormKind.Batch : NormKind.None, NormPosition.Before, pair.InitStd, rng),
                    Train = train, Test = test, Flat = true, Lr = pair.Lr, Batch = 60, Steps = steps, EvalEvery = evalEvery,
                };
                run.ArmAllSeeds(Arm(pair.Key, bn), (log, seed, progress) =>
                {
                    ModelState? state = null;
                    Sigmoid? last = null;
                    Training.Run(setup, seed, log, progress,
                        beforeStep: ctx =>
                        {
                            if (pair.Key != "main" || (ctx.Step - 1) % probeEvery != 0)
                                return;
                            // Fig. 1(b,c): the input of the last hidden layer's sigmoid on a fixed held-out batch, in training
                            // mode (N_BN^tr); the model is put back exactly, so the probe does not change training.
                            state ??= new ModelState(ctx.Model);
                            last ??= ctx.Model.Modules().OfType<Sigmoid>().Last();
                            state.Save();
                            Tensor? input = null;
                            last.ForwardHook = (_, x, _) => input = x;
                            ctx.Model.Forward(probe);
                            last.ForwardHook = null;
                            state.Restore();
                            foreach (int u in units)
                            {
                                var (p15, p50, p85) = Drift.Percentiles(input!.Span, input.Dim(0), input.Dim(1), u);
                                log.Log(ctx.Step - 1, $"unit{u}_p15", p15);
                                log.Log(ctx.Step - 1, $"unit{u}_p50", p50);
                                log.Log(ctx.Step - 1, $"unit{u}_p85", p85);
                            }
                        },
                        afterEval: (step, model) =>
                        {
                            if (bn)
                                log.Log(step, "precise_bn_test_accuracy", Batches.EvaluatePrecise(model, train, test, flat: true, preciseImages).Accuracy);
                        });
                    if (pair.Key == "main")
                        foreach (int u in units)
                            log.Set($"unit{u}_drift", Drift.Of(log.Series($"unit{u}_p15").Values, log.Series($"unit{u}_p50").Values, log.Series($"unit{u}_p85").Values));
                });
            }

        return Judge(run, pairs, steps, evalEvery, units);
    }

    private static string Arm(string pair, bool bn) => $"{pair} {(bn ? "bn" : "baseline")}";

    private Finding Judge(LabRun run, List<Pair> pairs, long steps, int evalEvery, int[] units)
    {
        var report = run.Report;
        report.Heading("Setup").Bullets([
            $"784-100-100-100-10 MLP, sigmoid, weights N(0, σ²), biases 0; BN (PyTorch defaults: ε 1e-5, momentum 0.1) before each sigmoid and no hidden bias in the BN net.",
            $"Inputs binarized at 0.5 (MNIST-10k: {Fmt.N(run.Data.Mnist(true).Train.Count)} training, {Fmt.N(run.Data.Mnist(true).Test.Count)} test digits); plain SGD, batch 60, {Fmt.N(steps)} steps; test accuracy every {evalEvery} steps with BN in eval mode (running statistics); PreciseBN accuracy logged beside it.",
            $"Percentiles: 15/50/85th of the last hidden layer's sigmoid input (units {string.Join(", ", units)}) over a fixed batch of held-out test images, every few steps, in training mode (Fig. 1(b,c)).",
            $"{run.Seeds.Count} seeds per arm; both arms of a seed draw the same data order.",
        ]);
        report.Choice("Learning rate 0.5 and initialization σ = 0.1 follow the third-party reproduction; lr 0.1 and σ = 0.01 are extra arms. The paper gives neither.");
        report.Choice("BN ε and momentum are PyTorch's defaults (1e-5, 0.1); the paper does not give them.");
        report.Choice("MNIST-10k (8,000 training digits) instead of the full 60,000; Fashion-MNIST arms use grey-level inputs (binarizing clothing destroys it).");

        // Accuracy curves.
        var rows = new List<string[]>();
        foreach (var pair in pairs)
        {
            var chart = new Chart { Title = $"Test accuracy, {pair.Label}", XLabel = "training step", YLabel = "test accuracy (%)" };
            foreach (var (bn, i) in new[] { (false, 0), (true, 1) })
            {
                var (x, m, s) = Stats.AcrossSeeds(run.Of(Arm(pair.Key, bn)), "test_accuracy");
                chart.Add(Series.MeanStd(bn ? "with BN" : "without BN", x, m.Select(v => 100 * v).ToArray(), s.Select(v => 100 * v).ToArray(), color: i));
                if (bn)
                {
                    var (px, pm, ps) = Stats.AcrossSeeds(run.Of(Arm(pair.Key, bn)), "precise_bn_test_accuracy");
                    chart.Add(Series.MeanStd("with BN, PreciseBN statistics", px, pm.Select(v => 100 * v).ToArray(), ps.Select(v => 100 * v).ToArray(), dashed: true, color: i));
                }
            }
            report.Plot(chart, $"accuracy-{pair.Key}", pair.Key == "main" ? "Fig. 1(a): test accuracy over training, mean ± std over seeds." : null);
            var baseFinal = run.Of(Arm(pair.Key, false)).Select(r => r.Scalar("final_test_accuracy"));
            var bnFinal = run.Of(Arm(pair.Key, true)).Select(r => r.Scalar("final_test_accuracy"));
            var precise = run.Of(Arm(pair.Key, true)).Select(r => r.Last("precise_bn_test_accuracy"));
            rows.Add([pair.Label, Fmt.PctMeanStd(baseFinal), Fmt.PctMeanStd(bnFinal), Fmt.PctMeanStd(precise)]);
        }
        report.Heading("Results").Table(["setting", "without BN", "with BN (running statistics)", "with BN (PreciseBN)"], rows);

        // E1 criterion on the main pair.
        var (steps0, baseMean, _) = Stats.AcrossSeeds(run.Of(Arm("main", false)), "test_accuracy");
        var (_, bnMean, _) = Stats.AcrossSeeds(run.Of(Arm("main", true)), "test_accuracy");
        int points = Math.Min(baseMean.Length, bnMean.Length);
        int ahead = Enumerable.Range(0, points).Count(k => bnMean[k] >= baseMean[k]);
        double aheadFraction = (double)ahead / points;
        double baseFinalMean = baseMean[points - 1];
        double StepsTo(double[] curve, double target) => Enumerable.Range(0, points).Where(k => curve[k] >= target).Select(k => steps0[k]).DefaultIfEmpty(double.NaN).First();
        double baseSteps = StepsTo(baseMean, baseFinalMean), bnSteps = StepsTo(bnMean, baseFinalMean);
        var gaps = run.Seeds.Select(seed => run.Of(Arm("main", true)).First(r => r.Seed == seed).Scalar("final_test_accuracy")
            - run.Of(Arm("main", false)).First(r => r.Seed == seed).Scalar("final_test_accuracy")).ToArray();
        double gap = Stats.Mean(gaps);
        double seedStd = Math.Max(Stats.Std(run.Of(Arm("main", false)).Select(r => r.Scalar("final_test_accuracy"))),
            Stats.Std(run.Of(Arm("main", true)).Select(r => r.Scalar("final_test_accuracy"))));

        // E2: percentiles of unit 0, first seed, as in Fig. 1(b,c); drift over every unit and seed.
        foreach (var bn in new[] { false, true })
        {
            var r = run.Of(Arm("main", bn))[0];
            var chart = new Chart { Title = $"Input of a last-layer sigmoid, {(bn ? "with BN (γx̂ + β)" : "without BN (Wu + b)")}", XLabel = "training step", YLabel = "sigmoid input" };
            foreach (var (p, dashed) in new[] { ("p85", true), ("p50", false), ("p15", true) })
            {
                var (x, y) = r.Series($"unit0_{p}");
                chart.Add(new Series($"{p[1..]}th percentile", x, y, Dashed: dashed, Color: 0));
            }
            report.Plot(chart, $"percentiles-{(bn ? "bn" : "baseline")}", $"Fig. 1({(bn ? "c" : "b")}): 15/50/85th percentiles of one sigmoid's input, seed {r.Seed}, unit 0.");
        }
        double DriftOf(bool bn) => Stats.Mean(run.Of(Arm("main", bn)).SelectMany(r => units.Select(u => r.Scalar($"unit{u}_drift"))));
        double baseDrift = DriftOf(false), bnDrift = DriftOf(true), driftRatio = baseDrift / bnDrift;
        report.Heading("Distribution drift (E2)").Table(["arm", "drift (mean over units and seeds)"],
            [["without BN", Fmt.F(baseDrift, 2)], ["with BN", Fmt.F(bnDrift, 2)], ["ratio", Fmt.F(driftRatio, 2) + "×"]]);

        string speedup = double.IsFinite(bnSteps) ? Fmt.F(baseSteps / bnSteps, 1) + "×" : "never";
        string reach = double.IsFinite(bnSteps) ? $"BN reaches the baseline's final accuracy {speedup} sooner" : "BN's mean curve never reaches the baseline's final accuracy";
        var checks = new[]
        {
            new Check("BN ≥ baseline at ≥ 90 % of evaluation points", $"{ahead} of {points} ({Fmt.Pct(aheadFraction, 0)})", aheadFraction >= 0.9),
            new Check("BN reaches the baseline's final accuracy in fewer steps",
                $"baseline {Fmt.N((long)baseSteps)} steps to {Fmt.Pct(baseFinalMean)}, BN {(double.IsFinite(bnSteps) ? Fmt.N((long)bnSteps) : "never")} ({speedup} fewer)",
                double.IsFinite(bnSteps) && bnSteps < baseSteps),
            new Check("final gap > 0 and > the seeds' std", $"gap {Fmt.F(100 * gap, 2)} points, std {Fmt.F(100 * seedStd, 2)} points", gap > 0 && gap > seedStd),
            new Check("E2: baseline's drift > 2× BN's", $"{Fmt.F(baseDrift, 2)} vs {Fmt.F(bnDrift, 2)} ({Fmt.F(driftRatio, 2)}×)", driftRatio > 2),
        };
        string ours = $"final test accuracy {Fmt.PctMeanStd(run.Of(Arm("main", true)).Select(r => r.Scalar("final_test_accuracy")))} with BN vs "
            + $"{Fmt.PctMeanStd(run.Of(Arm("main", false)).Select(r => r.Scalar("final_test_accuracy")))} without ({Fmt.N(steps)} steps, MNIST-10k); "
            + $"at step {Fmt.N((long)steps0[0])} {Fmt.Pct(bnMean[0], 1)} vs {Fmt.Pct(baseMean[0], 1)}; {reach}; drift {Fmt.F(driftRatio, 1)}× smaller with BN";
        return Finding.FromChecks(ours, checks);
    }
}

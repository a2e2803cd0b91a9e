using NormLab.Lab.Measures;
using NormLab.Lab.Reporting;

namespace NormLab.Lab.Experiments;

/// <summary>
/// E9 (Wu &amp; Johnson 2021): the same late checkpoints of a BN network evaluated with exponential-moving-average
/// statistics (momentum 0.1, 0.01, or the cumulative average), with PreciseBN statistics from 100 to 10,000 training
/// images, and with the test batch's own statistics.
/// </summary>
public sealed class PreciseBn : Experiment
{
    private const double LrAt32 = 0.025;
    private static readonly double?[] Momenta = [0.1, 0.01, null];

    /// <inheritdoc/>
    public override string Name => "precise-bn";

    /// <inheritdoc/>
    public override int Order => 8;

    /// <inheritdoc/>
    public override string Title => "E9: running averages vs PreciseBN vs batch statistics at test time (Wu & Johnson 2021)";

    /// <inheritdoc/>
    public override string Claim =>
        "Population statistics re-estimated after training with the weights fixed (PreciseBN) evaluate more accurately and more stably than BN's exponential moving averages, and 10³–10⁴ samples suffice.";

    /// <inheritdoc/>
    public override string Published =>
        "Wu & Johnson 2021 (ResNet-50, ImageNet; via two reviewers' summaries): with batch 8192 and EMA momentum 0.1 the validation results vary strongly across epochs, PreciseBN is better and more stable; PreciseBN needs only 10³–10⁴ samples for near-optimal results; with small normalization batches, mini-batch statistics at test time reduce the train/test inconsistency.";

    /// <inheritdoc/>
    public override string Criterion =>
        "Averaged over the settings (batch × EMA momentum), PreciseBN with 10⁴ samples is at least as accurate as EMA over the late checkpoints, "
        + "its accuracy varies less across those checkpoints (std over checkpoints, mean over seeds and settings), "
        + "and it saturates by 10⁴ samples: the mean gain from 3·10³ to 10⁴ samples is at most 0.2 points in absolute value.";

    private static string Ema(double? momentum) => momentum is { } m ? $"ema_{Fmt.G(m)}_accuracy" : "ema_cumulative_accuracy";

    private static string EmaLabel(double? momentum) => momentum is { } m ? $"EMA, momentum {Fmt.G(m)}" : "cumulative average";

    private static string Precise(int images) => $"precise_{images}_accuracy";

    /// <inheritdoc/>
    public override Finding Run(LabRun run)
    {
        int[] batches = run.Pick<int[]>([8, 32], [8, 512], [8, 512]);
        long examples = run.Pick(1024L, 60_000L, 600_000L);
        int evaluations = run.Pick(5, 20, 20);
        int[] counts = run.Pick<int[]>([100, 300], [100, 300, 1000, 3000, 10_000], [100, 300, 1000, 3000, 10_000]);
        int testImages = run.Pick(300, 5000, 10_000);
        const double late = 0.8;
        var (train, test) = run.Data.Fashion();
        run.Plan(batches.Length * run.Seeds.Count);
        foreach (int b in batches)
        {
            long steps = examples / b;
            var setup = new TrainSetup
            {
                Build = rng => NarrowCnn.Build(c => new BatchNorm2d(c, momentum: Momenta[0]), rng),
                Train = train, Test = test, Batch = b, Steps = steps, Lr = LrAt32 * Math.Sqrt(b / 32.0), Momentum = 0.9,
                EvalEvery = (int)Math.Max(1, steps / evaluations), EvalImages = testImages,
            };
            run.ArmAllSeeds(Arm(b), (log, seed, progress) =>
            {
                EmaStatistics[]? trackers = null;
                ModelState? state = null;
                Training.Run(setup, seed, log, progress,
                    beforeStep: ctx =>
                    {
                        // The other momenta's averages, from the same training forwards as the layers' own.
                        trackers ??= Momenta.Skip(1).Select(m => new EmaStatistics(ctx.Model, m)).ToArray();
                        foreach (var t in trackers)
                            t.Active = true;
                    },
                    afterEval: (step, model) =>
                    {
                        foreach (var t in trackers!)
                            t.Active = false;
                        if (step < late * steps)
                            return;
                        state ??= new ModelState(model);
                        state.Save();
                        log.Log(step, Ema(Momenta[0]), log.Rows[step]["test_accuracy"]);
                        foreach (var t in trackers)
                        {
                            t.Apply();
                            log.Log(step, Ema(t.Momentum), Training.Evaluate(model, test, flat: false, testImages).Accuracy);
                            state.Restore();
                        }
                        foreach (int n in counts)
                            log.Log(step, Precise(n), Batches.EvaluatePrecise(model, train, test, flat: false, n, batch: Math.Min(b, 100), evalImages: testImages, state: state).Accuracy);
                        // Batch statistics at test time: test batches of the training size, in training mode; running averages put back after.
                        log.Log(step, "batch_stats_accuracy", Training.Measure(model, test, flat: false, testImages, batch: b).Accuracy);
                        state.Restore();
                    });
            });
        }
        return Judge(run, batches, counts, examples, testImages, late, evaluations);
    }

    private static string Arm(int batch) => $"batch {batch}";

    /// <summary>The late checkpoints' values of <paramref name="metric"/>, per seed.</summary>
    private static double[][] Late(LabRun run, int batch, string metric) => run.Of(Arm(batch)).Select(r => r.Series(metric).Values).ToArray();

    private Finding Judge(LabRun run, int[] batches, int[] counts, long examples, int testImages, double late, int evaluations)
    {
        var report = run.Report;
        int best = counts[^1];
        report.Heading("Setup").Bullets([
            $"Fashion-MNIST, narrow CNN: {NarrowCnn.Describe("BN")}; BatchNorm2d ε 1e-5.",
            $"Batch B ∈ {{{string.Join(", ", batches)}}}, {Fmt.N(examples)} examples seen (B = {batches[0]}: {Fmt.N(examples / batches[0])} steps; B = {batches[^1]}: {Fmt.N(examples / batches[^1])}); SGD, momentum 0.9, lr = {Fmt.G(LrAt32)}·√(B/32), constant.",
            $"Late checkpoints: every evaluation (each {Fmt.Pct(1.0 / evaluations, 0)} of the run) from {Fmt.Pct(late, 0)} of training on; each is evaluated on the same {Fmt.N(testImages)} test images with (i) EMA statistics for momentum 0.1 (the layers' own), 0.01 and the cumulative average (momentum None), "
            + $"(ii) PreciseBN from {string.Join(", ", counts.Select(c => Fmt.N(c)))} training images (fvcore's population estimator, batches of min(B, 100)), (iii) each test batch's own statistics (test batches of B).",
            "The momentum does not change training (a training forward uses the batch's statistics), so the three EMA settings share one run: the other momenta's averages are tracked beside the layers' own from the same forwards.",
            $"{run.Seeds.Count} seeds per batch size.",
        ]);
        report.Choice("A narrow CNN (8/16 channels) and one epoch of Fashion-MNIST (quick budget) instead of ResNet-50 on ImageNet.");
        report.Choice($"Batch 8 and 512 as §6 asks; lr {Fmt.G(LrAt32)} at B = 32 (as small-batch) scaled by √(B/32), because linear scaling (lr 0.4 at B = 512) did not train in a pilot run.");
        report.Choice("PreciseBN batches of min(B, 100) images; the training images are the same at every checkpoint (a fixed seeded order), so checkpoint-to-checkpoint variation comes from the weights alone.");
        report.Choice("No FrozenBN arm (optional in §6).");

        // Per setting: mean accuracy over seeds and checkpoints, and std over checkpoints (mean over seeds).
        var rows = new List<string[]>();
        var gains = new List<double>();
        var emaStd = new List<double>();
        var preciseStd = new List<double>();
        var diffs = new List<double>();
        foreach (int b in batches)
        {
            var precise = Late(run, b, Precise(best));
            double preciseMean = Stats.Mean(precise.SelectMany(v => v)), pStd = Stats.Mean(precise.Select(v => Stats.Std(v)));
            foreach (var m in Momenta)
            {
                var ema = Late(run, b, Ema(m));
                double emaMean = Stats.Mean(ema.SelectMany(v => v)), eStd = Stats.Mean(ema.Select(v => Stats.Std(v)));
                diffs.Add(preciseMean - emaMean);
                emaStd.Add(eStd);
                preciseStd.Add(pStd);
                rows.Add([$"B = {b}, {EmaLabel(m)}", Fmt.Pct(emaMean), Fmt.F(100 * eStd, 2), Fmt.Pct(preciseMean), Fmt.F(100 * pStd, 2)]);
            }
            var batchStats = Late(run, b, "batch_stats_accuracy");
            rows.Add([$"B = {b}, batch statistics at test time", Fmt.Pct(Stats.Mean(batchStats.SelectMany(v => v))), Fmt.F(100 * Stats.Mean(batchStats.Select(v => Stats.Std(v))), 2), "", ""]);
            gains.Add(Stats.Mean(precise.SelectMany(v => v)) - Stats.Mean(Late(run, b, Precise(counts[^2])).SelectMany(v => v)));
        }
        report.Heading("Results").Table(["setting", "accuracy", "std over checkpoints (points)", $"PreciseBN {Fmt.N(best)}: accuracy", "its std (points)"], rows);
        report.Text("Accuracy: mean over seeds and late checkpoints. Std: across the late checkpoints of one seed, averaged over seeds.");

        var samplesRows = batches.Select(b => (IReadOnlyList<string>)[$"B = {b}", .. counts.Select(n => Fmt.PctMeanStd(Late(run, b, Precise(n)).Select(v => Stats.Mean(v))))]);
        report.Heading("PreciseBN against the number of samples").Table(["batch", .. counts.Select(n => Fmt.N(n))], samplesRows);
        report.Text("Accuracy with PreciseBN statistics from n training images: mean over late checkpoints, then mean ± std over seeds.");

        string[] names = [.. Momenta.Select(EmaLabel), "batch statistics at test time"];
        string[] metrics = [.. Momenta.Select(Ema), "batch_stats_accuracy"];
        foreach (int b in batches)
        {
            var chart = new Chart
            {
                Title = $"Accuracy against PreciseBN samples, batch {b}", XLabel = "training images used by PreciseBN (log scale)", YLabel = "test accuracy (%)",
                LogX = true, Markers = true, XTicks = counts.Select(n => ((double)n, Fmt.N(n))).ToArray(),
            };
            double[] x = counts.Select(n => (double)n).ToArray();
            var perSeed = counts.Select(n => Late(run, b, Precise(n)).Select(v => 100 * Stats.Mean(v)).ToArray()).ToArray();
            chart.Add(Series.MeanStd("PreciseBN", x, perSeed.Select(Stats.Mean).ToArray(), perSeed.Select(Stats.Std).ToArray(), color: 0));
            for (int k = 0; k < metrics.Length; k++)
            {
                double level = 100 * Stats.Mean(Late(run, b, metrics[k]).SelectMany(v => v));
                chart.Add(new Series(names[k], [x[0], x[^1]], [level, level], Dashed: true, Color: k + 1));
            }
            report.Plot(chart, $"samples-batch{b}", $"Batch {b}: PreciseBN accuracy against its number of samples (mean ± std over seeds of the late checkpoints' mean), with the other estimators' levels (dashed).");

            var over = new Chart { Title = $"Accuracy at the late checkpoints, batch {b}", XLabel = "training step", YLabel = "test accuracy (%)", Markers = true };
            for (int k = 0; k < metrics.Length; k++)
            {
                var (sx, sm, ss) = Stats.AcrossSeeds(run.Of(Arm(b)), metrics[k]);
                over.Add(Series.MeanStd(names[k], sx, Scale(sm), Scale(ss), dashed: true, color: k + 1));
            }
            var (px, pm, ps) = Stats.AcrossSeeds(run.Of(Arm(b)), Precise(best));
            over.Add(Series.MeanStd($"PreciseBN, {Fmt.N(best)} images", px, Scale(pm), Scale(ps), color: 0));
            report.Plot(over, $"checkpoints-batch{b}", $"Batch {b}: each estimator at the late checkpoints, mean ± std over seeds (Wu & Johnson's stability comparison).");
        }

        double diff = Stats.Mean(diffs), eMeanStd = Stats.Mean(emaStd), pMeanStd = Stats.Mean(preciseStd), gain = Stats.Mean(gains);
        var checks = new[]
        {
            new Check($"PreciseBN ({Fmt.N(best)}) ≥ EMA on average over settings",
                $"PreciseBN − EMA = {Fmt.F(100 * diff, 2)} points (PreciseBN ahead in {diffs.Count(d => d >= 0)} of {diffs.Count} settings)", diff >= 0),
            new Check("PreciseBN varies less across late checkpoints", $"std {Fmt.F(100 * pMeanStd, 2)} vs EMA {Fmt.F(100 * eMeanStd, 2)} points", pMeanStd < eMeanStd),
            new Check($"saturated by 10⁴: |gain {Fmt.N(counts[^2])} → {Fmt.N(best)} samples| ≤ 0.2 points", $"{Points(gain)}", Math.Abs(gain) <= 0.002),
        };
        string ours = $"PreciseBN ({Fmt.N(best)} images) {(diff >= 0 ? "+" : "")}{Fmt.F(100 * diff, 2)} points vs EMA on average, checkpoint std {Fmt.F(100 * pMeanStd, 2)} vs {Fmt.F(100 * eMeanStd, 2)} points; "
            + $"gain from {Fmt.N(counts[^2])} to {Fmt.N(best)} samples {Points(gain)} (narrow CNN, Fashion-MNIST, batch {string.Join(" and ", batches)})";
        return Finding.FromChecks(ours, checks);
    }

    /// <summary>A fraction as points with two decimals; adding 0.0 turns a rounded −0 into 0.</summary>
    private static string Points(double fraction) => Fmt.F(Math.Round(100 * fraction, 2) + 0.0, 2) + " points";

    private static double[] Scale(double[] fractions) => fractions.Select(v => 100 * v).ToArray();
}

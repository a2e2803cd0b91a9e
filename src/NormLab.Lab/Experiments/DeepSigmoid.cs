using NormLab.Lab.Measures;
using NormLab.Lab.Reporting;
using NormLab.Models;

namespace NormLab.Lab.Experiments;

/// <summary>
/// E4: saturating nonlinearities train with BN (Ioffe &amp; Szegedy §4.2.2, BN-x5-Sigmoid): sigmoid MLPs of 10 and 20 hidden
/// layers × 100 on Fashion-MNIST, with and without BN, over a learning-rate sweep; the gradient norm of every layer shows why.
/// </summary>
public sealed class DeepSigmoid : Experiment
{
    private const double Chance = 0.1, ChanceMargin = 0.05, BnAbove = 0.8, InitStd = 0.1;

    /// <inheritdoc/>
    public override string Name => "deep-sigmoid";

    /// <inheritdoc/>
    public override int Order => 3;

    /// <inheritdoc/>
    public override string Title => "E4: deep sigmoid networks train with BN and not without (Ioffe & Szegedy 2015, §4.2.2: BN-x5-Sigmoid)";

    /// <inheritdoc/>
    public override string Claim =>
        "BN makes saturating nonlinearities trainable: \"Without Batch Normalization, Inception with sigmoid never achieves better than 1/1000 accuracy\", while BN-x5-Sigmoid trains to 69.8 %.";

    /// <inheritdoc/>
    public override string Published =>
        "ImageNet (Fig. 3, §4.2.2): Inception with sigmoid and no BN never above 1/1000 top-1 (chance); BN-x5-Sigmoid 69.8 % (BN-x5 with ReLU 73.0 %).";

    /// <inheritdoc/>
    public override string Criterion =>
        "For each depth (10 and 20 hidden layers × 100): without BN the mean final test accuracy stays within 5 points of chance (≤ 15 %) at every learning rate tried, while with BN the best learning rate's mean final test accuracy exceeds 80 %.";

    /// <inheritdoc/>
    public override Finding Run(LabRun run)
    {
        var (train, test) = run.Data.Fashion();
        int[] depths = [10, 20];
        double[] lrs = run.Pick<double[]>([0.3, 3.0], [0.1, 0.3, 1, 3, 10], [0.1, 0.3, 1, 3, 10]);
        long steps = run.Pick(30, 2_000, 20_000);
        int evalEvery = run.Pick(10, 100, 500), evalImages = run.Pick(200, 2_000, 10_000), probeImages = run.Pick(64, 256, 1_000);
        var (probe, probeLabels) = LabData.Batch(train, probeImages, flat: true);
        run.Plan(depths.Length * 2 * lrs.Length * run.Seeds.Count);
        foreach (int depth in depths)
            foreach (var bn in new[] { false, true })
                foreach (double lr in lrs)
                {
                    var setup = new TrainSetup
                    {
                        Build = rng => Nets.GaussianMlp(depth, 100, ActivationKind.Sigmoid, bn, InitStd, rng),
                        Train = train, Test = test, Flat = true, Lr = lr, Batch = 60, Steps = steps, EvalEvery = evalEvery, EvalImages = evalImages,
                    };
                    run.ArmAllSeeds(Arm(depth, bn, lr), (log, seed, progress) =>
                    {
                        ModelState? state = null;
                        void Probe(long step, Sequential model)
                        {
                            // Where the gradient goes: ‖∂L/∂W‖ per layer on a fixed training batch (the model is put back).
                            state ??= new ModelState(model);
                            var norms = LayerGradients.Norms(model, probe, probeLabels, state);
                            for (int k = 0; k < norms.Length; k++)
                                log.Log(step, $"grad_norm_layer{k + 1}", norms[k]);
                        }
                        Training.Run(setup, seed, log, progress,
                            beforeStep: ctx =>
                            {
                                if (ctx.Step == 1)
                                    Probe(0, ctx.Model);
                            },
                            afterEval: Probe);
                    });
                }
        return Judge(run, depths, lrs, steps, evalEvery, evalImages, probeImages);
    }

    private static string Arm(int depth, bool bn, double lr) => $"depth {depth} {(bn ? "bn" : "baseline")} lr {Fmt.G(lr)}";

    private static double FinalMean(LabRun run, string arm) => Stats.Mean(run.Of(arm).Select(r => r.Scalar("final_test_accuracy")));

    private static double FinalStd(LabRun run, string arm) => Stats.Std(run.Of(arm).Select(r => r.Scalar("final_test_accuracy")));

    private Finding Judge(LabRun run, int[] depths, double[] lrs, long steps, int evalEvery, int evalImages, int probeImages)
    {
        var report = run.Report;
        double reference = lrs[lrs.Length / 2];
        report.Heading("Setup").Bullets([
            $"Fashion-MNIST (60,000 training images, grey levels in [0, 1]); 784-(100 × depth)-10 MLPs with sigmoid activations, depth {string.Join(" and ", depths)} hidden layers.",
            $"Weights N(0, {Fmt.G(InitStd)}²), biases 0, the same weights for a seed with and without BN; BN (ε 1e-5, momentum 0.1) before every sigmoid, no hidden bias then.",
            $"Plain SGD, batch 60, {Fmt.N(steps)} steps at each learning rate in {{{string.Join(", ", lrs.Select(Fmt.G))}}}; test accuracy on the first {Fmt.N(evalImages)} test images every {evalEvery} steps (BN in eval mode).",
            $"At initialization and every evaluation, ‖∂L/∂W‖ of each layer on a fixed batch of {probeImages} training images (training mode; the model is put back afterwards).",
            $"{run.Seeds.Count} seeds per arm; all arms of a seed share the data order and the initial weights.",
        ]);
        report.Choice($"Initialization N(0, {Fmt.G(InitStd)}²) as E1; for 100-wide hidden layers it is Glorot's normal initialization (√(2/(100 + 100)) = 0.1), the one designed for saturating units, so the baseline is not handicapped by its start. The paper's Inception initialization is not given.");
        report.Choice("Plain SGD without momentum or decay, and a learning-rate sweep (×100 range) instead of the paper's single BN-x5 learning rate, so that the baseline gets every chance.");
        report.Choice($"\"Within a few points of chance\" read as at most {Fmt.F(100 * ChanceMargin, 0)} points above 10 %, on the mean over seeds.");

        var checks = new List<Check>();
        var ours = new List<string>();
        foreach (int depth in depths)
        {
            report.Heading($"{depth} hidden layers");
            var rows = lrs.Select(lr => (IReadOnlyList<string>)[Fmt.G(lr),
                Fmt.PctMeanStd(run.Of(Arm(depth, false, lr)).Select(r => r.Scalar("final_test_accuracy"))) + Diverged(run, Arm(depth, false, lr)),
                Fmt.PctMeanStd(run.Of(Arm(depth, true, lr)).Select(r => r.Scalar("final_test_accuracy"))) + Diverged(run, Arm(depth, true, lr))]);
            report.Table(["learning rate", "without BN: final test accuracy", "with BN"], rows);

            var sweep = new Chart { LegendOutside = true, Title = $"Final test accuracy against learning rate, {depth}-layer sigmoid MLP", XLabel = "learning rate (log scale)", YLabel = "final test accuracy (%)", LogX = true, Markers = true };
            foreach (var bn in new[] { false, true })
                sweep.Add(Series.MeanStd(bn ? "with BN" : "without BN", lrs, lrs.Select(lr => 100 * FinalMean(run, Arm(depth, bn, lr))).ToArray(),
                    lrs.Select(lr => 100 * FinalStd(run, Arm(depth, bn, lr))).ToArray(), color: bn ? 1 : 0));
            sweep.HorizontalLines.Add((100 * Chance, "chance (10 %)"));
            report.Plot(sweep, $"final-depth{depth}", $"{depth} hidden layers: final test accuracy (mean ± std over seeds) at each learning rate.");

            double BestLr(bool bn) => lrs.MaxBy(lr => FinalMean(run, Arm(depth, bn, lr)));
            double baseBest = BestLr(false), bnBest = BestLr(true);
            var curves = new Chart { LegendOutside = true, Title = $"Test accuracy over training, {depth}-layer sigmoid MLP, each at its best learning rate", XLabel = "training step", YLabel = "test accuracy (%)" };
            foreach (var (bn, lr) in new[] { (false, baseBest), (true, bnBest) })
            {
                var (x, m, s) = Stats.AcrossSeeds(run.Of(Arm(depth, bn, lr)), "test_accuracy");
                curves.Add(Series.MeanStd($"{(bn ? "with BN" : "without BN")}, lr {Fmt.G(lr)}", x, m.Select(v => 100 * v).ToArray(), s.Select(v => 100 * v).ToArray(), color: bn ? 1 : 0));
            }
            curves.HorizontalLines.Add((100 * BnAbove, "80 % (criterion for BN)"));
            curves.HorizontalLines.Add((100 * Chance, "chance (10 %)"));
            report.Plot(curves, $"curves-depth{depth}", $"{depth} hidden layers: test accuracy over training (mean ± std over seeds), each network at its best learning rate.");

            var grads = new Chart { LegendOutside = true, Title = $"Gradient norm by layer, {depth}-layer sigmoid MLP, lr {Fmt.G(reference)}", XLabel = "layer (1 = input layer, last = output layer)", YLabel = "‖∂L/∂W‖ (log scale)", LogY = true };
            foreach (var bn in new[] { false, true })
            {
                var seeds = run.Of(Arm(depth, bn, reference));
                foreach (var (at, dashed) in new[] { (0.0, true), ((double)steps, false) })
                {
                    double[] layers = Enumerable.Range(1, depth + 1).Select(k => (double)k).ToArray();
                    double[] mean = layers.Select(k => Stats.Mean(seeds.Select(r => r.Rows.TryGetValue((long)at, out var row) && row.TryGetValue($"grad_norm_layer{k}", out var v) ? v : double.NaN))).ToArray();
                    grads.Add(new Series($"{(bn ? "with BN" : "without BN")}, step {Fmt.N((long)at)}", layers, mean, Dashed: dashed, Color: bn ? 1 : 0));
                }
            }
            report.Plot(grads, $"gradients-depth{depth}", $"{depth} hidden layers, lr {Fmt.G(reference)}: ‖∂L/∂W‖ of each layer (mean over seeds) at initialization (dashed) and at the end of training (a diverged run has no end point).");

            double worstBase = lrs.Max(lr => FinalMean(run, Arm(depth, false, lr)));
            double bestBn = FinalMean(run, Arm(depth, true, bnBest));
            checks.Add(new Check($"{depth} layers: without BN within 5 points of chance at every lr",
                $"best lr {Fmt.G(baseBest)}: {Fmt.Pct(worstBase, 1)}; all lrs: {string.Join(", ", lrs.Select(lr => Fmt.Pct(FinalMean(run, Arm(depth, false, lr)), 1)))}",
                worstBase <= Chance + ChanceMargin));
            checks.Add(new Check($"{depth} layers: with BN > 80 % at its best lr", $"lr {Fmt.G(bnBest)}: {Fmt.PctMeanStd(run.Of(Arm(depth, true, bnBest)).Select(r => r.Scalar("final_test_accuracy")))}", bestBn > BnAbove));
            ours.Add($"{depth} layers: without BN at most {Fmt.Pct(worstBase, 1)} (lr {Fmt.G(baseBest)}), with BN {Fmt.Pct(bestBn, 1)} (lr {Fmt.G(bnBest)})");
        }
        return Finding.FromChecks(string.Join("; ", ours) + $" ({Fmt.N(steps)} steps)", [.. checks]);
    }

    private static string Diverged(LabRun run, string arm)
    {
        int n = run.Of(arm).Count(r => r.Scalar("diverged") > 0);
        return n > 0 ? $" ({n} diverged)" : "";
    }
}

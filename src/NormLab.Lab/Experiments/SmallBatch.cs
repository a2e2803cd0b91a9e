using NormLab.Lab.Measures;
using NormLab.Lab.Reporting;

namespace NormLab.Lab.Experiments;

/// <summary>
/// E8: per-step batch from 2 to 64 at a fixed number of examples seen; BatchNorm (running averages), the same BN
/// network evaluated with PreciseBN statistics, GroupNorm and batch renormalization (Wu &amp; He 2018; Ioffe 2017); and
/// SyncBatchNorm over 8 data-parallel ranks of 2 images each, which must equal BN at batch 16 (the remedy the paper's
/// multi-GPU setting has: statistics over every GPU's images).
/// </summary>
public sealed class SmallBatch : Experiment
{
    private const double LrAt32 = 0.025;
    private const int Groups = 4;
    private const double RenormMomentum = 0.01;
    private static readonly string[] Norms = ["bn", "gn", "brn"];
    private const int SyncRanks = 8, SyncPerRank = 2, SyncBatch = SyncRanks * SyncPerRank;
    private const string SyncArm = "syncbn 8 ranks × batch 2";

    /// <summary>
    /// SyncBN against BN at batch 16 is judged after this many steps: the two differ by float sums in another order
    /// (1e-7 a step), which training amplifies chaotically (zoo CNN on Fashion-MNIST at batch 16, lr 0.0125, momentum 0.9,
    /// relative gap in train loss: 0 after 5 steps, 1e-7 after 20, 3e-4 after 50), so the full-length runs can only be
    /// compared as distributions over seeds.
    /// </summary>
    public const int SyncEqualitySteps = 10;

    /// <summary>Largest relative difference of train and test loss after <see cref="SyncEqualitySteps"/> steps.</summary>
    public const double SyncLossRtol = 1e-4;

    /// <inheritdoc/>
    public override string Name => "small-batch";

    /// <inheritdoc/>
    public override int Order => 7;

    /// <inheritdoc/>
    public override string Title => "E8: small batches — BatchNorm against GroupNorm and batch renormalization (Wu & He 2018; Ioffe 2017)";

    /// <inheritdoc/>
    public override string Claim =>
        "BN's error grows as the per-step batch shrinks to 2 while GroupNorm's stays flat (Wu & He 2018); batch renormalization trains \"substantially better than batchnorm\" with small minibatches (Ioffe 2017).";

    /// <inheritdoc/>
    public override string Published =>
        "Wu & He 2018, ResNet-50 on ImageNet (Fig. 1): BN top-1 error 23.6 % at 32 images/GPU → 34.7 % at 2; GN 24.1 % at both (10.6 points below BN at 2). "
        + "Ioffe 2017, Inception v3 with microbatches of 4: BRN substantially better than BN (figures not retrieved).";

    /// <inheritdoc/>
    public override string Criterion =>
        "BN's test error at batch 2 is ≥ 3 points above its error at batch 32, while GN's changes by ≤ 1 point; "
        + "BRN recovers at least half of BN's small-batch loss: err_BN(2) − err_BRN(2) ≥ ½·(err_BN(2) − err_BN(32)).";

    /// <inheritdoc/>
    public override Finding Run(LabRun run)
    {
        int[] batches = run.Pick<int[]>([2, 32], [2, 4, 8, 16, 32, 64], [2, 4, 8, 16, 32, 64]);
        long examples = run.Pick(512L, 16_384L, 300_000L);
        int testImages = run.Pick(300, 10_000, 10_000), preciseImages = run.Pick(100, 3000, 10_000);
        var (train, test) = run.Data.Fashion();
        bool extraBn16 = !batches.Contains(SyncBatch);
        run.Plan((batches.Length * Norms.Length + 1 + (extraBn16 ? 1 : 0)) * run.Seeds.Count);
        foreach (int b in batches)
            foreach (var norm in Norms)
            {
                long steps = examples / b;
                var setup = new TrainSetup
                {
                    Build = rng => NarrowCnn.Build(Layer(norm, steps), rng),
                    Train = train, Test = test, Batch = b, Steps = steps, Lr = LrAt32 * b / 32, Momentum = 0.9,
                    EvalEvery = (int)steps, EvalImages = testImages,
                };
                run.ArmAllSeeds(Arm(norm, b), (log, seed, progress) =>
                {
                    var model = Training.Run(setup, seed, log, progress);
                    // BN + PreciseBN is the BN arm's final network with re-estimated statistics: no second training run.
                    if (norm == "bn")
                        log.Set("precise_test_accuracy", Batches.EvaluatePrecise(model, train, test, flat: false, preciseImages, batch: b, evalImages: testImages).Accuracy);
                });
            }
        // SyncBN: 8 ranks (threads) of 2 images, statistics over all 16; and BN at 16 to compare with if the sweep lacks it.
        TrainSetup At16(int ranks) => new()
        {
            Build = rng => NarrowCnn.Build(Layer("bn", examples / SyncBatch), rng),
            Train = train, Test = test, Batch = SyncBatch, Steps = examples / SyncBatch, Lr = LrAt32 * SyncBatch / 32, Momentum = 0.9,
            EvalEvery = (int)(examples / SyncBatch), EvalImages = testImages, Ranks = ranks,
        };
        if (extraBn16)
            run.ArmAllSeeds(Arm("bn", SyncBatch), (log, seed, progress) => Training.Run(At16(1), seed, log, progress));
        run.ArmAllSeeds(SyncArm, (log, seed, progress) =>
        {
            // The equality, before chaos amplifies rounding: both ways for SyncEqualitySteps steps, logged as scalars.
            foreach (var (name, ranks) in new[] { ("bn", 1), ("sync", SyncRanks) })
            {
                var shortRun = new ArmResult();
                Training.Run(At16(ranks) with { Steps = SyncEqualitySteps, EvalEvery = SyncEqualitySteps }, seed, shortRun);
                log.Set($"short_{name}_train_loss", shortRun.Last("train_loss"));
                log.Set($"short_{name}_test_loss", shortRun.Last("test_loss"));
            }
            Training.Run(At16(SyncRanks), seed, log, progress);
        });
        return Judge(run, batches, examples, testImages, preciseImages);
    }

    private static Func<int, Module> Layer(string norm, long steps) => norm switch
    {
        "bn" => c => new BatchNorm2d(c),
        "gn" => c => new GroupNorm(Groups, c),
        // The paper's 5k/25k/40k-step relaxation, compressed to this run's length in steps.
        _ => c => new BatchRenorm(c, momentum: RenormMomentum, schedule: RenormSchedule.Scaled(steps / 40000.0)),
    };

    private static string Arm(string norm, int batch) => $"{norm} batch {batch}";

    private Finding Judge(LabRun run, int[] batches, long examples, int testImages, int preciseImages)
    {
        var report = run.Report;
        report.Heading("Setup").Bullets([
            $"Fashion-MNIST (60,000 training images, {Fmt.N(testImages)} test images), narrow CNN: {NarrowCnn.Describe("norm")}.",
            $"Per-step batch B ∈ {{{string.Join(", ", batches)}}}, {Fmt.N(examples)} examples seen at every B (so B = 2 takes {Fmt.N(examples / 2)} steps, B = {batches[^1]} takes {Fmt.N(examples / batches[^1])}); SGD, momentum 0.9, lr = {Fmt.G(LrAt32)}·B/32.",
            $"Arms: BN (BatchNorm2d, ε 1e-5, momentum 0.1, evaluated with its running averages); BN + PreciseBN (the BN arm's final network, statistics re-estimated from {Fmt.N(preciseImages)} training images in batches of B); GN (G = {Groups}); BRN (momentum {Fmt.G(RenormMomentum)}, r_max → 3, d_max → 5 on the paper's schedule compressed to the run).",
            $"{run.Seeds.Count} seeds per arm; every arm of a seed starts from the same convolution weights and draws the same data order.",
        ]);
        report.Choice($"A narrow CNN (8 and 16 channels) on Fashion-MNIST instead of ResNet-50 on ImageNet, and {Fmt.N(examples)} examples seen (quick budget), so that 2-image steps are affordable on two cores.");
        report.Choice($"Learning rate scaled linearly with the batch from {Fmt.G(LrAt32)} at B = 32 (picked from a pilot run of BN at B = 32), SGD momentum 0.9, no schedule.");
        report.Choice($"GroupNorm with G = {Groups} groups (2 and 4 channels a group): the paper's G = 32 exceeds these layers' widths.");
        report.Choice("BRN: the paper's r_max/d_max relaxation (plain BN for 5k steps, r_max = 3 at 40k, d_max = 5 at 25k) scaled to the run's length in steps; moving-average rate 0.01 (tf-keras's renorm_momentum 0.99 and the ludvb/batchrenorm reproduction; the paper says only \"relatively fast\").");
        report.Choice("PreciseBN iterates training batches of the training size B, as fvcore's precise_bn does with the training loader.");
        report.Choice($"SyncBN arm: the BN network with its layers converted to SyncBatchNorm, trained data-parallel on {SyncRanks} ranks (threads) of {SyncPerRank} images, one all-reduce of the gradients per step; it must equal BN at batch {SyncBatch} (same seeds, same global batches), not BN at batch {SyncPerRank}.");
        report.Choice("No ghost BN arm: at B ≤ 64 a ghost batch can only make the normalization batch smaller, which is what this experiment shows to hurt.");

        double Err(string norm, int b) => 1 - Stats.Mean(run.Of(Arm(norm, b)).Select(r => r.Scalar("final_test_accuracy")));
        double PreciseErr(int b) => 1 - Stats.Mean(run.Of(Arm("bn", b)).Select(r => r.Scalar("precise_test_accuracy")));
        IEnumerable<double> Errors(string norm, int b, string metric = "final_test_accuracy") => run.Of(Arm(norm, b)).Select(r => 1 - r.Scalar(metric));

        report.Heading("Results").Table(["batch", "BN (running averages)", "BN + PreciseBN", $"GN (G = {Groups})", "BRN"],
            batches.Select(b => (IReadOnlyList<string>)[b.ToString(System.Globalization.CultureInfo.InvariantCulture), Fmt.PctMeanStd(Errors("bn", b)),
                Fmt.PctMeanStd(Errors("bn", b, "precise_test_accuracy")), Fmt.PctMeanStd(Errors("gn", b)), Fmt.PctMeanStd(Errors("brn", b))]));
        report.Text("Test error, mean ± std over seeds.");

        var chart = new Chart
        {
            Title = "Test error against per-step batch size (fixed examples seen)", XLabel = "per-step batch size (images, log scale)", YLabel = "test error (%)", Markers = true,
            XTicks = batches.Select(b => (Math.Log2(b), b.ToString(System.Globalization.CultureInfo.InvariantCulture))).ToArray(),
        };
        double[] x = batches.Select(b => Math.Log2(b)).ToArray();
        Series Line(string label, Func<int, IEnumerable<double>> errors, int color, bool dashed = false) => Series.MeanStd(label, x,
            batches.Select(b => 100 * Stats.Mean(errors(b))).ToArray(), batches.Select(b => 100 * Stats.Std(errors(b))).ToArray(), dashed, color);
        chart.Add(Line("BN (running averages)", b => Errors("bn", b), 0));
        chart.Add(Line("BN + PreciseBN", b => Errors("bn", b, "precise_test_accuracy"), 0, dashed: true));
        chart.Add(Line($"GroupNorm (G = {Groups})", b => Errors("gn", b), 1));
        chart.Add(Line("batch renormalization", b => Errors("brn", b), 2));
        report.Plot(chart, "error-vs-batch", "Test error against batch size, mean ± std over seeds (Wu & He 2018, Fig. 1 analogue).");

        const int small = 2, reference = 32;
        double bnLoss = Err("bn", small) - Err("bn", reference);
        double gnChange = Err("gn", small) - Err("gn", reference);
        double brnGain = Err("bn", small) - Err("brn", small);
        double recovered = bnLoss > 0 ? brnGain / bnLoss : double.NaN;
        string Pts(double v) => Fmt.F(100 * v, 2) + " points";
        double noise = Math.Max(Stats.Std(Errors("bn", small)), Stats.Std(Errors("bn", reference)));
        if (Math.Abs(bnLoss) < noise)
            report.Text($"BN's change from batch {reference} to {small} ({Pts(bnLoss)}) is within the seeds' std ({Pts(noise)}): there is no small-batch loss to speak of, so the BRN check compares noise with noise whichever way it comes out.");
        // Why this network may not feel the batch size: BN estimates each channel's statistics from batch × H × W values.
        report.Text($"What \"small batch\" means for BN is the number of values behind each channel's statistics, batch × H × W: at batch {small} "
            + $"this network's two BN layers see {small * 28 * 28:N0} and {small * 14 * 14:N0} values per channel, ResNet-50's last stage ({small} × 7 × 7) only {small * 49}, "
            + $"and a BN layer after a fully connected layer only {small}. A shallow network whose every BN sits on a large feature map is therefore a weak test of the claim; "
            + "a network with BN after a dense layer (the zoo's CNN) would be a stronger one. This was not changed after the run.");
        // SyncBN equals BN at 16 seed by seed after SyncEqualitySteps steps, up to float reassociation.
        var syncRuns = run.Of(SyncArm).ToList();
        double Gap(ArmResult r, string metric) => Math.Abs(r.Scalar($"short_sync_{metric}") - r.Scalar($"short_bn_{metric}")) / Math.Abs(r.Scalar($"short_bn_{metric}"));
        double lossGap = syncRuns.Select(r => Math.Max(Gap(r, "train_loss"), Gap(r, "test_loss"))).DefaultIfEmpty(double.NaN).Max();
        bool syncEqual = syncRuns.Count == run.Seeds.Count && lossGap <= SyncLossRtol;
        // An engineering check of the data-parallel engine, not a claim of the literature: reported, not part of the verdict.
        report.Text($"SyncBN, {SyncRanks} ranks × {SyncPerRank} images: test error {Fmt.PctMeanStd(run.Of(SyncArm).Select(r => 1 - r.Scalar("final_test_accuracy")))} against BN at batch {SyncBatch} {Fmt.PctMeanStd(Errors("bn", SyncBatch))} "
            + $"and BN at batch {SyncPerRank} {Fmt.PctMeanStd(Errors("bn", SyncPerRank))}. "
            + $"Seed by seed after {SyncEqualitySteps} steps, SyncBN's train and test loss differ from BN at batch {SyncBatch}'s by at most {lossGap:E1} relative "
            + $"(required: ≤ {SyncLossRtol:E0}): {(syncEqual ? "equal, as it must be" : "NOT EQUAL: the data-parallel engine is broken")}. Over the whole run the two are compared as distributions only: "
            + "rounding differences of float sums in another order grow chaotically with training (0 after 5 steps, 3e-4 relative after 50 on the zoo CNN).");
        var checks = new[]
        {
            new Check("BN: err(2) − err(32) ≥ 3 points", $"{Fmt.Pct(Err("bn", small))} − {Fmt.Pct(Err("bn", reference))} = {Pts(bnLoss)}", bnLoss >= 0.03),
            new Check("GN: |err(2) − err(32)| ≤ 1 point", $"{Fmt.Pct(Err("gn", small))} − {Fmt.Pct(Err("gn", reference))} = {Pts(gnChange)}", Math.Abs(gnChange) <= 0.01),
            new Check("BRN at batch 2 recovers ≥ ½ of BN's loss", bnLoss > 0
                    ? $"BRN {Fmt.Pct(Err("brn", small))} vs BN {Fmt.Pct(Err("bn", small))}: {Pts(brnGain)} of {Pts(bnLoss)} ({Fmt.Pct(recovered, 0)})"
                    : $"undefined: BN loses nothing at batch 2 ({Pts(bnLoss)}); BRN {Fmt.Pct(Err("brn", small))} vs BN {Fmt.Pct(Err("bn", small))}",
                bnLoss > 0 && recovered >= 0.5),
        };
        string ours = $"test error at batch 2 vs 32: BN {Fmt.Pct(Err("bn", small))} vs {Fmt.Pct(Err("bn", reference))}, BN + PreciseBN {Fmt.Pct(PreciseErr(small))} vs {Fmt.Pct(PreciseErr(reference))}, "
            + $"GN {Fmt.Pct(Err("gn", small))} vs {Fmt.Pct(Err("gn", reference))}, BRN {Fmt.Pct(Err("brn", small))} vs {Fmt.Pct(Err("brn", reference))} (narrow CNN, Fashion-MNIST, {Fmt.N(examples)} examples)";
        return Finding.FromChecks(ours, checks);
    }
}

using System.Globalization;
using NormLab.Lab.Measures;
using NormLab.Lab.Reporting;
using NormLab.Models;

namespace NormLab.Lab.Experiments;

/// <summary>
/// E3: BN makes higher learning rates usable (Ioffe &amp; Szegedy §3.3 and §4.2.2, BN-x5 / BN-x30): a sigmoid MLP, a ReLU
/// MLP and a small CNN on Fashion-MNIST, with and without BN, at multiples ×1, ×5, ×30 of the best baseline learning
/// rate (found by a search inside the experiment) and over the search grid.
/// </summary>
public sealed class LearningRate : Experiment
{
    private static readonly double[] Multipliers = [1, 5, 30];
    private const double Chance = 0.1, ChanceMargin = 0.05, TrainsAbove = 0.5;

    /// <inheritdoc/>
    public override string Name => "learning-rate";

    /// <inheritdoc/>
    public override int Order => 2;

    /// <inheritdoc/>
    public override string Title => "E3: BN makes higher learning rates usable (Ioffe & Szegedy 2015, §3.3 and §4.2.2: BN-x5, BN-x30)";

    /// <inheritdoc/>
    public override string Claim =>
        "With BN the learning rate can be raised ×5 and ×30: the baseline's parameters \"reach machine infinity\" at ×5 while the BN network trains, reaches the baseline's accuracy in far fewer steps, and ×30 ends at least as well as ×1.";

    /// <inheritdoc/>
    public override string Published =>
        "ImageNet, Inception (Fig. 3): BN-x5 reaches Inception's best 72.2 % in 2.1·10⁶ steps vs 31.0·10⁶ (14× fewer); BN-x30 reaches 74.8 % (BN-Baseline 72.7 %); lr ×5 without BN \"caused the model parameters to reach machine infinity\".";

    /// <inheritdoc/>
    public override string Criterion =>
        "For each model (sigmoid MLP, ReLU MLP, CNN): (1) some learning rate above the best baseline lr (×5, ×30 or a grid point) leaves the baseline diverged or at chance (mean final test accuracy ≤ 15 %) while BN at that lr trains (no seed diverged, mean final ≥ 50 %); "
        + "(2) BN's best run (any lr) reaches the baseline's best accuracy (the highest point of any baseline arm's mean curve) in fewer steps (factor > 1 reproduces, ≥ 3 strongly); "
        + "(3) BN ×30 (the highest of the paper's multipliers) ends no worse than BN ×1: its mean final accuracy is not below ×1's by more than the larger of the two seeds' std.";

    private sealed record Model(string Key, string Label, bool Flat, Func<bool, Rng, Sequential> Build, int Batch, long Steps, int EvalEvery,
        int EvalImages, double[] Search, bool BnOnSearch);

    private sealed record Outcome(Model Model, double BestLr, Dictionary<string, ArmResult[]> Arms)
    {
        public double[] Lrs(bool bn) => Arms.Where(a => a.Key.StartsWith(ArmPrefix(Model, bn), StringComparison.Ordinal))
            .Select(a => a.Value[0].Scalar("lr")).Order().ToArray();

        public ArmResult[] Of(bool bn, double lr) => Arms[ArmName(Model, bn, lr)];

        public bool Has(bool bn, double lr) => Arms.ContainsKey(ArmName(Model, bn, lr));
    }

    /// <inheritdoc/>
    public override Finding Run(LabRun run)
    {
        var (train, test) = run.Data.Fashion();
        double[] mlpSearch = run.Pick<double[]>([0.1, 1.0], [0.01, 0.03, 0.1, 0.3, 1, 3], [0.01, 0.03, 0.1, 0.3, 1, 3]);
        double[] cnnSearch = run.Pick<double[]>([0.1], [0.01, 0.03, 0.1, 0.3, 1], [0.01, 0.03, 0.1, 0.3, 1]);
        long mlpSteps = run.Pick(20, 1500, 20_000), cnnSteps = run.Pick(4, 250, 5_000);
        int mlpEvery = run.Pick(5, 50, 250), cnnEvery = run.Pick(2, 25, 100), cnnBatch = run.Pick(8, 32, 64);
        int mlpEval = run.Pick(200, 2_000, 10_000), cnnEval = run.Pick(100, 1_000, 5_000);
        var models = new[]
        {
            new Model("mlp-sigmoid", "sigmoid MLP 784-100-100-100-10", true, (bn, rng) => Nets.GaussianMlp(3, 100, ActivationKind.Sigmoid, bn, 0.1, rng),
                60, mlpSteps, mlpEvery, mlpEval, mlpSearch, BnOnSearch: true),
            new Model("mlp-relu", "ReLU MLP 784-100-100-100-10", true, (bn, rng) => Nets.GaussianMlp(3, 100, ActivationKind.ReLU, bn, 0.1, rng),
                60, mlpSteps, mlpEvery, mlpEval, mlpSearch, BnOnSearch: true),
            new Model("cnn", "CNN conv32-conv64-fc128", false, (bn, rng) => Nets.WithSharedWeights(r => Zoo.Cnn(bn ? NormKind.Batch : NormKind.None, NormPosition.Before, 10, r), rng),
                cnnBatch, cnnSteps, cnnEvery, cnnEval, cnnSearch, BnOnSearch: run.Budget == Budget.Full),
        };
        run.Plan(models.Sum(m => (m.Search.Length * (m.BnOnSearch ? 2 : 1) + 2 * Multipliers.Length) * run.Seeds.Count));

        var outcomes = new List<Outcome>();
        foreach (var model in models)
        {
            var arms = new Dictionary<string, ArmResult[]>();
            void Train(bool bn, double lr)
            {
                string arm = ArmName(model, bn, lr);
                if (arms.ContainsKey(arm))
                    return;   // a grid point that is also a multiple of the best lr runs once
                var setup = new TrainSetup
                {
                    Build = rng => model.Build(bn, rng), Train = train, Test = test, Flat = model.Flat, Lr = lr, Batch = model.Batch,
                    Steps = model.Steps, EvalEvery = model.EvalEvery, EvalImages = model.EvalImages,
                };
                arms[arm] = run.ArmAllSeeds(arm, (log, seed, progress) =>
                {
                    log.Set("lr", lr);
                    Training.Run(setup, seed, log, progress);
                });
            }

            // The search: the baseline over the grid; the best lr is the one with the highest mean final accuracy (the smaller on a tie).
            foreach (double lr in model.Search)
                Train(bn: false, lr);
            double best = model.Search[0];
            foreach (double lr in model.Search)
                if (FinalMean(arms[ArmName(model, false, lr)]) > FinalMean(arms[ArmName(model, false, best)]))
                    best = lr;
            if (model.BnOnSearch)
                foreach (double lr in model.Search)
                    Train(bn: true, lr);
            foreach (double m in Multipliers)
            {
                Train(bn: false, Round(best * m));
                Train(bn: true, Round(best * m));
            }
            outcomes.Add(new Outcome(model, best, arms));
        }
        return Judge(run, outcomes);
    }

    private static string ArmPrefix(Model model, bool bn) => $"{model.Key} {(bn ? "bn" : "baseline")} lr ";

    private static string ArmName(Model model, bool bn, double lr) => ArmPrefix(model, bn) + Fmt.G(lr);

    // Learning rates are named by three significant digits; rounding the products makes ×30 of 0.1 the grid's 3, not 3.0000000000000004.
    private static double Round(double lr) => double.Parse(Fmt.G(lr), CultureInfo.InvariantCulture);

    private static double FinalMean(ArmResult[] seeds) => Stats.Mean(seeds.Select(r => r.Scalar("final_test_accuracy")));

    private static double FinalStd(ArmResult[] seeds) => Stats.Std(seeds.Select(r => r.Scalar("final_test_accuracy")));

    private static int Diverged(ArmResult[] seeds) => seeds.Count(r => r.Scalar("diverged") > 0);

    private static string Times(double lr, double best) => "×" + Fmt.G(lr / best);

    private Finding Judge(LabRun run, List<Outcome> outcomes)
    {
        var report = run.Report;
        var first = outcomes[0].Model;
        var cnn = outcomes[^1].Model;
        report.Heading("Setup").Bullets([
            $"Fashion-MNIST (60,000 training images, grey levels in [0, 1]); test accuracy on the first {Fmt.N(first.EvalImages)} test images (CNN: {Fmt.N(cnn.EvalImages)}) every {first.EvalEvery} steps (CNN: {cnn.EvalEvery}), BN in eval mode (running statistics).",
            $"MLPs: E1's 784-100-100-100-10 with sigmoid or ReLU, weights N(0, 0.1²), biases 0; batch {first.Batch}, {Fmt.N(first.Steps)} steps. CNN: the zoo's conv3×3(32)-pool-conv3×3(64)-pool-fc(128)-fc(10), PyTorch's default initialization; batch {cnn.Batch}, {Fmt.N(cnn.Steps)} steps.",
            "With BN: BatchNorm (ε 1e-5, momentum 0.1) before every hidden activation, hidden layers without bias. Plain SGD (no momentum, no weight decay); the same number of steps at every learning rate.",
            $"Best baseline learning rate lr*: searched inside the experiment over {{{string.Join(", ", first.Search.Select(Fmt.G))}}} (CNN: {{{string.Join(", ", cnn.Search.Select(Fmt.G))}}}); lr* is the grid point with the highest mean final test accuracy. Then both networks run at lr* × {{{string.Join(", ", Multipliers.Select(Fmt.G))}}}; the BN networks also run over the whole grid{(cnn.BnOnSearch ? "" : " (the MLPs' only)")}.",
            $"{run.Seeds.Count} seeds per arm; every arm of a seed draws the same data order and the same initial weights (the BN networks have no hidden biases).",
        ]);
        report.Choice("The best baseline lr is found by a search inside the experiment (the search arms are arms of the report, with all seeds) rather than fixed in advance: the paper's 0.0015 belongs to Inception with momentum and says nothing about our networks.");
        report.Choice("Plain SGD without momentum or weight decay, so that the learning rate is the only knob; the paper trains Inception with momentum, a decaying lr and weight decay (reduced ×5 for BN-x5/x30).");
        report.Choice("MLP initialization N(0, 0.1²) as E1 (the third-party MNIST reproduction); CNN with PyTorch's default initialization.");
        report.Choice($"Operational thresholds, fixed before the run: \"chance\" is a mean final accuracy within {Fmt.F(100 * ChanceMargin, 0)} points of 10 %; \"BN trains\" is a mean final accuracy ≥ {Fmt.F(100 * TrainsAbove, 0)} % with no seed diverged; \"not worse\" allows the larger seeds' std.");
        if (!cnn.BnOnSearch)
            report.Choice($"Budget: in the quick budget the CNN (about 5× the MLP's cost per image) trains {Fmt.N(cnn.Steps)} steps at batch {cnn.Batch}, is evaluated on {Fmt.N(cnn.EvalImages)} test images, and its BN network runs only at the three multiples of lr*, not over the search grid.");

        var checks = new List<Check>();
        var ours = new List<string>();
        foreach (var o in outcomes)
        {
            var (c, line) = JudgeModel(run, o);
            checks.AddRange(c);
            ours.Add(line);
        }
        return Finding.FromChecks(string.Join("; ", ours), [.. checks]);
    }

    private static (Check[] Checks, string Ours) JudgeModel(LabRun run, Outcome o)
    {
        var report = run.Report;
        var model = o.Model;
        double best = o.BestLr;
        double[] baseLrs = o.Lrs(false), bnLrs = o.Lrs(true);
        report.Heading($"{model.Label} (lr* = {Fmt.G(best)})");

        // Final accuracy against the learning rate.
        var rows = new List<string[]>();
        foreach (double lr in baseLrs.Union(bnLrs).Order())
        {
            string Cell(bool bn) => o.Has(bn, lr)
                ? Fmt.PctMeanStd(o.Of(bn, lr).Select(r => r.Scalar("final_test_accuracy"))) + (Diverged(o.Of(bn, lr)) > 0 ? $" ({Diverged(o.Of(bn, lr))} diverged)" : "")
                : "—";
            rows.Add([Fmt.G(lr), Times(lr, best), Cell(false), Cell(true)]);
        }
        report.Table(["learning rate", "× lr*", "without BN: final test accuracy", "with BN"], rows);
        var sweep = new Chart { LegendOutside = true, Title = $"Final test accuracy against learning rate, {model.Label}", XLabel = "learning rate (log scale)", YLabel = "final test accuracy (%)", LogX = true, Markers = true };
        foreach (var bn in new[] { false, true })
        {
            var lrs = bn ? bnLrs : baseLrs;
            sweep.Add(Series.MeanStd(bn ? "with BN" : "without BN", lrs, lrs.Select(lr => 100 * FinalMean(o.Of(bn, lr))).ToArray(),
                lrs.Select(lr => 100 * FinalStd(o.Of(bn, lr))).ToArray(), color: bn ? 1 : 0));
        }
        sweep.HorizontalLines.Add((100 * Chance, "chance (10 %)"));
        report.Plot(sweep, $"final-{model.Key}", $"{model.Label}: final test accuracy (mean ± std over seeds) against the learning rate; lr* = {Fmt.G(best)}, ×5 = {Fmt.G(Round(best * 5))}, ×30 = {Fmt.G(Round(best * 30))}.");

        // (2): the baseline's best accuracy, and the step at which each network first reaches it.
        (string Arm, double Lr, double Step, double Value) peak = ("", double.NaN, double.NaN, double.NaN);
        foreach (double lr in baseLrs)
        {
            var (x, m, _) = Stats.AcrossSeeds(o.Of(false, lr), "test_accuracy");
            var (step, value) = Curves.Peak(x, m);
            if (double.IsNaN(peak.Value) || value > peak.Value)
                peak = (ArmName(model, false, lr), lr, step, value);
        }
        (double Lr, double Step) bnFirst = (double.NaN, double.NaN);
        foreach (double lr in bnLrs)
        {
            var (x, m, _) = Stats.AcrossSeeds(o.Of(true, lr), "test_accuracy");
            double step = Curves.StepsToReach(x, m, peak.Value);
            if (double.IsFinite(step) && !(step >= bnFirst.Step))
                bnFirst = (lr, step);
        }
        double factor = peak.Step / bnFirst.Step;

        var curves = new Chart { LegendOutside = true, Title = $"Test accuracy over training, {model.Label}", XLabel = "training step", YLabel = "test accuracy (%)" };
        void Curve(bool bn, double lr, bool dashed, int color)
        {
            if (!o.Has(bn, lr))
                return;
            var (x, m, s) = Stats.AcrossSeeds(o.Of(bn, lr), "test_accuracy");
            curves.Add(Series.MeanStd($"{(bn ? "with BN" : "without BN")}, lr {Fmt.G(lr)} ({Times(lr, best)})", x, m.Select(v => 100 * v).ToArray(), s.Select(v => 100 * v).ToArray(), dashed, color));
        }
        Curve(false, best, false, 0);
        Curve(false, Round(best * 5), true, 0);
        for (int k = 0; k < Multipliers.Length; k++)
            Curve(true, Round(best * Multipliers[k]), false, 1 + k);
        curves.HorizontalLines.Add((100 * peak.Value, $"baseline's best ({Fmt.Pct(peak.Value, 1)})"));
        report.Plot(curves, $"curves-{model.Key}", $"{model.Label}: test accuracy over training (mean ± std over seeds) at lr* × 1, 5 (dashed: without BN) and ×30 with BN.");

        // (1): a learning rate above lr* where the baseline is at chance and BN trains.
        var blowups = baseLrs.Where(lr => lr > best && o.Has(true, lr)
            && FinalMean(o.Of(false, lr)) <= Chance + ChanceMargin && Diverged(o.Of(true, lr)) == 0 && FinalMean(o.Of(true, lr)) >= TrainsAbove).ToArray();
        string blowText = blowups.Length > 0
            ? string.Join(", ", blowups.Select(lr => $"lr {Fmt.G(lr)} ({Times(lr, best)}): without BN {Fmt.Pct(FinalMean(o.Of(false, lr)), 1)} ({Diverged(o.Of(false, lr))}/{o.Of(false, lr).Length} diverged), with BN {Fmt.Pct(FinalMean(o.Of(true, lr)), 1)}"))
            : "none: " + string.Join(", ", baseLrs.Where(lr => lr > best && o.Has(true, lr)).Select(lr => $"lr {Fmt.G(lr)}: {Fmt.Pct(FinalMean(o.Of(false, lr)), 1)} vs {Fmt.Pct(FinalMean(o.Of(true, lr)), 1)}"));

        // (3): BN ×30 against BN ×1.
        var x1 = o.Of(true, best);
        var x30 = o.Of(true, Round(best * 30));
        double drop = FinalMean(x1) - FinalMean(x30), noise = Math.Max(FinalStd(x1), FinalStd(x30));

        string reach = double.IsFinite(bnFirst.Step)
            ? $"baseline (lr {Fmt.G(peak.Lr)}) peaks at {Fmt.Pct(peak.Value)} at step {Fmt.N((long)peak.Step)}; BN lr {Fmt.G(bnFirst.Lr)} ({Times(bnFirst.Lr, best)}) reaches it at step {Fmt.N((long)bnFirst.Step)}: {Fmt.F(factor, 1)}× fewer steps{(factor >= 3 ? " (strong)" : "")}"
            : $"baseline (lr {Fmt.G(peak.Lr)}) peaks at {Fmt.Pct(peak.Value)} at step {Fmt.N((long)peak.Step)}; no BN run reaches it";
        report.Text($"Steps to the baseline's best accuracy: {reach}.");
        var checks = new[]
        {
            new Check($"{model.Key}: some lr above lr* = {Fmt.G(best)} leaves the baseline at chance while BN trains", blowText, blowups.Length > 0),
            new Check($"{model.Key}: BN's best run reaches the baseline's best accuracy in fewer steps", reach, double.IsFinite(bnFirst.Step) && bnFirst.Step < peak.Step),
            new Check($"{model.Key}: BN ×30 ends no worse than BN ×1",
                $"×30 (lr {Fmt.G(Round(best * 30))}) {Fmt.PctMeanStd(x30.Select(r => r.Scalar("final_test_accuracy")))} vs ×1 {Fmt.PctMeanStd(x1.Select(r => r.Scalar("final_test_accuracy")))}",
                drop <= noise),
        };
        string factorText = double.IsFinite(bnFirst.Step) ? Fmt.F(factor, 1) + "×" : "never";
        string ours = $"{model.Key}: lr* {Fmt.G(best)}; baseline ×5 {Fmt.Pct(FinalMean(o.Of(false, Round(best * 5))), 1)}, ×30 {Fmt.Pct(FinalMean(o.Of(false, Round(best * 30))), 1)}; "
            + $"BN ×1/×5/×30 {string.Join("/", Multipliers.Select(m => Fmt.Pct(FinalMean(o.Of(true, Round(best * m))), 1)))}; BN reaches the baseline's best {factorText} sooner";
        return (checks, ours);
    }
}

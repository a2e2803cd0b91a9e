using NormLab.Lab.Measures;
using NormLab.Lab.Reporting;

namespace NormLab.Lab.Experiments;

/// <summary>
/// E6: internal covariate shift in Santurkar et al.'s optimization sense (2018, Definition 2.1, Fig. 3): for each layer,
/// how much its gradient changes when the layers before it take this step's update first. A ReLU MLP and a 25-layer deep
/// linear network on MNIST-10k, each with and without BN.
/// </summary>
public sealed class Ics : Experiment
{
    /// <inheritdoc/>
    public override string Name => "ics";

    /// <inheritdoc/>
    public override int Order => 5;

    /// <inheritdoc/>
    public override string Title => "E6: BN does not reduce internal covariate shift measured as gradient change (Santurkar et al. 2018, Definition 2.1, Fig. 3)";

    /// <inheritdoc/>
    public override string Claim =>
        "Measured by how much a layer's gradient changes when the layers before it are updated (‖G − G'‖₂, cos(G, G')), networks with BN have \"similar, or even worse, internal covariate shift\" "
        + "despite training better; in a deep linear network with BN, G and G' are almost uncorrelated.";

    /// <inheritdoc/>
    public override string Published =>
        "VGG on CIFAR-10 and a 25-layer deep linear network (Fig. 3, as quoted by secondary notes): \"models with BatchNorm have similar, or even worse, internal covariate shift, despite performing better in terms of accuracy and loss\"; "
        + "the effect is strongest in the DLN, where with BN G and G' look almost uncorrelated. No numbers in the text.";

    /// <inheritdoc/>
    public override string Criterion =>
        "For each network, over the layers that have layers before them (layer 1's shift is 0 by definition): for most layers (more than half), BN's median ‖G − G'‖₂ over training is not lower than the standard net's "
        + "(mean over seeds ≥ the standard's minus the two arms' seed std summed), and BN's median cos(G, G') is not higher (≤ the standard's plus the two stds); "
        + "and BN trains faster: its training loss reaches the standard net's final training loss in fewer steps.";

    private sealed record Net(string Key, string Label, int[] Widths, bool Linear, double Lr);

    private static readonly Net Mlp = new("mlp", "ReLU MLP 784-100-100-100-10", [784, 100, 100, 100, 10], false, 0.1);
    private static readonly Net Dln = new("dln", "deep linear network, 25 layers of width 32", [784, .. Enumerable.Repeat(32, 24), 10], true, 0.01);

    private static string Arm(Net net, bool bn) => $"{net.Key} {(bn ? "bn" : "standard")}";

    private static string Layer(int i) => "L" + (i + 1).ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <inheritdoc/>
    public override Finding Run(LabRun run)
    {
        long steps = run.Pick(40, 3000, 15_000);
        int icsEvery = run.Pick(20, 50, 100), evalEvery = run.Pick(20, 100, 250);
        Net[] nets = [Mlp, Dln];
        run.Plan(nets.Length * 2 * run.Seeds.Count);
        var (train, test) = run.Data.Mnist();
        foreach (var net in nets)
            foreach (bool bn in new[] { false, true })
            {
                var setup = new TrainSetup
                {
                    Build = rng => ProbeNets.Mlp(rng, net.Widths, ProbeNets.Norm(bn ? Models.NormKind.Batch : Models.NormKind.None), hiddenBias: !bn, net.Linear, lecunNormal: net.Linear),
                    Train = train, Test = test, Flat = true, Lr = net.Lr, Batch = 128, Steps = steps, EvalEvery = evalEvery,
                };
                int layers = net.Widths.Length - 1;
                run.ArmAllSeeds(Arm(net, bn), (log, seed, progress) =>
                {
                    ModelState? state = null;
                    Training.Run(setup, seed, log, progress, beforeStep: ctx =>
                    {
                        if ((ctx.Step - 1) % icsEvery != 0)
                            return;
                        state ??= new ModelState(ctx.Model);
                        var objective = NetworkObjective.CrossEntropy(ctx.Model, ctx.Input, ctx.Labels, state);
                        var ics = InternalCovariateShift.Measure(objective.Evaluate, objective.Vector.Read(), objective.Vector.WeightRanges(), ctx.Optimizer.LearningRate);
                        objective.Restore();
                        for (int i = 0; i < ics.Length; i++)
                        {
                            log.Log(ctx.Step - 1, $"ics_l2_{Layer(i)}", ics[i].Distance);
                            log.Log(ctx.Step - 1, $"ics_cos_{Layer(i)}", ics[i].Cosine);
                            log.Log(ctx.Step - 1, $"grad_norm_{Layer(i)}", ics[i].GradientNorm);
                        }
                    });
                    for (int i = 0; i < layers; i++)
                    {
                        var l2 = log.Series($"ics_l2_{Layer(i)}").Values;
                        var norm = log.Series($"grad_norm_{Layer(i)}").Values;
                        log.Set($"median_l2_{Layer(i)}", FiniteMedian(l2));
                        log.Set($"median_cos_{Layer(i)}", FiniteMedian(log.Series($"ics_cos_{Layer(i)}").Values));
                        log.Set($"median_relative_{Layer(i)}", FiniteMedian(l2.Zip(norm, (d, g) => d / g)));
                    }
                });
            }
        return Judge(run, nets, steps, icsEvery, evalEvery, train.Count);
    }

    private static double FiniteMedian(IEnumerable<double> values)
    {
        var finite = values.Where(double.IsFinite).ToArray();
        return finite.Length == 0 ? double.NaN : Stats.Median(finite);
    }

    private Finding Judge(LabRun run, Net[] nets, long steps, int icsEvery, int evalEvery, int trainCount)
    {
        var report = run.Report;
        report.Heading("Setup").Bullets([
            $"{Mlp.Label} (PyTorch's initialization) and a {Dln.Label}: 784-32×24-10, no activation, weights N(0, 1/fan_in). With BN: BatchNorm1d after every hidden Linear (which then has no bias); without: a bias instead.",
            $"MNIST-10k ({Fmt.N(trainCount)} training digits, grey levels), softmax cross-entropy, plain SGD, batch 128, {Fmt.N(steps)} steps; lr {Fmt.G(Mlp.Lr)} for the MLP and {Fmt.G(Dln.Lr)} for the DLN, the same with and without BN.",
            $"Every {icsEvery} steps, on that step's batch and before its update: G = each layer's weight gradient, G' = the same gradient after the layers before it took this step's SGD update (W − lr·∇W, their biases and BN γ, β included); the weights and BN running statistics are put back afterwards. Reported: ‖G − G'‖₂ and cos(G, G') per layer; their medians over training per seed; mean ± std over seeds.",
            $"{run.Seeds.Count} seeds per arm; both arms of a seed start from the same weights and see the same batches.",
        ]);
        report.Choice("The deep linear network's width (32), data (MNIST-10k with cross-entropy), initialization (N(0, 1/fan_in), which keeps the signal's scale through 25 linear layers) and learning rate (0.01, where the network without BN trains stably) are ours; the paper's DLN details are not available.");
        report.Choice("A ReLU MLP instead of VGG; batch 128; the update in G' is the plain SGD step the runs take (no momentum).");
        report.Choice("‖G − G'‖₂ is in each network's own gradient units; the tables also give it relative to ‖G‖ (our addition) because BN changes the gradients' scale.");

        var checks = new List<Check>();
        var ours = new List<string>();
        foreach (var net in nets)
        {
            int layers = net.Widths.Length - 1;
            var standard = run.Of(Arm(net, false));
            var bn = run.Of(Arm(net, true));
            (double Mean, double Std) At(ArmResult[] results, string scalar) => (Stats.Mean(results.Select(r => r.Scalar(scalar))), Stats.Std(results.Select(r => r.Scalar(scalar))));

            // Per layer: medians over training, mean ± std over seeds.
            var layerX = Enumerable.Range(1, layers).Select(i => (double)i).ToArray();
            var l2Chart = new Chart { Title = $"Internal covariate shift by layer, {net.Label}", XLabel = "layer", YLabel = "median over training of ‖G − G'‖₂", Markers = true, IntegerX = true, LegendOutside = true };
            var cosChart = new Chart { Title = $"cos(G, G') by layer, {net.Label}", XLabel = "layer", YLabel = "median over training of cos(G, G')", Markers = true, IntegerX = true, LegendOutside = true };
            var rows = new List<string[]>();
            int l2NotLower = 0, cosNotHigher = 0;
            for (int arm = 0; arm < 2; arm++)
            {
                var results = arm == 0 ? standard : bn;
                var l2 = Enumerable.Range(0, layers).Select(i => At(results, $"median_l2_{Layer(i)}")).ToArray();
                var cos = Enumerable.Range(0, layers).Select(i => At(results, $"median_cos_{Layer(i)}")).ToArray();
                // Layer 1's shift is 0 by definition (nothing before it moves): the chart starts at layer 2.
                l2Chart.Add(Series.MeanStd(arm == 0 ? "standard" : "+ BN", layerX[1..], l2[1..].Select(v => v.Mean).ToArray(), l2[1..].Select(v => v.Std).ToArray(), color: arm));
                cosChart.Add(Series.MeanStd(arm == 0 ? "standard" : "+ BN", layerX, cos.Select(v => v.Mean).ToArray(), cos.Select(v => v.Std).ToArray(), color: arm));
            }
            for (int i = 1; i < layers; i++)
            {
                var (sl2, sl2sd) = At(standard, $"median_l2_{Layer(i)}");
                var (bl2, bl2sd) = At(bn, $"median_l2_{Layer(i)}");
                var (scos, scossd) = At(standard, $"median_cos_{Layer(i)}");
                var (bcos, bcossd) = At(bn, $"median_cos_{Layer(i)}");
                bool l2Ok = bl2 >= sl2 - (sl2sd + bl2sd), cosOk = bcos <= scos + (scossd + bcossd);
                l2NotLower += l2Ok ? 1 : 0;
                cosNotHigher += cosOk ? 1 : 0;
                rows.Add([(i + 1).ToString(System.Globalization.CultureInfo.InvariantCulture),
                    Fmt.G(sl2) + " ± " + Fmt.G(sl2sd), Fmt.G(bl2) + " ± " + Fmt.G(bl2sd),
                    Fmt.F(At(standard, $"median_relative_{Layer(i)}").Mean, 3), Fmt.F(At(bn, $"median_relative_{Layer(i)}").Mean, 3),
                    Fmt.F(scos, 3) + " ± " + Fmt.F(scossd, 3), Fmt.F(bcos, 3) + " ± " + Fmt.F(bcossd, 3),
                    (l2Ok ? "yes" : "no") + " / " + (cosOk ? "yes" : "no")]);
            }
            report.Heading(net.Label);
            report.Plot(l2Chart, $"{net.Key}-l2-by-layer", $"{net.Label}: median ‖G − G'‖₂ per layer (layer 1 is 0 by definition), mean ± std over seeds.");
            report.Plot(cosChart, $"{net.Key}-cos-by-layer", $"{net.Label}: median cos(G, G') per layer (ideal 1).");
            report.Table(["layer", "‖G − G'‖ standard", "‖G − G'‖ BN", "‖G − G'‖/‖G‖ standard", "‖G − G'‖/‖G‖ BN", "cos standard", "cos BN", "BN not lower / cos not higher"], rows);

            // Over training, for three layers.
            int[] shown = layers > 4 ? [1, layers / 2, layers - 1] : [1, 2, 3];
            foreach (var (metric, label, log) in new[] { ("ics_l2", "‖G − G'‖₂", true), ("ics_cos", "cos(G, G')", false) })
            {
                var chart = new Chart { Title = $"{label} over training, {net.Label}", XLabel = "training step", YLabel = label, LogY = log };
                for (int k = 0; k < shown.Length; k++)
                    for (int arm = 0; arm < 2; arm++)
                    {
                        var (x, m, s) = Stats.AcrossSeeds(arm == 0 ? standard : bn, $"{metric}_{Layer(shown[k])}");
                        chart.Add(Series.MeanStd($"layer {shown[k] + 1}, {(arm == 0 ? "standard" : "+ BN")}", x, m, s, dashed: arm == 1, color: k));
                    }
                report.Plot(chart, $"{net.Key}-{metric.Replace("ics_", "")}-over-training", $"Fig. 3 analogue: {label} of three layers over training (solid: standard, dashed: BN).");
            }

            var (ls, lsm, lss) = Stats.AcrossSeeds(standard, "train_loss");
            var (lb, lbm, lbs) = Stats.AcrossSeeds(bn, "train_loss");
            var lossChart = new Chart { Title = $"Training loss, {net.Label}", XLabel = "training step", YLabel = "training cross-entropy (running mean)", LogY = Axes.Log(lsm.Concat(lbm)) };
            lossChart.Add(Series.MeanStd("standard", ls, lsm, lss, color: 0)).Add(Series.MeanStd("+ BN", lb, lbm, lbs, color: 1));
            report.Plot(lossChart, $"{net.Key}-train-loss");
            double target = lsm[^1];
            double StepsTo(double[] x, double[] curve) => Enumerable.Range(0, curve.Length).Where(k => curve[k] <= target).Select(k => x[k]).DefaultIfEmpty(double.PositiveInfinity).First();
            double standardSteps = StepsTo(ls, lsm), bnSteps = StepsTo(lb, lbm);
            string accuracy = $"final test accuracy {Fmt.PctMeanStd(standard.Select(r => r.Scalar("final_test_accuracy")))} standard, {Fmt.PctMeanStd(bn.Select(r => r.Scalar("final_test_accuracy")))} BN";
            report.Text($"{net.Label}: {accuracy}.");

            int judged = layers - 1;
            string prefix = net.Key.ToUpperInvariant() + ": ";
            checks.Add(new Check(prefix + "BN's median ‖G − G'‖₂ not lower for most layers", $"{l2NotLower} of {judged} layers", l2NotLower * 2 > judged));
            checks.Add(new Check(prefix + "BN's median cos(G, G') not higher for most layers", $"{cosNotHigher} of {judged} layers", cosNotHigher * 2 > judged));
            checks.Add(new Check(prefix + "BN reaches the standard net's final training loss in fewer steps",
                $"target {Fmt.F(target, 4)}: standard {Fmt.N((long)standardSteps)} steps, BN {(double.IsFinite(bnSteps) ? Fmt.N((long)bnSteps) : "never")}", bnSteps < standardSteps));
            ours.Add($"{net.Key.ToUpperInvariant()}: BN's shift not lower at {l2NotLower}/{judged} layers, cosine not higher at {cosNotHigher}/{judged}; {accuracy}");
        }
        return Finding.FromChecks(string.Join("; ", ours), [.. checks]);
    }
}

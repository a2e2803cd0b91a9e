using NormLab.Distributed;
using NormLab.Models;

namespace NormLab.Cli;

/// <summary>
/// What <c>normlab selftest-mpi</c> checks on every rank of a communicator (and the tests on ranks as threads): the
/// collectives' results, and that SyncBatchNorm on each rank's part of a batch gives what BatchNorm gives on the whole
/// batch — outputs, input gradients, parameter gradients summed over the ranks, running statistics (the same bits on
/// every rank) and eval outputs — for parts of unequal size, a part of one sample, an empty part and data offset by
/// 1e4; BatchNorm's error for a batch of one value per channel; a converted network's logits and gradients; and
/// data-parallel training (<see cref="DataParallel"/>) on unequal shards against training on the whole batch.
/// Every rank builds the whole batch from the same seeds and computes the single-process reference itself.
/// </summary>
internal static class DistributedChecks
{
    /// <summary>
    /// The tolerance of the equalities, relative to the tensor: ‖a − e‖∞ ≤ Rtol·‖e‖∞ + Floor. Element by element it would
    /// fail on the values that come out of cancellations (an input gradient of a three-sample batch sums to zero), where
    /// two correct float computations differ by rounding of the terms, not of the result.
    /// </summary>
    public const double Rtol = 1e-5, Floor = 1e-12;

    /// <summary>One check on one rank: the largest |a − e| as a fraction of its tolerance (≤ 1 passes), and the first failure.</summary>
    public sealed record Result(string Name, double ToleranceUsed, bool Passed, string Detail = "");

    private static readonly int[][] SampleShapes = [[11], [3, 7], [4, 5, 6]];

    /// <summary>Runs every check on this rank; every rank of <paramref name="comm"/> must call it at once.</summary>
    public static List<Result> Run(ICommunicator comm)
    {
        var results = new List<Result>();
        CheckCollectives(comm, results);
        foreach (var (label, counts) in Layouts(comm.Size))
            foreach (var shape in SampleShapes)
                CheckSyncBatchNorm(comm, results, $"{label} [N, {string.Join(", ", shape)}]", counts, shape, offset: 0);
        CheckSyncBatchNorm(comm, results, "offset 1e4 [N, 4, 5, 6]", Layouts(comm.Size)[0].Counts, [4, 5, 6], offset: 1e4f);
        CheckTooFewValues(comm, results);
        CheckModel(comm, results, "mlp", rng => Zoo.Mlp(12, [16, 16], 5, ActivationKind.ReLU, NormKind.Batch, rng: rng), [12]);
        CheckModel(comm, results, "cnn", rng => Zoo.Cnn(NormKind.Batch, rng: rng), [1, 28, 28]);
        CheckDataParallel(comm, results);
        return results;
    }

    /// <summary>Samples per rank: unequal parts, then (with more than one rank) one sample on rank 0, and an empty last rank.</summary>
    public static List<(string Label, int[] Counts)> Layouts(int size)
    {
        var layouts = new List<(string, int[])> { ("unequal", Enumerable.Range(0, size).Select(r => r + 2).ToArray()) };
        if (size > 1)
        {
            layouts.Add(("one sample on rank 0", Enumerable.Range(0, size).Select(r => r == 0 ? 1 : r + 1).ToArray()));
            layouts.Add(("empty last rank", Enumerable.Range(0, size).Select(r => r == size - 1 ? 0 : r + 2).ToArray()));
        }
        return layouts;
    }

    private static void CheckCollectives(ICommunicator comm, List<Result> results)
    {
        int k = comm.Size, rank = comm.Rank;
        var floats = Enumerable.Range(0, 9).Select(i => rank + 0.5f * i).ToArray();
        comm.AllReduceSum(floats);
        Exact(results, "AllReduceSum(float)", floats, i => k * (k - 1) / 2 + 0.5 * k * i);
        var doubles = Enumerable.Range(0, 9).Select(i => rank * 1e-3 + i).ToArray();
        comm.AllReduceSum(doubles);
        Close(results, "AllReduceSum(double)", doubles, i => 1e-3 * k * (k - 1) / 2 + k * i);
        var longs = Enumerable.Range(0, 3).Select(i => rank * 10_000_000_000L + i).ToArray();
        comm.AllReduceSum(longs);
        Exact(results, "AllReduceSum(long)", longs, i => 10_000_000_000.0 * k * (k - 1) / 2 + k * i);
        comm.AllReduceSum(Span<float>.Empty);

        var gatheredFloats = new float[3 * k];
        comm.AllGather([rank * 10f, rank * 10f + 1, rank * 10f + 2], gatheredFloats);
        Exact(results, "AllGather(float)", gatheredFloats, i => i / 3 * 10 + i % 3);
        var gatheredDoubles = new double[2 * k];
        comm.AllGather([rank + 0.25, -rank], gatheredDoubles);
        Exact(results, "AllGather(double)", gatheredDoubles, i => i % 2 == 0 ? i / 2 + 0.25 : -(i / 2));
        var gatheredLongs = new long[k];
        comm.AllGather([rank * 3_000_000_000L], gatheredLongs);
        Exact(results, "AllGather(long)", gatheredLongs, i => i * 3_000_000_000.0);

        int root = k - 1;
        var broadcastFloats = new[] { rank + 0.5f, rank * 2f };
        comm.Broadcast(broadcastFloats, root);
        Exact(results, $"Broadcast(float) from rank {root}", broadcastFloats, i => i == 0 ? root + 0.5 : root * 2);
        var broadcastDoubles = new[] { rank + 1e-9 };
        comm.Broadcast(broadcastDoubles);
        Exact(results, "Broadcast(double) from rank 0", broadcastDoubles, _ => 1e-9);
        var broadcastLongs = new[] { rank + 5_000_000_000L };
        comm.Broadcast(broadcastLongs, root);
        Exact(results, $"Broadcast(long) from rank {root}", broadcastLongs, _ => root + 5_000_000_000.0);
        comm.Barrier();
    }

    private static void CheckSyncBatchNorm(ICommunicator comm, List<Result> results, string label, int[] counts, int[] sampleShape, float offset)
    {
        int c = sampleShape[0], total = counts.Sum(), first = counts.Take(comm.Rank).Sum(), mine = counts[comm.Rank];
        int[] shape = [total, .. sampleShape];
        var reference = sampleShape.Length == 3 ? (BatchNorm)new BatchNorm2d(c) : new BatchNorm1d(c);
        var sync = new SyncBatchNorm(c, communicator: comm);
        foreach (var bn in new[] { reference, sync })
            for (int ch = 0; ch < c; ch++)
            {
                bn.Weight!.Value[ch] = 1 + 0.1f * ch;
                bn.Bias!.Value[ch] = 0.05f * ch - 0.1f;
            }
        var output = new Worst();
        var inputGradient = new Worst();
        var parameterGradients = new Worst();
        var running = new Worst();
        bool sameBits = true;
        var dGamma = new float[c];
        var dBeta = new float[c];
        for (int step = 0; step < 3; step++)
        {
            var x = Batch(100 + step, shape, offset);
            var dy = Batch(200 + step, shape, 0);
            foreach (var p in reference.Parameters().Concat(sync.Parameters()))
                p.Grad.Zero();
            var expected = reference.Forward(x);
            var expectedDx = reference.Backward(dy);
            output.Add(expected.Slice(first, mine).Span, sync.Forward(x.Slice(first, mine)).Span);
            inputGradient.Add(expectedDx.Slice(first, mine).Span, sync.Backward(dy.Slice(first, mine)).Span);
            sync.Weight!.Grad.Span.CopyTo(dGamma);
            sync.Bias!.Grad.Span.CopyTo(dBeta);
            comm.AllReduceSum(dGamma);
            comm.AllReduceSum(dBeta);
            parameterGradients.Add(reference.Weight!.Grad.Span, dGamma);
            parameterGradients.Add(reference.Bias!.Grad.Span, dBeta);
            running.Add(reference.RunningMean!.Span, sync.RunningMean!.Span);
            running.Add(reference.RunningVar!.Span, sync.RunningVar!.Span);
            sameBits &= SameOnEveryRank(comm, sync.RunningMean.Span) & SameOnEveryRank(comm, sync.RunningVar.Span);
        }
        reference.Eval();
        sync.Eval();
        var eval = new Worst();
        var evalInput = Batch(300, shape, offset);
        eval.Add(reference.Forward(evalInput).Slice(first, mine).Span, sync.Forward(evalInput.Slice(first, mine)).Span);
        string name = $"SyncBatchNorm {label}, parts [{string.Join(", ", counts)}]";
        results.Add(output.Result($"{name}: outputs"));
        results.Add(inputGradient.Result($"{name}: input gradients"));
        results.Add(parameterGradients.Result($"{name}: dγ, dβ summed over ranks"));
        results.Add(running.Result($"{name}: running statistics"));
        results.Add(new Result($"{name}: running statistics identical on every rank", 0, sameBits && sync.NumBatchesTracked == 3));
        results.Add(eval.Result($"{name}: eval outputs"));
    }

    private static void CheckTooFewValues(ICommunicator comm, List<Result> results)
    {
        var sync = new SyncBatchNorm(3, communicator: comm);
        var x = Batch(400, [comm.Rank == 0 ? 1 : 0, 3], 0);
        string message = "";
        try
        {
            sync.Forward(x);
        }
        catch (ArgumentException e)
        {
            message = e.Message;
        }
        results.Add(new Result("SyncBatchNorm: one value per channel over all ranks is BatchNorm's error on every rank", 0,
            message.Contains("expected more than 1 value per channel when training", StringComparison.Ordinal), message));
    }

    // A zoo network with its BatchNorm layers converted, on each rank's part, against the network on the whole batch.
    private static void CheckModel(ICommunicator comm, List<Result> results, string label, Func<Rng, Sequential> build, int[] sampleShape)
    {
        var counts = Layouts(comm.Size)[0].Counts;
        int total = counts.Sum(), first = counts.Take(comm.Rank).Sum(), mine = counts[comm.Rank];
        var reference = build(new Rng(7));
        var model = SyncBatchNorm.ConvertSyncBatchNorm(build(new Rng(7)), comm);
        var x = Batch(500, [total, .. sampleShape], 0);
        var logits = reference.Forward(x);
        var dy = Batch(501, [.. logits.Shape], 0);
        reference.Backward(dy);
        var output = new Worst();
        output.Add(logits.Slice(first, mine).Span, model.Forward(x.Slice(first, mine)).Span);
        model.Backward(dy.Slice(first, mine));
        var gradients = new Worst();
        foreach (var (expected, actual) in reference.Parameters().Zip(model.Parameters()))
        {
            var summed = actual.Grad.ToArray();
            comm.AllReduceSum(summed);
            gradients.Add(expected.Grad.Span, summed);
        }
        results.Add(output.Result($"converted {label}, parts [{string.Join(", ", counts)}]: logits"));
        results.Add(gradients.Result($"converted {label}, parts [{string.Join(", ", counts)}]: parameter gradients summed over ranks"));
    }

    /// <summary>Steps of the data-parallel check, and its tolerance: float sums in another order drift apart over training.</summary>
    public const int TrainingSteps = 30;

    /// <inheritdoc cref="TrainingSteps"/>
    public const double TrainingRtol = 1e-4;

    // SGD with momentum on an MLP with SyncBatchNorm: each rank starts from other weights (the broadcast must fix that),
    // takes its unequal shard of a batch of 3K + 1, and every step's loss and the final weights and running statistics
    // must be those of one process training on the whole batch, the weights bit-identical on every rank.
    private static void CheckDataParallel(ICommunicator comm, List<Result> results)
    {
        static Sequential Build(ulong seed) => Zoo.Mlp(12, [16, 16], 5, ActivationKind.ReLU, NormKind.Batch, rng: new Rng(seed));
        var reference = Build(7);
        var model = SyncBatchNorm.ConvertSyncBatchNorm(Build(7 + (ulong)comm.Rank), comm);
        var parallel = new DataParallel(model, comm);
        parallel.BroadcastState();
        var referenceSgd = new Sgd(reference.Parameters(), 0.1, 0.9);
        var sgd = new Sgd(model.Parameters(), 0.1, 0.9);
        int batch = 3 * comm.Size + 1;
        var (start, count) = parallel.Shard(batch);
        var (referenceLoss, loss) = (new SoftmaxCrossEntropy(), new SoftmaxCrossEntropy());
        var losses = new Worst(TrainingRtol);
        for (int step = 0; step < TrainingSteps; step++)
        {
            var x = Batch(600 + step, [batch, 12], 0);
            var labels = Enumerable.Range(0, batch).Select(i => (i * 7 + step) % 5).ToArray();
            referenceSgd.ZeroGrad();
            float expected = referenceLoss.Forward(reference.Forward(x), labels);
            reference.Backward(referenceLoss.Backward());
            referenceSgd.Step();

            sgd.ZeroGrad();
            float mine = loss.Forward(model.Forward(x.Slice(start, count)), labels.AsSpan(start, count));
            var gradient = loss.Backward();
            DataParallel.ScaleLossGradient(gradient, count, batch);
            model.Backward(gradient);
            var (global, _, _) = parallel.AllReduceGradients(mine * count / batch, 0, false);
            sgd.Step();
            losses.Add(expected, global);
        }
        var state = new Worst(TrainingRtol);
        bool sameBits = true;
        foreach (var (expected, actual) in reference.NamedParameters().Select(p => p.Parameter.Value).Concat(reference.NamedBuffers().Select(b => b.Value))
                     .Zip(model.NamedParameters().Select(p => p.Parameter.Value).Concat(model.NamedBuffers().Select(b => b.Value))))
        {
            state.Add(expected.Span, actual.Span);
            sameBits &= SameOnEveryRank(comm, actual.Span);
        }
        string name = $"data-parallel SGD, {TrainingSteps} steps, batch {batch} in shards of {count} (rank {comm.Rank})";
        results.Add(losses.Result($"{name}: global loss of every step"));
        results.Add(state.Result($"{name}: weights and running statistics"));
        results.Add(new Result($"{name}: weights identical on every rank", 0, sameBits));
    }

    private static Tensor Batch(int seed, int[] shape, float offset)
    {
        var t = new Tensor(shape);
        Init.Normal(t, new Rng((ulong)seed), 1.0);
        if (offset != 0)
            foreach (ref float v in t.Span)
                v = offset + 0.01f * v;
        return t;
    }

    private static bool SameOnEveryRank(ICommunicator comm, ReadOnlySpan<float> values)
    {
        var all = new float[values.Length * comm.Size];
        comm.AllGather(values, all);
        for (int r = 0; r < comm.Size; r++)
            if (!all.AsSpan(r * values.Length, values.Length).SequenceEqual(values))
                return false;
        return true;
    }

    private static void Exact<T>(List<Result> results, string name, T[] actual, Func<int, double> expected) where T : System.Numerics.INumber<T>
    {
        int wrong = Enumerable.Range(0, actual.Length).FirstOrDefault(i => double.CreateChecked(actual[i]) != expected(i), -1);
        results.Add(new Result(name, 0, wrong < 0, wrong < 0 ? "" : $"[{wrong}] = {actual[wrong]}, expected {expected(wrong)}"));
    }

    private static void Close(List<Result> results, string name, double[] actual, Func<int, double> expected)
    {
        var worst = new Worst();
        for (int i = 0; i < actual.Length; i++)
            worst.Add(expected(i), actual[i]);
        results.Add(worst.Result(name));
    }

    /// <summary>The worst of several comparisons of tensors, each by its largest difference relative to its largest value.</summary>
    private sealed class Worst(double rtol = Rtol)
    {
        private double _used;
        private string _failure = "";

        public void Add(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual)
        {
            if (expected.Length != actual.Length)
            {
                _failure = $"{actual.Length} values, expected {expected.Length}";
                return;
            }
            double scale = 0, diff = 0;
            int worst = 0;
            for (int i = 0; i < expected.Length; i++)
            {
                scale = Math.Max(scale, Math.Abs(expected[i]));
                double d = Math.Abs(actual[i] - (double)expected[i]);
                if (!(d <= diff))
                    (diff, worst) = (d, i);
            }
            Judge(diff, scale, expected.Length == 0 ? 0 : expected[worst], expected.Length == 0 ? 0 : actual[worst]);
        }

        public void Add(double expected, double actual) => Judge(Math.Abs(actual - expected), Math.Abs(expected), expected, actual);

        public Result Result(string name) => new(name, _used, _failure.Length == 0, _failure);

        // ‖a − e‖∞ ≤ Rtol·‖e‖∞ (plus a floor for all-zero tensors).
        private void Judge(double diff, double scale, double e, double a)
        {
            double used = diff / (rtol * scale + Floor);
            _used = Math.Max(_used, double.IsNaN(used) ? double.PositiveInfinity : used);
            if (!(used <= 1) && _failure.Length == 0)
                _failure = $"{a:R}, expected {e:R} (largest difference {diff:E2}, largest expected value {scale:E2})";
        }
    }
}

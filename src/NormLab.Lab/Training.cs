using NormLab.Data;
using NormLab.Distributed;

namespace NormLab.Lab;

/// <summary>How one arm trains: network, data, optimizer and budget. Every arm of an experiment shares the seeds, so arms see the same data order.</summary>
public sealed record TrainSetup
{
    /// <summary>Builds the network from the arm's seeded generator.</summary>
    public required Func<Rng, Sequential> Build { get; init; }

    /// <summary>Training images.</summary>
    public required ImageDataset Train { get; init; }

    /// <summary>Test images.</summary>
    public required ImageDataset Test { get; init; }

    /// <summary>Whether the network takes [N, 784] (MLPs) rather than [N, 1, 28, 28].</summary>
    public bool Flat { get; init; }

    /// <summary>Learning rate (the schedule multiplies it).</summary>
    public double Lr { get; init; } = 0.1;

    /// <summary>Mini-batch size.</summary>
    public int Batch { get; init; } = 60;

    /// <summary>Training steps.</summary>
    public long Steps { get; init; } = 1000;

    /// <summary>Evaluate every this many steps (and at the end).</summary>
    public int EvalEvery { get; init; } = 100;

    /// <summary>SGD momentum.</summary>
    public double Momentum { get; init; }

    /// <summary>Weight decay.</summary>
    public double WeightDecay { get; init; }

    /// <summary>Adam instead of SGD.</summary>
    public bool Adam { get; init; }

    /// <summary>Learning-rate multiplier by step (1 when null).</summary>
    public Func<long, double>? Schedule { get; init; }

    /// <summary>Clip the global gradient norm to this value (none when null).</summary>
    public double? ClipNorm { get; init; }

    /// <summary>Test images used at each evaluation (all when larger than the test set).</summary>
    public int EvalImages { get; init; } = int.MaxValue;

    /// <summary>Also evaluate (eval mode) on this many training images at each evaluation, for the train–test gap (0: off).</summary>
    public int TrainEvalImages { get; init; }

    /// <summary>Standardize inputs with the training set's pixel mean and std.</summary>
    public bool Standardize { get; init; }

    /// <summary>
    /// Data-parallel ranks (threads of this process) that share each batch of <see cref="Batch"/> images, with every
    /// BatchNorm converted to <see cref="SyncBatchNorm"/>: K ranks × B/K images equal one process at batch B. 1: no ranks.
    /// </summary>
    public int Ranks { get; init; } = 1;
}

/// <summary>The state of a step, handed to probes before the update: the model in training mode and this step's batch.</summary>
/// <param name="Step">The step about to be taken (1-based).</param>
/// <param name="Model">The network.</param>
/// <param name="Input">This step's inputs (owned by the loader; do not keep).</param>
/// <param name="Labels">This step's labels.</param>
/// <param name="Optimizer">The optimizer (its learning rate is this step's).</param>
public sealed record StepContext(long Step, Sequential Model, Tensor Input, int[] Labels, Optimizer Optimizer);

/// <summary>The lab's training loop: SGD or Adam on softmax cross-entropy, with periodic evaluation and probes.</summary>
public static class Training
{
    /// <summary>
    /// Trains one arm for <paramref name="seed"/> and logs, at every evaluation, train_loss and train_accuracy (running
    /// means since the last evaluation), test_loss and test_accuracy (eval mode), and train_eval_accuracy when asked.
    /// A non-finite loss stops the run: the scalar "diverged_step" is set and the remaining evaluations log chance
    /// accuracy (what a network of NaNs achieves). Scalars: final_test_accuracy, final_test_loss, diverged (0/1), seconds_per_step (training steps only).
    /// </summary>
    /// <param name="s">The setup.</param>
    /// <param name="seed">Seeds the network (same for every arm) and the data order. Layers that draw random numbers (dropout,
    /// noise) must take their generator from the Rng given to <see cref="TrainSetup.Build"/>, never from Rng.Global, which
    /// other threads may reseed.</param>
    /// <param name="log">Where the metrics go.</param>
    /// <param name="progress">Receives the fraction done.</param>
    /// <param name="beforeStep">A probe called before each update (measurements that need the weights and batch of the step).</param>
    /// <param name="afterEval">Called after each evaluation with the step and the model (in training mode).</param>
    /// <returns>The trained network (rank 0's with <see cref="TrainSetup.Ranks"/> &gt; 1; the probes see rank 0's shard).</returns>
    public static Sequential Run(TrainSetup s, ulong seed, ArmResult log, Action<double>? progress = null,
        Action<StepContext>? beforeStep = null, Action<long, Sequential>? afterEval = null)
    {
        if (s.Ranks == 1)
            return Run(s, seed, log, progress, beforeStep, afterEval, SingleProcess.Instance);
        // Every rank evaluates (eval mode needs no communication, and all hold the same weights), so that a divergence
        // found at an evaluation stops every rank at the same step; only rank 0 logs and calls back.
        return InProcessGroup.Run(s.Ranks, comm => comm.Rank == 0
            ? Run(s, seed, log, progress, beforeStep, afterEval, comm)
            : Run(s, seed, new ArmResult(), null, null, null, comm))[0];
    }

    private static Sequential Run(TrainSetup s, ulong seed, ArmResult log, Action<double>? progress,
        Action<StepContext>? beforeStep, Action<long, Sequential>? afterEval, ICommunicator comm)
    {
        var model = s.Build(new Rng(seed));
        if (comm.Size > 1)
            model = (Sequential)SyncBatchNorm.ConvertSyncBatchNorm(model, comm);
        var parallel = comm.Size > 1 ? new DataParallel(model, comm) : null;
        parallel?.BroadcastState();
        var (start, count) = parallel?.Shard(s.Batch) ?? (0, s.Batch);
        Tensor? batchTensor = null, shard = null;   // this rank's rows of the loader's batch, made again only when its buffer changes
        model.Train();
        Optimizer optimizer = s.Adam
            ? new Adam(model.Parameters(), s.Lr, weightDecay: s.WeightDecay)
            : new Sgd(model.Parameters(), s.Lr, s.Momentum, weightDecay: s.WeightDecay);
        var (mean, std) = s.Standardize ? DataLoader.PixelStatistics(s.Train) : (0f, 1f);
        var loader = new DataLoader(s.Train, s.Batch, dropLast: true, rng: new Rng(seed * 7919 + 104729), mean: mean, std: std);
        var loss = new SoftmaxCrossEntropy();
        var labels = new int[s.Batch];
        double lossSum = 0;
        int lossCount = 0, correct = 0, seen = 0;
        long divergedAt = 0;
        double chance = 1.0 / s.Train.Classes;
        var parameters = model.Parameters().ToArray();
        var stepClock = new System.Diagnostics.Stopwatch();
        for (long step = 1; step <= s.Steps; step++)
        {
            if (divergedAt == 0)
            {
                Tensor images, flat;
                ReadOnlySpan<int> span;
                while (!loader.TryNext(out images, out flat, out span)) { }
                span.CopyTo(labels);
                var x = s.Flat ? flat : images;
                if (parallel is not null)
                {
                    if (!ReferenceEquals(x, batchTensor))
                        (batchTensor, shard) = (x, x.Slice(start, count));
                    x = shard!;
                }
                optimizer.LearningRate = s.Lr * (s.Schedule?.Invoke(step) ?? 1.0);
                beforeStep?.Invoke(new StepContext(step, model, x, labels, optimizer));
                stepClock.Start();
                optimizer.ZeroGrad();
                var logits = model.Forward(x);
                float l = loss.Forward(logits, labels.AsSpan(start, count));
                int right = SoftmaxCrossEntropy.CountCorrect(logits, labels.AsSpan(start, count));
                if (parallel is not null)
                {
                    // The global batch's loss and gradients on every rank (DataParallel: scaled before the backward pass).
                    var gradient = loss.Backward();
                    DataParallel.ScaleLossGradient(gradient, count, s.Batch);
                    model.Backward(gradient);
                    (l, right, _) = parallel.AllReduceGradients(l * count / s.Batch, right, false);
                }
                if (!float.IsFinite(l))
                {
                    divergedAt = step;
                    log.Set("diverged_step", step);
                }
                else
                {
                    correct += right;
                    seen += labels.Length;
                    lossSum += l;
                    lossCount++;
                    if (parallel is null)
                        model.Backward(loss.Backward());
                    if (s.ClipNorm is double clip)
                        ClipGradNorm(parameters, clip);
                    optimizer.Step();
                }
                stepClock.Stop();
            }
            if (step % s.EvalEvery == 0 || step == s.Steps)
            {
                if (divergedAt == 0)
                {
                    log.Log(step, "train_loss", lossCount > 0 ? lossSum / lossCount : double.NaN);
                    log.Log(step, "train_accuracy", seen > 0 ? (double)correct / seen : double.NaN);
                    var (testLoss, testAcc) = Evaluate(model, s.Test, s.Flat, s.EvalImages, mean, std);
                    // Weights that are finite but huge can still give non-finite logits: that is divergence too.
                    if (!double.IsFinite(testLoss) && divergedAt == 0)
                    {
                        divergedAt = step;
                        log.Set("diverged_step", step);
                    }
                    log.Log(step, "test_loss", testLoss);
                    log.Log(step, "test_accuracy", divergedAt == 0 ? testAcc : chance);
                    if (s.TrainEvalImages > 0)
                        log.Log(step, "train_eval_accuracy", Evaluate(model, s.Train, s.Flat, s.TrainEvalImages, mean, std).Accuracy);
                    afterEval?.Invoke(step, model);
                }
                else
                {
                    log.Log(step, "test_loss", double.NaN);
                    log.Log(step, "test_accuracy", chance);
                    if (s.TrainEvalImages > 0)
                        log.Log(step, "train_eval_accuracy", chance);
                }
                lossSum = 0;
                lossCount = correct = seen = 0;
            }
            if ((step & 15) == 0 || step == s.Steps)
                progress?.Invoke((double)step / s.Steps);
        }
        log.Set("diverged", divergedAt > 0 ? 1 : 0);
        // Time of the training steps alone (no probes, no evaluation): what a variant costs per step.
        log.Set("seconds_per_step", stepClock.Elapsed.TotalSeconds / Math.Max(1, divergedAt > 0 ? divergedAt : s.Steps));
        log.Set("final_test_accuracy", log.Last("test_accuracy"));
        log.Set("final_test_loss", log.Last("test_loss"));
        return model;
    }

    /// <summary>Mean loss and accuracy over the first <paramref name="limit"/> images of <paramref name="data"/>, in eval mode (running statistics).</summary>
    public static (double Loss, double Accuracy) Evaluate(Sequential model, ImageDataset data, bool flat, int limit = int.MaxValue, float mean = 0f, float std = 1f)
    {
        bool wasTraining = model.Training;
        model.Eval();
        var result = Measure(model, data, flat, limit, mean, std);
        model.Train(wasTraining);
        return result;
    }

    /// <summary>Mean loss and accuracy in the model's current mode (batch statistics in training mode; running statistics are updated then).</summary>
    public static (double Loss, double Accuracy) Measure(Sequential model, ImageDataset data, bool flat, int limit = int.MaxValue, float mean = 0f, float std = 1f, int batch = 500)
    {
        int count = Math.Min(limit, data.Count);
        var loader = new DataLoader(data, batch, shuffle: false, mean: mean, std: std);
        var loss = new SoftmaxCrossEntropy();
        double lossSum = 0;
        int correct = 0, done = 0;
        while (done < count && loader.TryNext(out var images, out var flatImages, out var labels))
        {
            int n = Math.Min(labels.Length, count - done);
            var x = flat ? flatImages : images;
            if (n < labels.Length)
            {
                x = x.Slice(0, n);
                labels = labels[..n];
            }
            if (n < 2 && model.Training)
                break;   // a batch of one has no batch statistics
            var logits = model.Forward(x);
            lossSum += loss.Forward(logits, labels) * n;
            correct += SoftmaxCrossEntropy.CountCorrect(logits, labels);
            done += n;
        }
        return (lossSum / done, (double)correct / done);
    }

    /// <summary>Scales all gradients so that their global ℓ2 norm is at most <paramref name="maxNorm"/> (PyTorch's clip_grad_norm_).</summary>
    public static double ClipGradNorm(IReadOnlyList<Parameter> parameters, double maxNorm)
    {
        double sq = 0;
        foreach (var p in parameters)
            foreach (float g in p.Grad.Span)
                sq += (double)g * g;
        double norm = Math.Sqrt(sq);
        if (norm > maxNorm)
        {
            float scale = (float)(maxNorm / (norm + 1e-6));
            foreach (var p in parameters)
                System.Numerics.Tensors.TensorPrimitives.Multiply(p.Grad.Span, scale, p.Grad.Span);
        }
        return norm;
    }
}

using System.Diagnostics;
using System.Numerics.Tensors;

namespace NormLab.Distributed;

/// <summary>
/// Data-parallel training of one model on the ranks of a communicator (PyTorch's <c>DistributedDataParallel</c>, without
/// overlapping communication with the backward pass). Every rank draws the same global batch, takes its shard
/// (<see cref="Shard(int, int, int)"/>), runs forward and backward on it, and <see cref="AllReduceGradients"/> sums the gradients of all
/// ranks with one all-reduce of one fused buffer, so that every rank applies the same update.
/// </summary>
/// <remarks>
/// <para>Exactness with unequal shards: each rank's loss is a mean over its shard, so the gradient leaving the loss must be
/// scaled by shard/B (<see cref="ScaleLossGradient"/>) before the backward pass, not after it: SyncBatchNorm's backward
/// sums Σdy and Σdy·x̂ across ranks, and those sums are the global batch's only if every rank's dy is already the global
/// loss's. After that, the sum of the ranks' gradients is the gradient of the mean loss over the global batch — dγ and dβ
/// included — and no averaging follows.</para>
/// <para>No allocation per step: the fused buffer is allocated once; <see cref="AllReduceGradients"/> copies the gradients
/// in, reduces, and copies them back.</para>
/// </remarks>
public sealed class DataParallel
{
    /// <summary>Extra values that travel with the gradients: the loss, the correct count and the stop flag.</summary>
    public const int ExtraValues = 3;

    private readonly Parameter[] _parameters;
    private readonly Tensor[] _state;
    private readonly float[] _fused;
    private readonly Stopwatch _clock = new();

    /// <summary>Prepares data-parallel training of <paramref name="model"/> (its parameters and buffers, in model order).</summary>
    public DataParallel(Module model, ICommunicator communicator)
    {
        ArgumentNullException.ThrowIfNull(model);
        Communicator = communicator ?? throw new ArgumentNullException(nameof(communicator));
        _parameters = model.Parameters().ToArray();
        _state = _parameters.Select(p => p.Value).Concat(model.NamedBuffers().Select(b => b.Value)).ToArray();
        long length = _parameters.Sum(p => (long)p.Grad.Length) + ExtraValues;
        if (length > Array.MaxLength)
            throw new ArgumentException($"DataParallel: {length} gradient values do not fit one buffer.");
        _fused = new float[length];
    }

    /// <summary>The ranks.</summary>
    public ICommunicator Communicator { get; }

    /// <summary>Time spent inside this object's collectives (all-reduce and broadcast), on this rank's clock.</summary>
    public TimeSpan CommunicationTime => _clock.Elapsed;

    /// <summary>Number of gradient all-reduces so far.</summary>
    public long Reductions { get; private set; }

    /// <summary>
    /// Rank <paramref name="rank"/>'s rows of a global batch of <paramref name="batch"/>: [k·B/K, (k+1)·B/K), so the shards
    /// are disjoint, cover the batch in rank order, and differ in size by at most one when K does not divide B.
    /// </summary>
    public static (int Start, int Count) Shard(int batch, int rank, int size)
    {
        if (size < 1 || (uint)rank >= (uint)size)
            throw new ArgumentOutOfRangeException(nameof(rank), $"DataParallel: rank {rank} is not a rank of a group of {size}.");
        if (batch < 0)
            throw new ArgumentOutOfRangeException(nameof(batch), $"DataParallel: the batch size must not be negative, got {batch}.");
        int start = (int)((long)rank * batch / size), end = (int)((long)(rank + 1) * batch / size);
        return (start, end - start);
    }

    /// <summary>This rank's rows of a global batch of <paramref name="batch"/>.</summary>
    public (int Start, int Count) Shard(int batch) => Shard(batch, Communicator.Rank, Communicator.Size);

    /// <summary>Copies rank 0's parameters and buffers (running statistics) to every rank: at the start and after a resume.</summary>
    public void BroadcastState()
    {
        _clock.Start();
        foreach (var t in _state)
            Communicator.Broadcast(t.Span);
        _clock.Stop();
    }

    /// <summary>
    /// Scales the gradient of this rank's mean loss over its <paramref name="shard"/> rows to that of the global batch's
    /// mean loss (× shard/<paramref name="batch"/>), in place; call it on the loss's gradient before the backward pass.
    /// </summary>
    public static void ScaleLossGradient(Tensor lossGradient, int shard, int batch)
    {
        ArgumentNullException.ThrowIfNull(lossGradient);
        if (batch < 1 || shard < 0 || shard > batch)
            throw new ArgumentOutOfRangeException(nameof(shard), $"DataParallel: a shard of {shard} rows of a batch of {batch}.");
        if (shard != batch)
            TensorPrimitives.Multiply(lossGradient.Span, (float)shard / batch, lossGradient.Span);
    }

    /// <summary>
    /// Sums the ranks' gradients in one all-reduce, together with their shares of the loss and of the correct count and
    /// their stop requests; every rank gets the same sums.
    /// </summary>
    /// <param name="lossShare">This rank's mean loss × shard/B (the global mean loss is the sum of the shares).</param>
    /// <param name="correct">Correct predictions in this rank's shard.</param>
    /// <param name="stop">Whether this rank wants to stop after this step (Ctrl+C): any rank's request stops every rank at the same step.</param>
    /// <returns>The global batch's mean loss and correct count, and whether any rank asked to stop.</returns>
    public (float Loss, int Correct, bool Stop) AllReduceGradients(float lossShare, int correct, bool stop)
    {
        var fused = _fused.AsSpan();
        int at = 0;
        foreach (var p in _parameters)
        {
            p.Grad.Span.CopyTo(fused.Slice(at));
            at += p.Grad.Length;
        }
        fused[at] = lossShare;
        fused[at + 1] = correct;
        fused[at + 2] = stop ? 1 : 0;
        _clock.Start();
        Communicator.AllReduceSum(fused);
        _clock.Stop();
        Reductions++;
        at = 0;
        foreach (var p in _parameters)
        {
            fused.Slice(at, p.Grad.Length).CopyTo(p.Grad.Span);
            at += p.Grad.Length;
        }
        return (fused[at], (int)fused[at + 1], fused[at + 2] > 0);
    }
}

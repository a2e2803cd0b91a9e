using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;

namespace NormLab.Distributed;

/// <summary>
/// Ranks as threads of one process, for tests and for machines without MPI: <see cref="Run{TResult}"/> starts one thread per
/// rank and hands each its communicator. A collective goes through one slot per rank: every rank posts its values, waits
/// for the others, reads the slots it needs in rank order, and waits again before the slots are reused. Every rank adds
/// up the slots in rank order, so all ranks get the same bits, and the same bits on every run.
/// </summary>
/// <remarks>
/// A rank that throws ends the group: the others' collectives throw, and <see cref="Run{TResult}"/> rethrows the failing
/// rank's own exception. Ranks that disagree about a collective (which one, the element type, the length, the root) all get
/// an <see cref="ArgumentException"/>, and a rank left waiting for ranks that have returned gets an
/// <see cref="InvalidOperationException"/>, where MPI would hang. No allocation per collective once the slots have grown
/// to the largest message.
/// </remarks>
public sealed class InProcessGroup
{
    private readonly object _gate = new();
    private readonly byte[][] _slots;
    private readonly Call[] _calls;
    private long _generation;
    private int _arrived;
    private int _returned;
    private int _failedRank = -1;

    private InProcessGroup(int size)
    {
        Size = size;
        _slots = new byte[size][];
        _slots.AsSpan().Fill([]);
        _calls = new Call[size];
    }

    /// <summary>The number of ranks.</summary>
    public int Size { get; }

    /// <summary>Runs <paramref name="body"/> on <paramref name="size"/> ranks, each on its own thread, and waits for all.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="size"/> is not in [1, 1024].</exception>
    public static void Run(int size, Action<ICommunicator> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        Run(size, communicator =>
        {
            body(communicator);
            return true;
        });
    }

    /// <summary>Runs <paramref name="body"/> on <paramref name="size"/> ranks and returns their results in rank order.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="size"/> is not in [1, 1024].</exception>
    public static TResult[] Run<TResult>(int size, Func<ICommunicator, TResult> body)
    {
        if (size is < 1 or > 1024)
            throw new ArgumentOutOfRangeException(nameof(size), $"InProcessGroup: the number of ranks must be between 1 and 1024, got {size}.");
        ArgumentNullException.ThrowIfNull(body);
        var group = new InProcessGroup(size);
        var results = new TResult[size];
        var errors = new Exception?[size];
        var threads = new Thread[size];
        for (int r = 0; r < size; r++)
        {
            int rank = r;
            threads[r] = new Thread(() =>
            {
                try
                {
                    results[rank] = body(new Member(group, rank));
                    group.Return();
                }
                catch (Exception e)
                {
                    errors[rank] = e;
                    group.Fail(rank);
                }
            })
            { IsBackground = true, Name = $"rank {rank} of {size}" };
        }
        foreach (var thread in threads)
            thread.Start();
        foreach (var thread in threads)
            thread.Join();
        if (group._failedRank >= 0)
            ExceptionDispatchInfo.Throw(errors[group._failedRank]!);
        return results;
    }

    private enum Collective
    {
        AllReduceSum,
        AllGather,
        Broadcast,
        Barrier,
    }

    private readonly record struct Call(Collective Collective, Type Element, int Length, int Root)
    {
        public override string ToString() =>
            Collective == Collective.Barrier ? "Barrier" : $"{Collective}({Element.Name}, {Length} values{(Collective == Collective.Broadcast ? $", root {Root}" : "")})";
    }

    private void AllReduceSum<T>(int rank, Span<T> values) where T : unmanaged, INumber<T>
    {
        var error = Exchange(rank, new Call(Collective.AllReduceSum, typeof(T), values.Length, -1), values, rank);
        if (error is null)
        {
            Slot<T>(0, values.Length).CopyTo(values);
            for (int r = 1; r < Size; r++)
                TensorPrimitives.Add(values, Slot<T>(r, values.Length), values);
        }
        Finish(rank, error);
    }

    private void AllGather<T>(int rank, ReadOnlySpan<T> send, Span<T> receive) where T : unmanaged
    {
        Collectives.CheckGather(send, receive, Size);
        var error = Exchange(rank, new Call(Collective.AllGather, typeof(T), send.Length, -1), send, rank);
        if (error is null)
            for (int r = 0; r < Size; r++)
                Slot<T>(r, send.Length).CopyTo(receive.Slice(r * send.Length, send.Length));
        Finish(rank, error);
    }

    private void Broadcast<T>(int rank, Span<T> values, int root) where T : unmanaged
    {
        Collectives.CheckRoot(root, Size);
        var error = Exchange(rank, new Call(Collective.Broadcast, typeof(T), values.Length, root), values, root);
        if (error is null && rank != root)
            Slot<T>(root, values.Length).CopyTo(values);
        Finish(rank, error);
    }

    private void Barrier(int rank) => Finish(rank, Exchange<byte>(rank, new Call(Collective.Barrier, typeof(byte), 0, -1), [], -1));

    // Posts this rank's call (and its values if it is `poster`), waits for every rank, and says what is wrong if the
    // calls differ; the same message on every rank, since each compares the calls with rank 0's.
    private string? Exchange<T>(int rank, Call call, ReadOnlySpan<T> values, int poster) where T : unmanaged
    {
        _calls[rank] = call;
        if (rank == poster)
        {
            var bytes = MemoryMarshal.AsBytes(values);
            if (_slots[rank].Length < bytes.Length)
                _slots[rank] = new byte[Math.Max(bytes.Length, 2 * _slots[rank].Length)];
            bytes.CopyTo(_slots[rank]);
        }
        Wait(rank);
        for (int r = 1; r < Size; r++)
            if (_calls[r] != _calls[0])
                return $"InProcessGroup: the ranks called different collectives: rank 0 {_calls[0]}, rank {r} {_calls[r]}.";
        return null;
    }

    // The second wait: no rank posts into the slots again before every rank has read them.
    private void Finish(int rank, string? error)
    {
        Wait(rank);
        if (error is not null)
            throw new ArgumentException(error);
    }

    private ReadOnlySpan<T> Slot<T>(int rank, int length) where T : unmanaged =>
        MemoryMarshal.Cast<byte, T>(_slots[rank].AsSpan()).Slice(0, length);

    private void Wait(int rank)
    {
        lock (_gate)
        {
            long generation = _generation;
            ThrowIfBroken(rank);
            if (++_arrived == Size)
            {
                _arrived = 0;
                _generation++;
                Monitor.PulseAll(_gate);
                return;
            }
            while (generation == _generation)
            {
                ThrowIfBroken(rank);
                Monitor.Wait(_gate);
            }
        }
    }

    private void ThrowIfBroken(int rank)
    {
        if (_failedRank >= 0)
            throw new InvalidOperationException($"InProcessGroup: rank {rank} cannot continue, rank {_failedRank} failed.");
        if (_returned > 0)
            throw new InvalidOperationException(
                $"InProcessGroup: rank {rank} waits in a collective that {_returned} rank(s) will never join (they returned): the ranks called different numbers of collectives.");
    }

    private void Return()
    {
        lock (_gate)
        {
            _returned++;
            Monitor.PulseAll(_gate);
        }
    }

    private void Fail(int rank)
    {
        lock (_gate)
        {
            if (_failedRank < 0)
                _failedRank = rank;
            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>One rank's view of the group.</summary>
    private sealed class Member(InProcessGroup group, int rank) : ICommunicator
    {
        public int Rank => rank;

        public int Size => group.Size;

        public void AllReduceSum(Span<float> values) => group.AllReduceSum(rank, values);

        public void AllReduceSum(Span<double> values) => group.AllReduceSum(rank, values);

        public void AllReduceSum(Span<long> values) => group.AllReduceSum(rank, values);

        public void AllGather(ReadOnlySpan<float> send, Span<float> receive) => group.AllGather(rank, send, receive);

        public void AllGather(ReadOnlySpan<double> send, Span<double> receive) => group.AllGather(rank, send, receive);

        public void AllGather(ReadOnlySpan<long> send, Span<long> receive) => group.AllGather(rank, send, receive);

        public void Broadcast(Span<float> values, int root = 0) => group.Broadcast(rank, values, root);

        public void Broadcast(Span<double> values, int root = 0) => group.Broadcast(rank, values, root);

        public void Broadcast(Span<long> values, int root = 0) => group.Broadcast(rank, values, root);

        public void Barrier() => group.Barrier(rank);

        public override string ToString() => $"InProcessGroup rank {rank} of {group.Size}";
    }
}

namespace NormLab.Distributed;

/// <summary>The group of one: rank 0 of 1, every collective a copy or nothing.</summary>
public sealed class SingleProcess : ICommunicator
{
    private SingleProcess()
    {
    }

    /// <summary>The one instance.</summary>
    public static SingleProcess Instance { get; } = new();

    /// <inheritdoc/>
    public int Rank => 0;

    /// <inheritdoc/>
    public int Size => 1;

    /// <inheritdoc/>
    public void AllReduceSum(Span<float> values)
    {
    }

    /// <inheritdoc/>
    public void AllReduceSum(Span<double> values)
    {
    }

    /// <inheritdoc/>
    public void AllReduceSum(Span<long> values)
    {
    }

    /// <inheritdoc/>
    public void AllGather(ReadOnlySpan<float> send, Span<float> receive) => Gather(send, receive);

    /// <inheritdoc/>
    public void AllGather(ReadOnlySpan<double> send, Span<double> receive) => Gather(send, receive);

    /// <inheritdoc/>
    public void AllGather(ReadOnlySpan<long> send, Span<long> receive) => Gather(send, receive);

    /// <inheritdoc/>
    public void Broadcast(Span<float> values, int root = 0) => Collectives.CheckRoot(root, 1);

    /// <inheritdoc/>
    public void Broadcast(Span<double> values, int root = 0) => Collectives.CheckRoot(root, 1);

    /// <inheritdoc/>
    public void Broadcast(Span<long> values, int root = 0) => Collectives.CheckRoot(root, 1);

    /// <inheritdoc/>
    public void Barrier()
    {
    }

    /// <inheritdoc/>
    public override string ToString() => "SingleProcess";

    private static void Gather<T>(ReadOnlySpan<T> send, Span<T> receive)
    {
        Collectives.CheckGather(send, receive, 1);
        send.CopyTo(receive);
    }
}

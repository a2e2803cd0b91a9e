namespace NormLab.Distributed;

/// <summary>
/// A group of <see cref="Size"/> processes (ranks) that exchange values: the collectives of MPI that data-parallel training
/// and <see cref="SyncBatchNorm"/> need. Every rank must call the same collectives in the same order with the same lengths
/// (and the same root); a collective returns when every rank has joined it.
/// </summary>
/// <remarks>
/// Implementations: <see cref="SingleProcess"/> (one rank, no communication), <see cref="InProcessGroup"/> (ranks as
/// threads of one process, for tests and machines without MPI) and <see cref="MpiCommunicator"/> (Open MPI).
/// Outputs must not overlap inputs unless a method says otherwise.
/// </remarks>
public interface ICommunicator
{
    /// <summary>This process's index in the group, 0 ≤ Rank &lt; Size.</summary>
    int Rank { get; }

    /// <summary>The number of ranks.</summary>
    int Size { get; }

    /// <summary>Replaces <paramref name="values"/> on every rank by their element-wise sum over the ranks.</summary>
    void AllReduceSum(Span<float> values);

    /// <inheritdoc cref="AllReduceSum(Span{float})"/>
    void AllReduceSum(Span<double> values);

    /// <inheritdoc cref="AllReduceSum(Span{float})"/>
    void AllReduceSum(Span<long> values);

    /// <summary>
    /// Concatenates every rank's <paramref name="send"/> in rank order into <paramref name="receive"/> on every rank
    /// (<c>receive.Length = Size·send.Length</c>).
    /// </summary>
    void AllGather(ReadOnlySpan<float> send, Span<float> receive);

    /// <inheritdoc cref="AllGather(ReadOnlySpan{float}, Span{float})"/>
    void AllGather(ReadOnlySpan<double> send, Span<double> receive);

    /// <inheritdoc cref="AllGather(ReadOnlySpan{float}, Span{float})"/>
    void AllGather(ReadOnlySpan<long> send, Span<long> receive);

    /// <summary>Copies <paramref name="values"/> of rank <paramref name="root"/> into <paramref name="values"/> of every other rank.</summary>
    void Broadcast(Span<float> values, int root = 0);

    /// <inheritdoc cref="Broadcast(Span{float}, int)"/>
    void Broadcast(Span<double> values, int root = 0);

    /// <inheritdoc cref="Broadcast(Span{float}, int)"/>
    void Broadcast(Span<long> values, int root = 0);

    /// <summary>Returns when every rank has called it.</summary>
    void Barrier();
}

namespace NormLab.Distributed;

/// <summary>The argument checks every communicator makes, with the same messages.</summary>
internal static class Collectives
{
    public static void CheckGather<T>(ReadOnlySpan<T> send, Span<T> receive, int size)
    {
        if ((long)send.Length * size != receive.Length)
            throw new ArgumentException(
                $"AllGather: {size} ranks sending {send.Length} values each need a receive buffer of {(long)send.Length * size}, got {receive.Length}.");
        if (receive.Overlaps(send))
            throw new ArgumentException("AllGather: the receive buffer overlaps the send buffer.");
    }

    public static void CheckRoot(int root, int size)
    {
        if ((uint)root >= (uint)size)
            throw new ArgumentOutOfRangeException(nameof(root), $"Broadcast: root {root} is not a rank of a group of {size}.");
    }
}

namespace NormLab.Distributed;

/// <summary>
/// MPI_COMM_WORLD of Open MPI, through P/Invoke: the processes that <c>mpirun -np K</c> started, on one host or many. A
/// process started without mpirun is a group of one.
/// </summary>
/// <remarks>
/// <para>Errors return (MPI_ERRORS_RETURN) and become <see cref="MpiException"/>s. A rank that dies or exits without
/// <see cref="Dispose"/> makes mpirun end the whole job, so a failure on one rank never leaves the others waiting.</para>
/// <para>Collectives pass the caller's memory to MPI (all-reduce in place), so they allocate nothing. Open MPI maps
/// temporary buffers per call for large messages (about 35 ms for 16M floats at np = 2, 0.35 µs for 8): send a step's
/// values in one call rather than many.</para>
/// </remarks>
public sealed unsafe class MpiCommunicator : ICommunicator, IDisposable
{
    private static readonly Lock Gate = new();
    private static MpiCommunicator? _world;
    private readonly bool _initializedHere;
    private bool _disposed;

    private MpiCommunicator(bool initializedHere, int rank, int size)
    {
        _initializedHere = initializedHere;
        Rank = rank;
        Size = size;
    }

    /// <inheritdoc/>
    public int Rank { get; }

    /// <inheritdoc/>
    public int Size { get; }

    /// <summary>
    /// MPI_COMM_WORLD, initializing MPI on the first call (MPI_THREAD_SERIALIZED: any thread may call, one at a time).
    /// Later calls return the same communicator until it is disposed.
    /// </summary>
    /// <exception cref="MpiException">No Open MPI here, or it failed to start.</exception>
    /// <exception cref="InvalidOperationException">MPI was already finalized in this process (it starts once per process).</exception>
    public static MpiCommunicator World()
    {
        lock (Gate)
        {
            if (_world is not null)
                return _world;
            OpenMpi.Load();
            int finalized, initialized, provided, rank, size, longSize;
            OpenMpi.Check(OpenMpi.Finalized(&finalized), "MPI_Finalized");
            if (finalized != 0)
                throw new InvalidOperationException("MPI: MPI was finalized in this process and cannot start again.");
            OpenMpi.Check(OpenMpi.Initialized(&initialized), "MPI_Initialized");
            if (initialized == 0)
            {
                OpenMpi.Check(OpenMpi.InitThread(null, null, OpenMpi.ThreadSerialized, &provided), "MPI_Init_thread");
                if (provided < OpenMpi.ThreadSerialized)
                    throw new MpiException($"MPI: this Open MPI offers thread level {provided}; NormLab needs MPI_THREAD_SERIALIZED ({OpenMpi.ThreadSerialized}).");
            }
            OpenMpi.Check(OpenMpi.CommSetErrhandler(OpenMpi.CommWorld, OpenMpi.ErrorsReturn), "MPI_Comm_set_errhandler");
            OpenMpi.Check(OpenMpi.TypeSize(OpenMpi.Long, &longSize), "MPI_Type_size");
            if (longSize != sizeof(long))
                throw new MpiException($"MPI: MPI_LONG has {longSize} bytes here, not the {sizeof(long)} of a .NET long.");
            OpenMpi.Check(OpenMpi.CommRank(OpenMpi.CommWorld, &rank), "MPI_Comm_rank");
            OpenMpi.Check(OpenMpi.CommSize(OpenMpi.CommWorld, &size), "MPI_Comm_size");
            _world = new MpiCommunicator(initialized == 0, rank, size);
            return _world;
        }
    }

    /// <inheritdoc/>
    public void AllReduceSum(Span<float> values) => AllReduce(values, OpenMpi.Float);

    /// <inheritdoc/>
    public void AllReduceSum(Span<double> values) => AllReduce(values, OpenMpi.Double);

    /// <inheritdoc/>
    public void AllReduceSum(Span<long> values) => AllReduce(values, OpenMpi.Long);

    /// <inheritdoc/>
    public void AllGather(ReadOnlySpan<float> send, Span<float> receive) => Gather(send, receive, OpenMpi.Float);

    /// <inheritdoc/>
    public void AllGather(ReadOnlySpan<double> send, Span<double> receive) => Gather(send, receive, OpenMpi.Double);

    /// <inheritdoc/>
    public void AllGather(ReadOnlySpan<long> send, Span<long> receive) => Gather(send, receive, OpenMpi.Long);

    /// <inheritdoc/>
    public void Broadcast(Span<float> values, int root = 0) => Bcast(values, root, OpenMpi.Float);

    /// <inheritdoc/>
    public void Broadcast(Span<double> values, int root = 0) => Bcast(values, root, OpenMpi.Double);

    /// <inheritdoc/>
    public void Broadcast(Span<long> values, int root = 0) => Bcast(values, root, OpenMpi.Long);

    /// <inheritdoc/>
    public void Barrier()
    {
        CheckOpen();
        OpenMpi.Check(OpenMpi.Barrier(OpenMpi.CommWorld), "MPI_Barrier");
    }

    /// <summary>
    /// Finalizes MPI if <see cref="World"/> initialized it. Every rank must call it (it synchronizes); a rank that fails
    /// should exit without it, and mpirun ends the job.
    /// </summary>
    public void Dispose()
    {
        lock (Gate)
        {
            if (_disposed)
                return;
            _disposed = true;
            if (_initializedHere)
                OpenMpi.Check(OpenMpi.Finalize(), "MPI_Finalize");
        }
    }

    /// <inheritdoc/>
    public override string ToString() => $"MPI rank {Rank} of {Size}";

    private void AllReduce<T>(Span<T> values, nint datatype) where T : unmanaged
    {
        CheckOpen();
        fixed (T* p = values)
            OpenMpi.Check(OpenMpi.Allreduce(OpenMpi.InPlace, p, values.Length, datatype, OpenMpi.Sum, OpenMpi.CommWorld), "MPI_Allreduce");
    }

    private void Gather<T>(ReadOnlySpan<T> send, Span<T> receive, nint datatype) where T : unmanaged
    {
        CheckOpen();
        Collectives.CheckGather(send, receive, Size);
        fixed (T* ps = send, pr = receive)
            OpenMpi.Check(OpenMpi.Allgather(ps, send.Length, datatype, pr, send.Length, datatype, OpenMpi.CommWorld), "MPI_Allgather");
    }

    private void Bcast<T>(Span<T> values, int root, nint datatype) where T : unmanaged
    {
        CheckOpen();
        Collectives.CheckRoot(root, Size);
        fixed (T* p = values)
            OpenMpi.Check(OpenMpi.Bcast(p, values.Length, datatype, root, OpenMpi.CommWorld), "MPI_Bcast");
    }

    private void CheckOpen() => ObjectDisposedException.ThrowIf(_disposed, this);
}

namespace NormLab.Distributed;

/// <summary>
/// MPI could not be loaded or started, or a collective failed. An <see cref="IOException"/>: the communication between
/// processes failed, and the CLI reports it as one line like any other I/O error.
/// </summary>
public sealed class MpiException(string message) : IOException(message);

namespace NormLab;

/// <summary>A file NormLab reads is malformed; the message names the file and what is wrong.</summary>
public sealed class NormLabFormatException : Exception
{
    /// <summary>Creates the exception.</summary>
    public NormLabFormatException(string message, Exception? inner = null) : base(message, inner)
    {
    }
}

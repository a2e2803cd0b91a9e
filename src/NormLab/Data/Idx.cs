using System.Buffers.Binary;
using System.IO.Compression;

namespace NormLab.Data;

/// <summary>
/// Reader of IDX files (the MNIST format), gzipped or raw: magic 0x0000 + type byte 0x08 (unsigned byte) + rank byte,
/// big-endian u32 dimensions, then the data. Every defect is reported with the file name and what is wrong.
/// </summary>
/// <remarks>
/// Nothing is allocated for what a header merely claims: raw data are checked against the file's length first, and gzip
/// data are decompressed twice, once to count them (stopping as soon as they exceed the header's promise, which defuses
/// gzip bombs) and once into an array of exactly the size the header gives.
/// </remarks>
public static class Idx
{
    /// <summary>Reads an unsigned-byte IDX file, gzipped (detected by its magic bytes) or raw; returns its dimensions and data.</summary>
    /// <exception cref="NormLabFormatException">The file is missing, truncated, corrupt, or not an unsigned-byte IDX file.</exception>
    public static (int[] Dims, byte[] Data) Read(string path) =>
        ReadFrom(() => new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0), path);

    /// <summary>Parses the bytes of an IDX file, gzipped or raw; <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="NormLabFormatException">The bytes are truncated, corrupt, or not an unsigned-byte IDX file.</exception>
    public static (int[] Dims, byte[] Data) Parse(byte[] bytes, string source) =>
        ReadFrom(() => new MemoryStream(bytes, writable: false), source);

    private static (int[] Dims, byte[] Data) ReadFrom(Func<Stream> open, string source)
    {
        try
        {
            long length;
            bool gzip;
            using (var probe = open())
            {
                length = probe.Length;
                Span<byte> magic = stackalloc byte[2];
                gzip = probe.ReadAtLeast(magic, 2, throwOnEndOfStream: false) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
            }
            return gzip ? ReadGzip(open, source) : ReadRaw(open, length, source);
        }
        catch (InvalidDataException e)
        {
            throw new NormLabFormatException($"{source}: corrupt or truncated gzip data: {e.Message}", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new NormLabFormatException($"{source}: cannot read the file: {e.Message}", e);
        }
    }

    private static (int[] Dims, byte[] Data) ReadRaw(Func<Stream> open, long length, string source)
    {
        using var stream = open();
        var (dims, headerLength, count) = ReadHeader(stream, source, "");
        long available = length - headerLength;
        if (available != count)
            throw Mismatch(source, dims, count, available, $"the file has {available}");
        var data = new byte[count];
        stream.ReadExactly(data);
        return (dims, data);
    }

    private static (int[] Dims, byte[] Data) ReadGzip(Func<Stream> open, string source)
    {
        const string Decompressed = " (decompressed)";
        using (var stream = new GZipStream(open(), CompressionMode.Decompress))
        {
            var (dims, _, count) = ReadHeader(stream, source, Decompressed);
            // Reading to the end also makes the stream check the gzip trailer's CRC and length.
            long available = Drain(stream, count + 1);
            if (available != count)
                throw Mismatch(source, dims, count, available, available < count ? $"the decompressed file has {available}" : "the decompressed file has more");
            CheckTrailer(open, count + 4 + 4 * dims.Length, source);
        }
        using (var stream = new GZipStream(open(), CompressionMode.Decompress))
        {
            var (dims, _, count) = ReadHeader(stream, source, Decompressed);
            var data = new byte[count];
            stream.ReadExactly(data);
            return (dims, data);
        }
    }

    /// <summary>
    /// The inflater checks the trailer's CRC and length only if it gets to read them: a file cut within its last 8 bytes
    /// ends silently. The length field in the file's last 4 bytes must therefore match what was decompressed (which also
    /// requires a single gzip member, as gzip writes).
    /// </summary>
    private static void CheckTrailer(Func<Stream> open, long decompressed, string source)
    {
        using var stream = open();
        Span<byte> isize = stackalloc byte[4];
        stream.Seek(-4, SeekOrigin.End);
        stream.ReadExactly(isize);
        uint expected = unchecked((uint)decompressed);
        uint stored = BinaryPrimitives.ReadUInt32LittleEndian(isize);
        if (stored != expected)
            throw new NormLabFormatException(
                $"{source}: the gzip trailer ends in length {stored}, but the data decompress to {decompressed} bytes: the file is truncated, or holds more than one gzip member.");
    }

    /// <summary>Reads and validates the header; returns the dimensions, the header's length and the data bytes they describe.</summary>
    private static (int[] Dims, int HeaderLength, long Count) ReadHeader(Stream stream, string source, string how)
    {
        Span<byte> header = stackalloc byte[4 + 4 * 255];
        int got = stream.ReadAtLeast(header[..4], 4, throwOnEndOfStream: false);
        if (got < 4)
            throw new NormLabFormatException($"{source}: truncated IDX file{how} ({got} bytes, the header alone needs 4).");
        if (header[0] != 0 || header[1] != 0)
            throw new NormLabFormatException($"{source}: wrong magic number 0x{header[0]:X2}{header[1]:X2}{header[2]:X2}{header[3]:X2}: not an IDX file.");
        if (header[2] != 0x08)
            throw new NormLabFormatException($"{source}: IDX data type 0x{header[2]:X2} is not supported (only 0x08, unsigned byte).");
        int rank = header[3];
        if (rank is < 1 or > 4)
            throw new NormLabFormatException($"{source}: IDX rank {rank} is outside 1..4.");
        int headerLength = 4 + 4 * rank;
        got = 4 + stream.ReadAtLeast(header[4..headerLength], 4 * rank, throwOnEndOfStream: false);
        if (got < headerLength)
            throw new NormLabFormatException($"{source}: truncated IDX header{how} ({got} bytes, rank {rank} needs {headerLength}).");
        var dims = new int[rank];
        long count = 1;
        for (int i = 0; i < rank; i++)
        {
            uint d = BinaryPrimitives.ReadUInt32BigEndian(header[(4 + 4 * i)..]);
            if (d > int.MaxValue)
                throw new NormLabFormatException($"{source}: dimension {i} is {d}, too large.");
            dims[i] = (int)d;
            // Both factors are below 2^31, so the product cannot overflow before it is compared.
            count *= d;
            if (count > Array.MaxLength)
                throw new NormLabFormatException($"{source}: dimensions [{string.Join(", ", dims.Take(i + 1))}] describe {count} bytes, more than an array can hold.");
        }
        return (dims, headerLength, count);
    }

    private static NormLabFormatException Mismatch(string source, int[] dims, long count, long available, string has) =>
        new($"{source}: {(available < count ? "truncated" : "unexpected bytes after the data")}: dimensions [{string.Join(", ", dims)}] need {count} data bytes, {has}.");

    /// <summary>Reads and discards up to <paramref name="limit"/> bytes; returns how many there were.</summary>
    private static long Drain(Stream stream, long limit)
    {
        Span<byte> scratch = stackalloc byte[16384];
        long total = 0;
        while (total < limit)
        {
            int read = stream.Read(scratch[..(int)Math.Min(scratch.Length, limit - total)]);
            if (read == 0)
                break;
            total += read;
        }
        return total;
    }
}

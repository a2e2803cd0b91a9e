using System.Buffers.Binary;
using System.IO.Compression;

namespace NormLab.Data;

/// <summary>
/// Reader of IDX files (the MNIST format), gzipped or raw: magic 0x0000 + type byte 0x08 (unsigned byte) + rank byte,
/// big-endian u32 dimensions, then the data. Every defect is reported with the file name and what is wrong.
/// </summary>
public static class Idx
{
    private const long MaxBytes = 1L << 31;

    /// <summary>Reads an unsigned-byte IDX file; returns its dimensions and data.</summary>
    /// <exception cref="NormLabFormatException">The file is missing, truncated, or not an unsigned-byte IDX file.</exception>
    public static (int[] Dims, byte[] Data) Read(string path)
    {
        byte[] raw;
        try
        {
            raw = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new NormLabFormatException($"{path}: cannot read the file: {e.Message}", e);
        }
        if (raw.Length >= 2 && raw[0] == 0x1f && raw[1] == 0x8b)
            raw = Gunzip(raw, path);
        return Parse(raw, path);
    }

    /// <summary>Parses the bytes of an uncompressed IDX file; <paramref name="source"/> names it in errors.</summary>
    public static (int[] Dims, byte[] Data) Parse(ReadOnlySpan<byte> bytes, string source)
    {
        if (bytes.Length < 4)
            throw new NormLabFormatException($"{source}: truncated IDX file ({bytes.Length} bytes, the header alone needs 4).");
        if (bytes[0] != 0 || bytes[1] != 0)
            throw new NormLabFormatException($"{source}: wrong magic number 0x{bytes[0]:X2}{bytes[1]:X2}{bytes[2]:X2}{bytes[3]:X2}: not an IDX file.");
        if (bytes[2] != 0x08)
            throw new NormLabFormatException($"{source}: IDX data type 0x{bytes[2]:X2} is not supported (only 0x08, unsigned byte).");
        int rank = bytes[3];
        if (rank is < 1 or > 4)
            throw new NormLabFormatException($"{source}: IDX rank {rank} is outside 1..4.");
        int headerLength = 4 + 4 * rank;
        if (bytes.Length < headerLength)
            throw new NormLabFormatException($"{source}: truncated IDX header ({bytes.Length} bytes, rank {rank} needs {headerLength}).");
        var dims = new int[rank];
        long count = 1;
        for (int i = 0; i < rank; i++)
        {
            uint d = BinaryPrimitives.ReadUInt32BigEndian(bytes.Slice(4 + 4 * i));
            if (d > int.MaxValue)
                throw new NormLabFormatException($"{source}: dimension {i} is {d}, too large.");
            dims[i] = (int)d;
            count *= d;
            if (count > MaxBytes)
                throw new NormLabFormatException($"{source}: dimensions [{string.Join(", ", dims.Take(i + 1))}] describe more than 2 GiB of data.");
        }
        long available = bytes.Length - headerLength;
        if (available < count)
            throw new NormLabFormatException($"{source}: truncated: dimensions [{string.Join(", ", dims)}] need {count} data bytes, the file has {available}.");
        if (available > count)
            throw new NormLabFormatException($"{source}: {available - count} unexpected bytes after the data of dimensions [{string.Join(", ", dims)}].");
        return (dims, bytes.Slice(headerLength).ToArray());
    }

    private static byte[] Gunzip(byte[] raw, string path)
    {
        try
        {
            using var gz = new GZipStream(new MemoryStream(raw), CompressionMode.Decompress);
            using var output = new MemoryStream();
            var buffer = new byte[1 << 16];
            int read;
            while ((read = gz.Read(buffer)) > 0)
            {
                output.Write(buffer, 0, read);
                if (output.Length > MaxBytes)
                    throw new NormLabFormatException($"{path}: decompresses to more than 2 GiB.");
            }
            return output.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw new NormLabFormatException($"{path}: corrupt or truncated gzip data: {e.Message}", e);
        }
    }
}

using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;

namespace NormLab;

/// <summary>
/// The reader, as strict as Hugging Face's own (safetensors/src/tensor.rs: <c>read_metadata</c>, <c>Metadata::validate</c>):
/// header at most 100 MB, UTF-8 JSON starting with '{', known dtypes, offsets that tile the data exactly, each span the size
/// its dtype and shape give. The whole header is validated before any tensor data are allocated, so a file costs its own
/// size in memory, never what a corrupt header claims.
/// </summary>
public static partial class SafeTensors
{
    private const ulong MaxHeader = 100_000_000;

    // A header nests no deeper than root object → tensor entry → shape array; one level of slack.
    private const int MaxDepth = 4;

    // NumPy's limit on dimensions; it also keeps a shape array from outgrowing the header text it came from.
    private const int MaxRank = 64;

    private static readonly Dictionary<string, int> ElementSizes = new()
    {
        ["F64"] = 8, ["F32"] = 4, ["F16"] = 2, ["BF16"] = 2, ["F8_E5M2"] = 1, ["F8_E4M3"] = 1, ["I64"] = 8, ["I32"] = 4, ["I16"] = 2,
        ["I8"] = 1, ["U64"] = 8, ["U32"] = 4, ["U16"] = 2, ["U8"] = 1, ["BOOL"] = 1,
    };

    private readonly record struct Entry(string Name, string DType, long[] Shape, long Begin, long End);

    private delegate void ReadAt(Span<byte> into, long offset);

    /// <summary>Reads every tensor and the metadata of a file.</summary>
    /// <exception cref="NormLabFormatException">The file cannot be read, is truncated, or its header is malformed; the message names the file and the defect.</exception>
    public static (Dictionary<string, SafeTensor> Tensors, Dictionary<string, string> Metadata) Read(string path)
    {
        try
        {
            using var handle = File.OpenHandle(path);
            return Load(RandomAccess.GetLength(handle), (into, offset) => Fill(handle, into, offset), path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new NormLabFormatException($"{path}: cannot read the file: {e.Message}", e);
        }
    }

    /// <summary>Parses a file's bytes; <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="NormLabFormatException">The bytes are truncated or the header is malformed.</exception>
    public static (Dictionary<string, SafeTensor> Tensors, Dictionary<string, string> Metadata) Parse(byte[] bytes, string source) =>
        Load(bytes.Length, (into, offset) => bytes.AsSpan(checked((int)offset), into.Length).CopyTo(into), source);

    private static void Fill(SafeFileHandle handle, Span<byte> into, long offset)
    {
        while (into.Length > 0)
        {
            int read = RandomAccess.Read(handle, into, offset);
            if (read == 0)
                throw new EndOfStreamException("the file ended early; did it change while being read?");
            into = into[read..];
            offset += read;
        }
    }

    private static (Dictionary<string, SafeTensor> Tensors, Dictionary<string, string> Metadata) Load(long length, ReadAt read, string source)
    {
        if (length < 8)
            throw Bad(source, $"{length} bytes is too short for the 8-byte header length");
        Span<byte> prefix = stackalloc byte[8];
        read(prefix, 0);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (n < 2)
            throw Bad(source, $"header length {n} is too short for a JSON object");
        if (n > MaxHeader)
            throw Bad(source, $"header length {n} exceeds the limit of {MaxHeader} bytes");
        if (n > (ulong)(length - 8))
            throw Bad(source, $"header length {n} runs past the end of the file of {length} bytes");
        var header = new byte[n];
        read(header, 8);
        long dataStart = 8 + (long)n;
        var (entries, metadata) = ParseHeader(header, length - dataStart, source);
        var tensors = new Dictionary<string, SafeTensor>(entries.Count);
        foreach (var e in entries)
        {
            var data = e.End == e.Begin ? [] : new byte[e.End - e.Begin];
            read(data, dataStart + e.Begin);
            tensors.Add(e.Name, new SafeTensor(e.Name, e.DType, e.Shape, data));
        }
        return (tensors, metadata);
    }

    private static (List<Entry> Entries, Dictionary<string, string> Metadata) ParseHeader(byte[] header, long dataLength, string source)
    {
        if (header[0] != (byte)'{')
            throw Bad(source, $"the header starts with byte 0x{header[0]:X2}, not '{{'");
        int invalid = FirstInvalidUtf8(header);
        if (invalid >= 0)
            throw Bad(source, $"the header is not valid UTF-8 (byte 0x{header[invalid]:X2} at offset {8 + invalid})");
        JsonDocument doc;
        try
        {
            // A first pass allocates nothing: malformed or deeply nested JSON is rejected before a document is built for it.
            var reader = new Utf8JsonReader(header, new JsonReaderOptions { MaxDepth = MaxDepth });
            while (reader.Read())
            {
            }
            doc = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = MaxDepth, AllowDuplicateProperties = false });
        }
        catch (JsonException e)
        {
            // The parser's position is within the header; users count from the start of the file.
            string message = e.Message.Split(" LineNumber:")[0].Split(" Path:")[0].Replace(" Change the reader options.", "", StringComparison.Ordinal);
            string where = e.LineNumber switch
            {
                null => "",
                0 => $" at byte {8 + e.BytePositionInLine}",
                long line => $" at line {line + 1}, byte {e.BytePositionInLine} of the header",
            };
            throw new NormLabFormatException($"{source}: not a valid safetensors file: the header is not valid JSON{where}: {message}", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw Bad(source, "the header is not a JSON object");
            var entries = new List<Entry>();
            var metadata = new Dictionary<string, string>();
            foreach (var property in doc.RootElement.EnumerateObject())
            {
                string name = property.Name;
                if (name != "__metadata__")
                    entries.Add(ParseEntry(name, property.Value, dataLength, source));
                else if (property.Value.ValueKind != JsonValueKind.Object)
                    throw Bad(source, "__metadata__ is not an object");
                else
                    foreach (var m in property.Value.EnumerateObject())
                        metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String
                            ? m.Value.GetString()!
                            : throw Bad(source, $"metadata {Quote(m.Name)} is {m.Value.ValueKind.ToString().ToLowerInvariant()}, not a string");
            }
            CheckTiling(entries, dataLength, source);
            return (entries, metadata);
        }
    }

    private static Entry ParseEntry(string name, JsonElement v, long dataLength, string source)
    {
        string q = Quote(name);
        if (v.ValueKind != JsonValueKind.Object)
            throw Bad(source, $"tensor {q} is {v.ValueKind.ToString().ToLowerInvariant()}, not an object with dtype, shape and data_offsets");
        if (!v.TryGetProperty("dtype", out var dtypeEl) || dtypeEl.ValueKind != JsonValueKind.String)
            throw Bad(source, $"tensor {q} has no dtype string");
        string dtype = dtypeEl.GetString()!;
        if (!ElementSizes.TryGetValue(dtype, out int size))
            throw Bad(source, $"tensor {q} has unknown dtype {Quote(dtype)}");
        if (!v.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array)
            throw Bad(source, $"tensor {q} has no shape array");
        int rank = shapeEl.GetArrayLength();
        if (rank > MaxRank)
            throw Bad(source, $"tensor {q} has {rank} dimensions, more than {MaxRank}");
        var shape = rank == 0 ? [] : new long[rank];
        // Elements counted as the reference does (checked usize products): a shape that overflows is rejected even when a later dimension is 0.
        ulong count = 1;
        for (int i = 0; i < rank; i++)
        {
            var dim = shapeEl[i];
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long d) || d < 0)
                throw Bad(source, $"tensor {q}: shape entry {i} is {Quote(dim.GetRawText())}, not a non-negative integer");
            shape[i] = d;
            if (Math.BigMul(count, (ulong)d, out count) != 0 || count > long.MaxValue)
                throw Bad(source, $"tensor {q}: shape [{string.Join(", ", shape.Take(i + 1))}{(i + 1 < rank ? ", …" : "")}] has more than 2^63 elements");
        }
        if (!v.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2
            || !TryOffset(offsets[0], out long begin) || !TryOffset(offsets[1], out long end))
            throw Bad(source, $"tensor {q} needs data_offsets [begin, end] of two non-negative integers"
                + (offsets.ValueKind == JsonValueKind.Undefined ? "" : $", got {Quote(offsets.GetRawText())}"));
        if (end < begin || end > dataLength)
            throw Bad(source, $"tensor {q} has data_offsets [{begin}, {end}] outside the {dataLength} data bytes");
        if (Math.BigMul(count, (ulong)size, out ulong bytes) != 0 || bytes != (ulong)(end - begin))
            throw Bad(source, $"tensor {q} of dtype {dtype} and shape [{string.Join(", ", shape)}] needs {(UInt128)count * (uint)size} bytes, its data_offsets [{begin}, {end}] hold {end - begin}");
        return new Entry(name, dtype, shape, begin, end);
    }

    private static bool TryOffset(JsonElement e, out long value)
    {
        value = 0;
        return e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out value) && value >= 0;
    }

    /// <summary>Tensors' data must tile the data section: sorted by offsets, each starts where the previous ends, the last ends with the file.</summary>
    private static void CheckTiling(List<Entry> entries, long dataLength, string source)
    {
        var sorted = entries.ToArray();
        Array.Sort(sorted, (a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
        long at = 0;
        string? previous = null;
        foreach (var e in sorted)
        {
            if (e.Begin < at)
                throw Bad(source, $"tensors {Quote(previous!)} and {Quote(e.Name)} overlap in data bytes {e.Begin}..{at}");
            if (e.Begin > at)
                throw Bad(source, $"data bytes {at}..{e.Begin} before tensor {Quote(e.Name)} belong to no tensor");
            at = e.End;
            previous = e.Name;
        }
        if (at != dataLength)
            throw Bad(source, $"data bytes {at}..{dataLength} after the last tensor belong to no tensor");
    }

    /// <summary>The offset of the first byte that does not start or continue a valid UTF-8 sequence, or -1.</summary>
    private static int FirstInvalidUtf8(ReadOnlySpan<byte> text)
    {
        if (System.Text.Unicode.Utf8.IsValid(text))
            return -1;
        for (int at = 0; at < text.Length;)
        {
            if (Rune.DecodeFromUtf8(text[at..], out _, out int consumed) != System.Buffers.OperationStatus.Done)
                return at;
            at += consumed;
        }
        return -1;
    }

    /// <summary>A name from a file, quoted for a one-line message: control characters escaped, long names cut.</summary>
    internal static string Quote(string text)
    {
        const int Max = 60;
        var sb = new StringBuilder("'");
        foreach (char c in text.Length > Max ? text[..Max] : text)
            sb.Append(char.IsControl(c) ? $"\\u{(int)c:X4}" : c);
        return sb.Append(text.Length > Max ? "…'" : "'").ToString();
    }

    private static NormLabFormatException Bad(string source, string what) => new($"{source}: not a valid safetensors file: {what}.");
}

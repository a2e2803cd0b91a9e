using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace NormLab;

/// <summary>A tensor read from a safetensors file: its dtype, shape and raw little-endian bytes.</summary>
public sealed record SafeTensor(string Name, string DType, long[] Shape, byte[] Data)
{
    /// <summary>Number of elements.</summary>
    public long Count => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>The values of an F32 tensor.</summary>
    public float[] ToFloats()
    {
        if (DType != "F32")
            throw new InvalidOperationException($"Tensor '{Name}' has dtype {DType}, not F32.");
        var values = new float[Count];
        for (int i = 0; i < values.Length; i++)
            values[i] = BinaryPrimitives.ReadSingleLittleEndian(Data.AsSpan(4 * i));
        return values;
    }

    /// <summary>The values of an I64 tensor.</summary>
    public long[] ToInt64s()
    {
        if (DType != "I64")
            throw new InvalidOperationException($"Tensor '{Name}' has dtype {DType}, not I64.");
        var values = new long[Count];
        for (int i = 0; i < values.Length; i++)
            values[i] = BinaryPrimitives.ReadInt64LittleEndian(Data.AsSpan(8 * i));
        return values;
    }

    /// <summary>An F32 tensor as a NormLab tensor of the same shape.</summary>
    public Tensor ToTensor() => Tensor.FromArray(ToFloats(), Shape.Select(d => checked((int)d)).ToArray());
}

/// <summary>
/// The safetensors format (Hugging Face): u64 little-endian header length, a JSON header
/// <c>{"__metadata__": {..}, "name": {"dtype", "shape", "data_offsets": [begin, end]}}</c>, then the packed data.
/// Data only: reading a file never executes anything (unlike pickle-based checkpoints).
/// </summary>
public static class SafeTensors
{
    private const long MaxHeader = 100_000_000;

    private static readonly Dictionary<string, int> ElementSizes = new()
    {
        ["F64"] = 8, ["F32"] = 4, ["F16"] = 2, ["BF16"] = 2, ["I64"] = 8, ["I32"] = 4, ["I16"] = 2, ["I8"] = 1,
        ["U64"] = 8, ["U32"] = 4, ["U16"] = 2, ["U8"] = 1, ["BOOL"] = 1,
    };

    /// <summary>Reads every tensor and the metadata of a file.</summary>
    /// <exception cref="NormLabFormatException">The file is truncated or its header is malformed; the message names the file.</exception>
    public static (Dictionary<string, SafeTensor> Tensors, Dictionary<string, string> Metadata) Read(string path)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new NormLabFormatException($"{path}: cannot read the file: {e.Message}", e);
        }
        return Parse(bytes, path);
    }

    /// <summary>Parses a file's bytes; <paramref name="source"/> names it in errors.</summary>
    public static (Dictionary<string, SafeTensor> Tensors, Dictionary<string, string> Metadata) Parse(byte[] bytes, string source)
    {
        NormLabFormatException Bad(string what) => new($"{source}: not a valid safetensors file: {what}.");
        if (bytes.Length < 8)
            throw Bad($"{bytes.Length} bytes is too short for the 8-byte header length");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLength < 2 || headerLength > MaxHeader || headerLength > (ulong)(bytes.Length - 8))
            throw Bad($"header length {headerLength} does not fit a file of {bytes.Length} bytes");
        int dataStart = 8 + (int)headerLength;
        long dataLength = bytes.Length - dataStart;
        JsonDocument doc;
        try
        {
            var text = new UTF8Encoding(false, true).GetString(bytes, 8, (int)headerLength);
            doc = JsonDocument.Parse(text, new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (Exception e) when (e is JsonException or DecoderFallbackException or ArgumentException)
        {
            throw new NormLabFormatException($"{source}: not a valid safetensors file: the header is not valid UTF-8 JSON ({e.Message}).", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw Bad("the header is not a JSON object");
            var tensors = new Dictionary<string, SafeTensor>();
            var metadata = new Dictionary<string, string>();
            var ranges = new List<(long Begin, long End, string Name)>();
            foreach (var entry in doc.RootElement.EnumerateObject())
            {
                if (entry.Name == "__metadata__")
                {
                    if (entry.Value.ValueKind != JsonValueKind.Object)
                        throw Bad("__metadata__ is not an object");
                    foreach (var m in entry.Value.EnumerateObject())
                        metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : throw Bad($"metadata '{m.Name}' is not a string");
                    continue;
                }
                var t = ParseEntry(entry, dataLength, Bad);
                ranges.Add((t.Begin, t.End, entry.Name));
                tensors[entry.Name] = new SafeTensor(entry.Name, t.DType, t.Shape, bytes.AsSpan(dataStart + (int)t.Begin, (int)(t.End - t.Begin)).ToArray());
            }
            ranges.Sort();
            for (int i = 1; i < ranges.Count; i++)
                if (ranges[i].Begin < ranges[i - 1].End)
                    throw Bad($"tensors '{ranges[i - 1].Name}' and '{ranges[i].Name}' overlap");
            return (tensors, metadata);
        }
    }

    private static (string DType, long[] Shape, long Begin, long End) ParseEntry(JsonProperty entry, long dataLength, Func<string, NormLabFormatException> bad)
    {
        var v = entry.Value;
        if (v.ValueKind != JsonValueKind.Object
            || !v.TryGetProperty("dtype", out var dtypeEl) || dtypeEl.ValueKind != JsonValueKind.String
            || !v.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array
            || !v.TryGetProperty("data_offsets", out var offEl) || offEl.ValueKind != JsonValueKind.Array || offEl.GetArrayLength() != 2)
            throw bad($"tensor '{entry.Name}' needs dtype, shape and two data_offsets");
        string dtype = dtypeEl.GetString()!;
        if (!ElementSizes.TryGetValue(dtype, out int size))
            throw bad($"tensor '{entry.Name}' has unknown dtype '{dtype}'");
        var shape = new long[shapeEl.GetArrayLength()];
        long count = 1;
        int d = 0;
        foreach (var dim in shapeEl.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long n) || n < 0)
                throw bad($"tensor '{entry.Name}' has an invalid dimension");
            shape[d++] = n;
            if (n != 0 && count > dataLength / n)
                throw bad($"tensor '{entry.Name}' of shape [{string.Join(", ", shape.Take(d))}...] is larger than the file");
            count *= n;
        }
        if (!offEl[0].TryGetInt64(out long begin) || !offEl[1].TryGetInt64(out long end) || begin < 0 || end < begin || end > dataLength)
            throw bad($"tensor '{entry.Name}' has data_offsets outside the {dataLength} data bytes");
        if (end - begin != count * size)
            throw bad($"tensor '{entry.Name}' of dtype {dtype} and shape [{string.Join(", ", shape)}] needs {count * size} bytes, its offsets give {end - begin}");
        return (dtype, shape, begin, end);
    }

    /// <summary>
    /// Writes F32 tensors, I64 scalars (<paramref name="counters"/>) and I64 vectors (<paramref name="longs"/>) with metadata,
    /// all at once (<see cref="AtomicFile"/>): a crash or a full disk never leaves a half-written file.
    /// </summary>
    /// <exception cref="IOException">The file cannot be written; the previous one is unchanged.</exception>
    public static void Write(string path, IEnumerable<(string Name, Tensor Value)> tensors, IReadOnlyDictionary<string, string>? metadata = null,
        IEnumerable<(string Name, long Value)>? counters = null, IEnumerable<(string Name, long[] Values)>? longs = null)
    {
        var items = new List<(string Name, string DType, long[] Shape, byte[] Data)>();
        foreach (var (name, t) in tensors)
        {
            var data = new byte[t.Length * 4];
            var s = t.Span;
            for (int i = 0; i < s.Length; i++)
                BinaryPrimitives.WriteSingleLittleEndian(data.AsSpan(4 * i), s[i]);
            items.Add((name, "F32", t.Shape.ToArray().Select(x => (long)x).ToArray(), data));
        }
        foreach (var (name, values) in longs ?? [])
        {
            var data = new byte[8 * values.Length];
            for (int i = 0; i < values.Length; i++)
                BinaryPrimitives.WriteInt64LittleEndian(data.AsSpan(8 * i), values[i]);
            items.Add((name, "I64", [values.LongLength], data));
        }
        foreach (var (name, value) in counters ?? [])
        {
            var data = new byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(data, value);
            items.Add((name, "I64", [], data));
        }
        var header = new Dictionary<string, object>();
        if (metadata is { Count: > 0 })
            header["__metadata__"] = metadata;
        long offset = 0;
        foreach (var (name, dtype, shape, data) in items)
        {
            header[name] = new Dictionary<string, object> { ["dtype"] = dtype, ["shape"] = shape, ["data_offsets"] = new[] { offset, offset + data.Length } };
            offset += data.Length;
        }
        var json = JsonSerializer.SerializeToUtf8Bytes(header);
        int padded = (json.Length + 7) / 8 * 8;
        AtomicFile.Write(path, fs =>
        {
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)padded);
            fs.Write(len);
            fs.Write(json);
            for (int i = json.Length; i < padded; i++)
                fs.WriteByte((byte)' ');
            foreach (var item in items)
                fs.Write(item.Data);
        });
    }
}

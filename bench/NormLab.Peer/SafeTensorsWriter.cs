using System.Buffers.Binary;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace NormLab.Peer;

/// <summary>
/// Minimal writer for the safetensors format: an 8-byte little-endian u64 header length N,
/// N bytes of UTF-8 JSON header (padded with spaces to a multiple of 8), then the raw
/// little-endian tensor data, packed without gaps in header order.
/// Only the two dtypes the fixtures need are supported: F32 and I64.
/// </summary>
internal sealed class SafeTensorsWriter
{
    private readonly List<KeyValuePair<string, string>> _metadata = [];
    private readonly List<Entry> _tensors = [];
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    private sealed record Entry(string Name, string DType, long[] Shape, byte[] Data);

    public int Count => _tensors.Count;

    public SafeTensorsWriter Meta(string key, string value)
    {
        if (_metadata.Exists(kv => kv.Key == key))
        {
            throw new InvalidOperationException($"duplicate metadata key '{key}'");
        }
        _metadata.Add(new(key, value));
        return this;
    }

    public SafeTensorsWriter F32(string name, long[] shape, ReadOnlySpan<float> values)
    {
        CheckCount(name, shape, values.Length);
        var data = new byte[values.Length * sizeof(float)];
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(data.AsSpan(i * sizeof(float)), values[i]);
        }
        return Add(name, "F32", shape, data);
    }

    public SafeTensorsWriter I64(string name, long[] shape, ReadOnlySpan<long> values)
    {
        CheckCount(name, shape, values.Length);
        var data = new byte[values.Length * sizeof(long)];
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteInt64LittleEndian(data.AsSpan(i * sizeof(long)), values[i]);
        }
        return Add(name, "I64", shape, data);
    }

    public byte[] ToBytes()
    {
        byte[] header = BuildHeader();
        int padded = (header.Length + 7) / 8 * 8;
        long dataLength = _tensors.Sum(t => (long)t.Data.Length);
        using var ms = new MemoryStream((int)(8 + padded + dataLength));
        Span<byte> len = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)padded);
        ms.Write(len);
        ms.Write(header);
        for (int i = header.Length; i < padded; i++)
        {
            ms.WriteByte((byte)' ');
        }
        foreach (var t in _tensors)
        {
            ms.Write(t.Data);
        }
        return ms.ToArray();
    }

    public void Save(string path)
    {
        string? dir = Path.GetDirectoryName(path);
        if (!string.IsNullOrEmpty(dir))
        {
            Directory.CreateDirectory(dir);
        }
        File.WriteAllBytes(path, ToBytes());
    }

    private byte[] BuildHeader()
    {
        var buffer = new MemoryStream();
        var options = new JsonWriterOptions
        {
            Indented = false,
            // Keep numbers such as "1E+20" readable in the header (no \u002B escapes).
            Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        };
        using (var w = new Utf8JsonWriter(buffer, options))
        {
            w.WriteStartObject();
            if (_metadata.Count > 0)
            {
                w.WriteStartObject("__metadata__");
                foreach (var (key, value) in _metadata)
                {
                    w.WriteString(key, value);
                }
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var t in _tensors)
            {
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", t.DType);
                w.WriteStartArray("shape");
                foreach (long d in t.Shape)
                {
                    w.WriteNumberValue(d);
                }
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + t.Data.Length);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += t.Data.Length;
            }
            w.WriteEndObject();
        }
        return buffer.ToArray();
    }

    private SafeTensorsWriter Add(string name, string dtype, long[] shape, byte[] data)
    {
        if (name == "__metadata__" || !_names.Add(name))
        {
            throw new InvalidOperationException($"duplicate or reserved tensor name '{name}'");
        }
        _tensors.Add(new Entry(name, dtype, (long[])shape.Clone(), data));
        return this;
    }

    private static void CheckCount(string name, long[] shape, int count)
    {
        long expected = 1;
        foreach (long d in shape)
        {
            if (d < 0)
            {
                throw new ArgumentException($"negative dimension in shape of '{name}'");
            }
            expected *= d;
        }
        if (expected != count)
        {
            throw new ArgumentException(
                $"tensor '{name}': shape [{string.Join(",", shape)}] needs {expected} values, got {count}");
        }
    }

    /// <summary>Header text of a safetensors file (for diagnostics and self-checks).</summary>
    public static string ReadHeader(string path)
    {
        using var fs = File.OpenRead(path);
        Span<byte> len = stackalloc byte[8];
        fs.ReadExactly(len);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(len);
        var header = new byte[checked((int)n)];
        fs.ReadExactly(header);
        return Encoding.UTF8.GetString(header);
    }
}

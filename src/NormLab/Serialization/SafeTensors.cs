using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace NormLab;

/// <summary>
/// The safetensors format (Hugging Face): u64 little-endian header length, a JSON header
/// <c>{"__metadata__": {..}, "name": {"dtype", "shape", "data_offsets": [begin, end]}}</c>, then the packed data.
/// Data only: reading a file never executes anything (unlike pickle-based checkpoints).
/// </summary>
public static partial class SafeTensors
{
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

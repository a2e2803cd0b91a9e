using NormLab.Tests.Support;
using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using NormLab.Models;

namespace NormLab.Tests;

/// <summary>
/// Files NormLab writes must load in Hugging Face's own reader (<c>safetensors.torch.load_file</c>). No Python torch
/// is available here, so <see cref="StrictRead"/> re-implements that reader's checks (safetensors/src/tensor.rs,
/// <c>read_metadata</c> and <c>Metadata::validate</c>): header ≤ 100 MB and inside the file, UTF-8 JSON starting with '{',
/// <c>__metadata__</c> a map of strings to strings, every tensor a known dtype with a shape and two offsets, offsets
/// sorted, contiguous from 0, each span exactly shape × dtype size, and the last one ending at the end of the file.
/// </summary>
public class SafeTensorsCompatibilityTests
{
    private static readonly Dictionary<string, int> DTypes = new()
    {
        ["BOOL"] = 1, ["U8"] = 1, ["I8"] = 1, ["F8_E5M2"] = 1, ["F8_E4M3"] = 1, ["I16"] = 2, ["U16"] = 2, ["F16"] = 2,
        ["BF16"] = 2, ["I32"] = 4, ["U32"] = 4, ["F32"] = 4, ["F64"] = 8, ["I64"] = 8, ["U64"] = 8,
    };

    /// <summary>The reference reader's checks; returns the tensors' names, dtypes and shapes, and the metadata.</summary>
    private static (Dictionary<string, (string DType, long[] Shape)> Tensors, Dictionary<string, string> Metadata) StrictRead(byte[] file)
    {
        Assert.True(file.Length >= 8, "HeaderTooSmall");
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(file);
        Assert.True(n <= 100_000_000, "HeaderTooLarge");
        Assert.True(8 + n <= (ulong)file.Length, "InvalidHeaderLength");
        string header = new UTF8Encoding(false, true).GetString(file, 8, (int)n);
        Assert.True(header.StartsWith('{'), "InvalidHeaderStart");
        using var doc = JsonDocument.Parse(header);
        var tensors = new List<(long Begin, long End, string Name, string DType, long[] Shape)>();
        var metadata = new Dictionary<string, string>();
        foreach (var entry in doc.RootElement.EnumerateObject())
        {
            if (entry.Name == "__metadata__")
            {
                foreach (var m in entry.Value.EnumerateObject())
                {
                    Assert.True(m.Value.ValueKind == JsonValueKind.String, $"metadata '{m.Name}' must be a string (serde: HashMap<String, String>)");
                    metadata[m.Name] = m.Value.GetString()!;
                }
                continue;
            }
            var info = entry.Value;
            Assert.Equal(["data_offsets", "dtype", "shape"], info.EnumerateObject().Select(p => p.Name).Order());
            string dtype = info.GetProperty("dtype").GetString()!;
            Assert.True(DTypes.ContainsKey(dtype), $"unknown dtype {dtype}");
            long[] shape = info.GetProperty("shape").EnumerateArray().Select(d => checked((long)d.GetUInt64())).ToArray();
            var offsets = info.GetProperty("data_offsets").EnumerateArray().Select(d => checked((long)d.GetUInt64())).ToArray();
            Assert.Equal(2, offsets.Length);
            tensors.Add((offsets[0], offsets[1], entry.Name, dtype, shape));
        }
        long start = 0;
        foreach (var t in tensors.OrderBy(t => t.Begin).ThenBy(t => t.End))
        {
            Assert.True(t.Begin == start && t.End >= t.Begin, $"InvalidOffset({t.Name})");
            long bytes = t.Shape.Aggregate(1L, (a, b) => checked(a * b)) * DTypes[t.DType];
            Assert.True(t.End - t.Begin == bytes, $"TensorInvalidInfo({t.Name})");
            start = t.End;
        }
        Assert.True(start + 8 + (long)n == file.Length, "MetadataIncompleteBuffer");
        return (tensors.ToDictionary(t => t.Name, t => (t.DType, t.Shape)), metadata);
    }

    [Fact]
    public void ModelAndTrainingStateFilesPassTheReferenceReadersChecks()
    {
        string dir = TempDirs.Create("normlab-st");
        var model = Zoo.Cnn(NormKind.Batch, rng: new Rng(2));
        var optimizer = new Adam(model.Parameters(), 1e-3);
        string modelFile = Path.Combine(dir, "model.safetensors"), stateFile = Path.Combine(dir, "resume.safetensors");
        Checkpoint.SaveModel(modelFile, model, new Dictionary<string, string> { ["model"] = "cnn", ["norm"] = "batch" });
        Checkpoint.SaveTrainingState(stateFile, optimizer, [("loader.position", [3, 1])]);

        byte[] bytes = File.ReadAllBytes(modelFile);
        var (tensors, metadata) = StrictRead(bytes);
        // Like the reference writer, pad the header with spaces to 8 bytes so that the data stay aligned.
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(bytes) % 8);
        Assert.Equal("cnn", metadata["model"]);
        // PyTorch's state_dict names, dtypes and shapes: conv weights 4-D, BN buffers F32 and num_batches_tracked an I64 scalar.
        Assert.Equal("F32", tensors["0.weight"].DType);
        Assert.Equal([32L, 1, 3, 3], tensors["0.weight"].Shape);
        Assert.Equal("F32", tensors["1.running_var"].DType);
        Assert.Equal([32L], tensors["1.running_var"].Shape);
        Assert.Equal("I64", tensors["1.num_batches_tracked"].DType);
        Assert.Empty(tensors["1.num_batches_tracked"].Shape);
        foreach (var (name, p) in model.NamedParameters())
            Assert.Equal(p.Value.Shape.ToArray().Select(d => (long)d), tensors[name].Shape);
        StrictRead(File.ReadAllBytes(stateFile));
    }

    [Fact]
    public void AFileWrittenByTheReferenceWriterReads()
    {
        // The reference serializer's output for {"test": I32 [2, 2]}, from its own documentation (tensor.rs), followed by a
        // second file with metadata, an F32 tensor placed after an I64 one (the writer sorts by dtype alignment) and padding.
        byte[] doc = [.. "<\0\0\0\0\0\0\0{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}"u8, .. new byte[16]];
        StrictRead(doc);
        var (tensors, _) = SafeTensors.Parse(doc, "doc example");
        Assert.Equal("I32", tensors["test"].DType);
        Assert.Equal([2L, 2], tensors["test"].Shape);

        string json = "{\"__metadata__\":{\"format\":\"pt\"},\"n\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}";
        var header = Encoding.UTF8.GetBytes(json.PadRight((json.Length + 7) / 8 * 8));
        var file = new byte[8 + header.Length + 16];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Length);
        header.CopyTo(file, 8);
        BinaryPrimitives.WriteInt64LittleEndian(file.AsSpan(8 + header.Length), 7);
        BinaryPrimitives.WriteSingleLittleEndian(file.AsSpan(16 + header.Length), 1.5f);
        BinaryPrimitives.WriteSingleLittleEndian(file.AsSpan(20 + header.Length), -2f);
        StrictRead(file);
        var (parsed, meta) = SafeTensors.Parse(file, "reference layout");
        Assert.Equal("pt", meta["format"]);
        Assert.Equal([7L], parsed["n"].ToInt64s());
        Assert.Equal([1.5f, -2f], parsed["w"].ToFloats());
    }
}

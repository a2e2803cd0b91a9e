using System.Buffers.Binary;
using System.Text;
using NormLab.Tests.Support;

namespace NormLab.Tests.Hostile;

/// <summary>
/// The safetensors reader on truncated, bit-flipped, token-mutated and hand-built hostile files: every defect ends in a
/// <see cref="NormLabFormatException"/> naming the file and the defect, and no read allocates more than the file plus a constant,
/// whatever sizes the header claims.
/// </summary>
public sealed class SafeTensorsFuzzTests
{
    private const string Source = "fuzz.safetensors";

    /// <summary>A small valid file as NormLab writes it: F32 [2, 3], an I64 vector, an I64 scalar and metadata (about 300 bytes).</summary>
    private static readonly byte[] Seed = MakeSeed();

    private static byte[] MakeSeed()
    {
        string path = Path.Combine(TempDirs.Create("normlab-st-seed"), "seed.safetensors");
        SafeTensors.Write(path, [("0.weight", TensorAssert.Randn(3, 2, 3))], new Dictionary<string, string> { ["model"] = "mlp" },
            [("1.num_batches_tracked", 7L)], [("loader.position", [3, 1])]);
        return File.ReadAllBytes(path);
    }

    /// <summary>A file of an 8-byte length, <paramref name="json"/> and <paramref name="dataBytes"/> bytes of data.</summary>
    internal static byte[] Build(string json, int dataBytes, ulong? headerLength = null) => Build(Encoding.UTF8.GetBytes(json), dataBytes, headerLength);

    internal static byte[] Build(byte[] header, int dataBytes, ulong? headerLength = null)
    {
        var file = new byte[8 + header.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(file, headerLength ?? (ulong)header.Length);
        header.CopyTo(file, 8);
        return file;
    }

    private static string? Parse(byte[] bytes, string what) =>
        Support.Hostile.Check(() => SafeTensors.Parse(bytes, Source), Source, bytes.Length + Support.Hostile.Slack, what);

    private static void Rejects(byte[] bytes, string what, string expected)
    {
        SafeTensors.Parse(Seed, Source);
        Support.Hostile.Rejects(() => SafeTensors.Parse(bytes, Source), Source, bytes.Length + Support.Hostile.Slack, what, expected);
    }

    [Fact]
    public void EveryTruncationIsRejected()
    {
        string path = Path.Combine(TempDirs.Create("normlab-st-fuzz"), "cut.safetensors");
        Support.Hostile.Within(60, () =>
        {
            File.WriteAllBytes(path, Seed);
            Assert.Equal(4, SafeTensors.Read(path).Tensors.Count + SafeTensors.Read(path).Metadata.Count);
            for (int cut = 0; cut < Seed.Length; cut++)
            {
                File.WriteAllBytes(path, Seed[..cut]);
                Support.Hostile.Rejects(() => SafeTensors.Read(path), path, cut + Support.Hostile.Slack, $"cut at {cut}", path);
            }
        });
    }

    [Fact]
    public void RandomBitFlipsAreRejectedOrReadExactly()
    {
        var random = new Random(9);
        int headerLength = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(Seed);
        int rejected = 0, accepted = 0;
        Support.Hostile.Within(60, () =>
        {
            SafeTensors.Parse(Seed, Source);
            for (int i = 0; i < 1500; i++)
            {
                var (bytes, where) = Support.Hostile.FlipBits(Seed, random);
                if (Parse(bytes, where) is not null)
                {
                    rejected++;
                    Assert.False(bytes.AsSpan(0, headerLength).SequenceEqual(Seed.AsSpan(0, headerLength)), $"{where}: a flip in the data only was rejected");
                    continue;
                }
                accepted++;
                // What was read is exactly what the file holds: the spans tile the data section.
                var (tensors, _) = SafeTensors.Parse(bytes, Source);
                Assert.Equal(bytes.Length - headerLength, tensors.Values.Sum(t => t.Data.Length));
            }
        });
        Assert.InRange(accepted, 1, 1499);
        Assert.InRange(rejected, 1, 1499);
    }

    [Fact]
    public void MutatedHeaderTokensAreRejectedOrReadExactly()
    {
        // Bit flips mostly break the JSON; replacing header bytes by JSON's own characters reaches the checks behind the parser.
        const string Tokens = "{}[],:\"0123456789-.eE aFIUB_";
        var random = new Random(10);
        int headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(Seed);
        var messages = new HashSet<string>();
        Support.Hostile.Within(60, () =>
        {
            SafeTensors.Parse(Seed, Source);
            for (int i = 0; i < 1000; i++)
            {
                var bytes = (byte[])Seed.Clone();
                int edits = random.Next(1, 4);
                for (int e = 0; e < edits; e++)
                    bytes[random.Next(8, headerEnd)] = (byte)Tokens[random.Next(Tokens.Length)];
                if (Parse(bytes, $"token mutation {i}") is { } message)
                    messages.Add(message);
            }
        });
        // The mutations reach beyond the JSON parser: dtype, shape and offset checks each reject some.
        Assert.Contains(messages, m => m.Contains("not valid JSON", StringComparison.Ordinal));
        Assert.Contains(messages, m => m.Contains("dtype", StringComparison.Ordinal));
        Assert.Contains(messages, m => m.Contains("shape", StringComparison.Ordinal) || m.Contains("needs", StringComparison.Ordinal));
        Assert.Contains(messages, m => m.Contains("data_offsets", StringComparison.Ordinal) || m.Contains("data bytes", StringComparison.Ordinal));
    }

    private const string A = "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";

    public static TheoryData<string, byte[], string> Headers => new()
    {
        { "header length 0", Build("{}", 0, headerLength: 0), "header length 0 is too short" },
        { "header length -1", Build("{}", 0, headerLength: ulong.MaxValue), "header length 18446744073709551615 exceeds the limit" },
        { "header length 2^63", Build("{}", 0, headerLength: 1UL << 63), "header length 9223372036854775808 exceeds the limit" },
        { "header length past the end", Build("{}", 0, headerLength: 3), "header length 3 runs past the end of the file of 10 bytes" },
        { "header length past 100 MB", Build("{}", 0, headerLength: 100_000_001), "exceeds the limit of 100000000 bytes" },
        { "not an object", Build("[1]", 0), "starts with byte 0x5B, not '{'" },
        { "leading space", Build(" {}", 0), "starts with byte 0x20" },
        { "not UTF-8", Build([.. "{\""u8, 0xFF, .. "\":1}"u8], 0), "not valid UTF-8 (byte 0xFF at offset 10)" },
        { "overlong UTF-8", Build([.. "{\""u8, 0xC0, 0xAF, .. "\":1}"u8], 0), "not valid UTF-8" },
        { "lone surrogate", Build([.. "{\""u8, 0xED, 0xA0, 0x80, .. "\":1}"u8], 0), "not valid UTF-8" },
        { "deeply nested", Build("{\"a\":" + new string('[', 100_000) + new string(']', 100_000) + "}", 0), "depth" },
        { "nested metadata", Build("{\"__metadata__\":{\"a\":{\"b\":{\"c\":{}}}}}", 0), "depth" },
        { "invalid JSON", Build("{\"a\":", 0), "not valid JSON at byte 13: Expected" },
        { "trailing comma", Build("{\n" + A + ",}", 8), "not valid JSON at line 2, byte 53 of the header: The JSON object contains a trailing comma" },
        { "duplicate tensor", Build("{" + A + "," + A + "}", 8), "not valid JSON: Duplicate property 'a'" },
        { "metadata not an object", Build("{\"__metadata__\":[]}", 0), "__metadata__ is not an object" },
        { "metadata value a number", Build("{\"__metadata__\":{\"step\":3}}", 0), "metadata 'step' is number, not a string" },
        { "entry not an object", Build("{\"a\":5}", 0), "tensor 'a' is number, not an object" },
        { "no dtype", Build("{\"a\":{\"shape\":[],\"data_offsets\":[0,0]}}", 0), "tensor 'a' has no dtype string" },
        { "unknown dtype", Build("{\"a\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}", 16), "tensor 'a' has unknown dtype 'F128'" },
        { "no shape", Build("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,0]}}", 0), "tensor 'a' has no shape array" },
        { "negative dimension", Build("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8), "shape entry 0 is '-2', not a non-negative integer" },
        { "fractional dimension", Build("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8), "shape entry 0 is '1.5'" },
        { "string dimension", Build("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8), "shape entry 0 is '\"2\"'" },
        { "65 dimensions", Build("{\"a\":{\"dtype\":\"U8\",\"shape\":[" + string.Join(",", Enumerable.Repeat(1, 65)) + "],\"data_offsets\":[0,1]}}", 1), "has 65 dimensions, more than 64" },
        { "2^40 elements", Build("{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776],\"data_offsets\":[0,8]}}", 8), "shape [1099511627776] needs 4398046511104 bytes, its data_offsets [0, 8] hold 8" },
        { "2^124 elements", Build("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4611686018427387904,0],\"data_offsets\":[0,0]}}", 0), "has more than 2^63 elements" },
        { "2^63 bytes", Build("{\"a\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,8]}}", 8), "needs 18446744073709551616 bytes" },
        { "dtype and shape disagree", Build("{\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8), "of dtype F64 and shape [2] needs 16 bytes, its data_offsets [0, 8] hold 8" },
        { "one offset", Build("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1]}}", 1), "needs data_offsets [begin, end] of two non-negative integers, got '[1]'" },
        { "string offsets", Build("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[\"0\",\"1\"]}}", 1), "got '[\"0\",\"1\"]'" },
        { "negative offset", Build("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 1), "two non-negative integers" },
        { "offset 2^64", Build("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,18446744073709551616]}}", 1), "two non-negative integers" },
        { "offsets reversed", Build("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[1,0]}}", 1), "data_offsets [1, 0] outside the 1 data bytes" },
        { "offsets past the end", Build("{\"a\":{\"dtype\":\"U8\",\"shape\":[1000],\"data_offsets\":[0,1000]}}", 8), "data_offsets [0, 1000] outside the 8 data bytes" },
        { "offsets past 2^62", Build("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[4611686018427387904,4611686018427387912]}}", 8), "outside the 8 data bytes" },
        { "overlap", Build("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12),
            "tensors 'a' and 'b' overlap in data bytes 4..8" },
        { "same bytes twice", Build("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]}}", 8), "overlap" },
        { "gap", Build("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12),
            "data bytes 4..8 before tensor 'b' belong to no tensor" },
        { "not from 0", Build("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8), "data bytes 0..4 before tensor 'a' belong to no tensor" },
        { "bytes after the data", Build("{" + A + "}", 12), "data bytes 8..12 after the last tensor belong to no tensor" },
        { "name with a line break", Build("{\"a\\nb\\u001b[31m\":{\"dtype\":\"X\",\"shape\":[],\"data_offsets\":[0,0]}}", 0), "tensor 'a\\u000Ab\\u001B[31m' has unknown dtype 'X'" },
    };

    [Theory]
    [MemberData(nameof(Headers))]
    public void HandBuiltHeadersAreRejectedAndNamed(string what, byte[] file, string expected) => Rejects(file, what, expected);

    [Fact]
    public void EdgeCasesTheReferenceAcceptsRead()
    {
        // An empty header, zero-size tensors sharing an offset, a 0-sized dimension beside a huge one, and F8 dtypes.
        Assert.Empty(SafeTensors.Parse(Build("{}", 0), "empty").Tensors);
        var (tensors, meta) = SafeTensors.Parse(Build("{\"__metadata__\":{},\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
            + "\"y\":{\"dtype\":\"BF16\",\"shape\":[1099511627776,0],\"data_offsets\":[0,0]},\"f\":{\"dtype\":\"F8_E4M3\",\"shape\":[3],\"data_offsets\":[0,3]}}", 3), "edges");
        Assert.Empty(meta);
        Assert.Equal([1099511627776L, 0], tensors["y"].Shape);
        Assert.Equal(3, tensors["f"].Data.Length);
    }

    [Fact]
    public void MissingFilesAndFoldersAreNamed()
    {
        string dir = TempDirs.Create("normlab-st");
        string missing = Path.Combine(dir, "missing.safetensors");
        Support.Hostile.Rejects(() => SafeTensors.Read(missing), missing, 1 << 20, "missing", "cannot read the file");
        Support.Hostile.Rejects(() => SafeTensors.Read(dir), dir, 1 << 20, "folder", "cannot read the file");
    }
}

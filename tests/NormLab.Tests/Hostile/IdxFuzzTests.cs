using System.Buffers.Binary;
using System.IO.Compression;
using NormLab.Data;
using NormLab.Tests.Support;

namespace NormLab.Tests.Hostile;

/// <summary>
/// The IDX reader on truncated, bit-flipped and hand-built hostile files, raw and gzipped: every defect ends in a
/// <see cref="NormLabFormatException"/> naming the file, and no read allocates more than the data it returns plus a constant.
/// </summary>
public sealed class IdxFuzzTests
{
    private const string Source = "fuzz.idx";

    // A rank-3 file [3, 5, 4]: 16 header bytes and 60 data bytes.
    private static readonly byte[] Raw = File([3, 5, 4], Enumerable.Range(0, 60).Select(i => (byte)(i * 7)).ToArray());

    private static readonly byte[] Gz = Gzip(Raw);

    internal static byte[] File(int[] dims, byte[] data, byte type = 0x08)
    {
        var file = new byte[4 + 4 * dims.Length + data.Length];
        file[2] = type;
        file[3] = (byte)dims.Length;
        for (int i = 0; i < dims.Length; i++)
            BinaryPrimitives.WriteUInt32BigEndian(file.AsSpan(4 + 4 * i), (uint)dims[i]);
        data.CopyTo(file, 4 + 4 * dims.Length);
        return file;
    }

    internal static byte[] Gzip(byte[] raw, int zeros = 0)
    {
        var output = new MemoryStream();
        using (var gz = new GZipStream(output, CompressionLevel.Optimal))
        {
            gz.Write(raw);
            var block = new byte[1 << 16];
            for (int left = zeros; left > 0; left -= block.Length)
                gz.Write(block, 0, Math.Min(left, block.Length));
        }
        return output.ToArray();
    }

    private static string? Parse(byte[] bytes, string what, long budget = 0) =>
        Support.Hostile.Check(() => Idx.Parse(bytes, Source), Source, (budget > 0 ? budget : Raw.Length + bytes.Length) + Support.Hostile.Slack, what);

    private static void Rejects(byte[] bytes, string what, string expected) =>
        Support.Hostile.Rejects(() => Idx.Parse(bytes, Source), Source, Raw.Length + bytes.Length + Support.Hostile.Slack, what, expected);

    [Fact]
    public void TheSeedFilesRead()
    {
        Assert.Equal([3, 5, 4], Idx.Parse(Raw, "raw").Dims);
        Assert.Equal(Raw[16..], Idx.Parse(Gz, "gz").Data);
    }

    [Fact]
    public void EveryTruncationOfARawOrGzippedFileIsRejected()
    {
        string dir = TempDirs.Create("normlab-idx-fuzz");
        Support.Hostile.Within(60, () =>
        {
            foreach (var (name, file) in new[] { ("raw", Raw), ("gz", Gz) })
            {
                string path = Path.Combine(dir, name);
                System.IO.File.WriteAllBytes(path, file);
                Assert.Equal(Raw[16..], Idx.Read(path).Data);   // also warms up what the first read initializes
                for (int cut = 0; cut < file.Length; cut++)
                {
                    System.IO.File.WriteAllBytes(path, file[..cut]);
                    Support.Hostile.Rejects(() => Idx.Read(path), path, Raw.Length + Support.Hostile.Slack, $"{name} cut at {cut}", path);
                }
            }
        });
    }

    [Fact]
    public void RandomBitFlipsAreRejectedOrReadExactly()
    {
        var random = new Random(8);
        int rejected = 0, accepted = 0;
        Support.Hostile.Within(60, () =>
        {
            Idx.Parse(Raw, Source);
            Idx.Parse(Gz, Source);
            for (int i = 0; i < 1000; i++)
            {
                var (bytes, where) = Support.Hostile.FlipBits(Raw, random);
                if (Parse(bytes, "raw " + where) is not null)
                {
                    rejected++;
                    // Only a changed header can make a raw file unreadable.
                    Assert.False(bytes.AsSpan(0, 16).SequenceEqual(Raw.AsSpan(0, 16)), $"raw {where}: a flip in the data only was rejected");
                    continue;
                }
                accepted++;
                var (dims, data) = Idx.Parse(bytes, Source);
                Assert.Equal(data.Length, dims.Aggregate(1, (a, b) => a * b));
                Assert.Equal(bytes[^data.Length..], data);
            }
            for (int i = 0; i < 1000; i++)
            {
                var (bytes, where) = Support.Hostile.FlipBits(Gz, random);
                if (Parse(bytes, "gz " + where) is not null)
                    rejected++;
            }
        });
        // Raw flips mostly land in the 60 data bytes (read as they are); gzip flips are caught by the inflater or the CRC.
        Assert.InRange(accepted, 500, 990);
        Assert.InRange(rejected, 1000, 1500);
    }

    [Theory]
    [InlineData("empty", new byte[0], "truncated IDX file (0 bytes", "truncated IDX file (0 bytes")]
    [InlineData("header only", new byte[] { 0, 0, 8 }, "truncated IDX file (3 bytes", "truncated IDX file (decompressed) (3 bytes")]
    [InlineData("wrong magic", new byte[] { 0, 1, 8, 1, 0, 0, 0, 1, 7 }, "wrong magic number 0x00010801", null)]
    [InlineData("int32 data", new byte[] { 0, 0, 0x0C, 1, 0, 0, 0, 1, 7, 7, 7, 7 }, "data type 0x0C", null)]
    [InlineData("rank 0", new byte[] { 0, 0, 8, 0 }, "rank 0 is outside 1..4", null)]
    [InlineData("rank 255", new byte[] { 0, 0, 8, 255, 0, 0, 0, 1 }, "rank 255 is outside 1..4", null)]
    [InlineData("dims cut", new byte[] { 0, 0, 8, 3, 0, 0, 0, 1, 0, 0 }, "truncated IDX header (10 bytes, rank 3 needs 16)",
        "truncated IDX header (decompressed) (10 bytes, rank 3 needs 16)")]
    [InlineData("dim 2^32 - 1", new byte[] { 0, 0, 8, 1, 255, 255, 255, 255, 1 }, "dimension 0 is 4294967295, too large", null)]
    [InlineData("2^93 bytes", new byte[] { 0, 0, 8, 3, 127, 255, 255, 255, 127, 255, 255, 255, 127, 255, 255, 255 }, "more than an array can hold", null)]
    [InlineData("2^30 bytes promised, 1 present", new byte[] { 0, 0, 8, 1, 64, 0, 0, 0, 9 }, "need 1073741824 data bytes, the file has 1",
        "need 1073741824 data bytes, the decompressed file has 1")]
    [InlineData("trailing bytes", new byte[] { 0, 0, 8, 1, 0, 0, 0, 1, 9, 9 }, "unexpected bytes after the data: dimensions [1] need 1 data bytes, the file has 2",
        "unexpected bytes after the data: dimensions [1] need 1 data bytes, the decompressed file has more")]
    public void HandBuiltHeadersAreRejectedAndNamed(string what, byte[] raw, string expected, string? gzipped)
    {
        Idx.Parse(Raw, Source);
        Idx.Parse(Gz, Source);
        Rejects(raw, what, expected);
        // The same defect inside gzip is found in the decompressed bytes (an empty input gzips to nothing at all).
        Rejects(Gzip(raw), what + " (gzipped)", gzipped ?? expected);
    }

    [Fact]
    public void AGzipBombStopsAtTheHeadersPromise()
    {
        // 10 bytes promised, 64 MiB of zeros behind them (64 KiB compressed): reading stops after the 11th byte.
        var bomb = Gzip(File([10], new byte[10]), zeros: 64 << 20);
        Assert.InRange(bomb.Length, 1, 128 << 10);
        Idx.Parse(Gz, Source);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Support.Hostile.Rejects(() => Idx.Parse(bomb, Source), Source, Support.Hostile.Slack, "bomb", "the decompressed file has more");
        Assert.True(clock.Elapsed.TotalSeconds < 5, $"rejecting the bomb took {clock.Elapsed.TotalSeconds:F1} s");
    }

    [Fact]
    public void CorruptGzipStreamsAreReportedAsSuch()
    {
        Idx.Parse(Gz, Source);
        var crc = (byte[])Gz.Clone();
        crc[^6] ^= 0x10;   // inside the CRC-32 of the trailer
        Assert.Contains("corrupt or truncated gzip data", Parse(crc, "bad CRC"));
        Assert.Contains("corrupt or truncated gzip data", Parse([.. Gz[..10], .. new byte[40]], "zeros after the gzip header"));
        Assert.NotNull(Parse([0x1f, 0x8b], "gzip magic only"));
    }

    [Fact]
    public void MissingFilesAndFoldersAreNamed()
    {
        string dir = TempDirs.Create("normlab-idx");
        string missing = Path.Combine(dir, "missing-idx1-ubyte");
        Support.Hostile.Rejects(() => Idx.Read(missing), missing, 1 << 20, "missing", "cannot read the file");
        Support.Hostile.Rejects(() => Idx.Read(dir), dir, 1 << 20, "folder", "cannot read the file");
    }
}

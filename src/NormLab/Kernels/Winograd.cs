using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NormLab.Kernels;

/// <summary>
/// Winograd's minimal filtering F(2×2, 3×3) (Lavin &amp; Gray 2016) for 3×3 convolutions with stride 1: each 2×2 block
/// of the output (a tile) comes from the 4×4 patch of input under it as
/// <code>
/// Y = Aᵀ·[ Σ_cin (G·g·Gᵀ) ⊙ (Bᵀ·d·B) ]·A
/// </code>
/// that is, 16 products of [C_out, C_in] by [C_in, tiles], one per position ξ of the 4×4 transformed tile: 16 multiplies
/// per tile and pair of channels, where direct convolution (im2col) takes 4·9 = 36.
/// </summary>
/// <remarks>
/// <para>Layout, per image: tiles in rows of 8 (one vector: a tile row of a plane at most 16 wide, or a chunk of a wider
/// one), two rows to a panel of 16, the packed-B panel of the GEMM micro-kernel; the transformed input
/// V[ξ][panel][cin][16] is written in that layout directly, and the transformed filters U[ξ][rows of 6][cin][6] in the
/// micro-kernel's packed-A layout, once per call. The products of a panel go to a scratch M[ξ][cout][16] that the output
/// transform reads back while it is in L1/L2.</para>
/// <para>The sums differ from im2col's in rounding (the transforms add and halve before multiplying); the matrices of
/// F(2×2, 3×3) hold only 0, ±1 and ±½, and the error stays within a few ulps of the direct sums (tests bound it).
/// Every output depends on its own image only, so the results do not depend on the number of threads. An infinite input
/// becomes NaN in the outputs of the tiles that read it (∞ − ∞ in the transforms), where the direct sums may give ±∞:
/// non-finite either way, and located by the same layer.</para>
/// </remarks>
internal static unsafe class Winograd
{
    private const int MR = SgemmKernel.MR, Lanes8 = 8, PanelWidth = 16, Positions = 16;

    /// <summary>Whether a float convolution goes this way: a 3×3 window with stride 1 on AVX2, and enough channels that
    /// the transforms cost little next to the products (a one-channel input, the first layer, stays with im2col).</summary>
    public static bool Applies<T>(int inChannels, int outChannels, Window2d w) =>
        typeof(T) == typeof(float) && Sgemm.IsSupported && w.KernelHeight == 3 && w.KernelWidth == 3 && w.Stride == 1 &&
        inChannels >= MinChannels && outChannels >= MinChannels;

    /// <summary>
    /// The input gradient of a convolution that <see cref="Applies{T}"/> with padding at most 2 is a convolution of dy with
    /// the filters flipped (channels swapped, rotated by 180°) and padding 2 − p; this is its window, null where that does
    /// not apply.
    /// </summary>
    public static Window2d? InputGradientWindow<T>(int inChannels, int outChannels, Window2d w)
    {
        if (!Applies<T>(inChannels, outChannels, w) || w.Padding > 2)
            return null;
        var back = new Window2d(w.OutHeight, w.OutWidth, 3, 3, 1, 2 - w.Padding);
        return back.OutHeight == w.Height && back.OutWidth == w.Width ? back : null;
    }

    /// <summary>
    /// Fewer channels than this, in or out, stay with im2col: the products' depth is C_in forward and C_out for dx, and
    /// a short one leaves the transforms to dominate. Measured at 2 threads, forward and backward against im2col:
    /// 32→64 on 14×14 1.47× and 1.13×, 8→16 on 28×28 1.12× and 1.06×, 8→8 1.58× and 1.25×; but 4→16 0.52× and 0.83×,
    /// 3→64 0.51× and 0.60×, 1→32 (the CNN's first layer) 0.37× and 0.49×. (A test hook may change it; the scratch size
    /// follows it.)
    /// </summary>
    internal static int MinChannels { get; set; } = 8;

    /// <summary>Floats of per-image scratch: V and one panel's M.</summary>
    public static long ImageScratch(int inChannels, int outChannels, Window2d w) =>
        Positions * PositionStride(inChannels, w) + (long)Positions * RowPanels(outChannels) * MR * PanelWidth + RowsSize(w);

    // V's floats per position ξ, plus a line: the input transform stores to all 16 positions at once, and a stride of a
    // multiple of 4 KiB put all 16 lines in one L1 set (conv2: 8 KiB; its input transform took 21 µs an image, then 15).
    private static long PositionStride(int inChannels, Window2d w) => (long)Panels(w) * inChannels * PanelWidth + PanelWidth;

    // One channel's input rows split into column sets (RowSets), and a row of zeros for the padding above and below.
    private static long RowsSize(Window2d w) => (long)(w.Height + 1) * RowFloats(w);

    private static int RowFloats(Window2d w) => 4 * Lanes8 * Chunks(w);

    /// <summary>Floats of the transformed, packed filters.</summary>
    public static long FilterSize(int inChannels, int outChannels) => (long)Positions * RowPanels(outChannels) * inChannels * MR;

    private static int RowPanels(int outChannels) => (outChannels + MR - 1) / MR;

    private static int TileRows(Window2d w) => (w.OutHeight + 1) / 2;

    private static int Chunks(Window2d w) => ((w.OutWidth + 1) / 2 + Lanes8 - 1) / Lanes8;

    private static int Panels(Window2d w) => (TileRows(w) * Chunks(w) + 1) / 2;

    /// <summary>U = G·g·Gᵀ for every filter g = weight[cout, cin], packed as the micro-kernel's A: U[ξ][rowPanel][cin][6],
    /// with zero rows past the last output channel. <paramref name="flipped"/> takes the filters of the input gradient
    /// instead, g = weight[cin, cout] rotated by 180° (weight then has the shape of the forward convolution's,
    /// [inChannels, outChannels, 3, 3] in this call's terms).</summary>
    /// <remarks>Panels of six output channels over the team (each value is written once, the same whoever writes it):
    /// on one thread the 64×32 filters of the CNN's conv2 took longer than a batch of two images' products.</remarks>
    public static void TransformFilters(float* u, ReadOnlySpan<float> weight, int inChannels, int outChannels, bool flipped = false)
    {
        if (weight.Length != (long)inChannels * outChannels * 9)
            throw new ArgumentException($"Winograd: {weight.Length} weights for {outChannels}×{inChannels} 3×3 filters.");
        fixed (float* pw = weight)
        {
            var args = new Filters { U = u, Weight = pw, In = inChannels, Out = outChannels, Flipped = flipped };
            Threading.Team.For(RowPanels(outChannels), ref args, &FilterPanels);
        }
    }

    private struct Filters
    {
        public float* U, Weight;
        public int In, Out;
        public bool Flipped;
    }

    private static void FilterPanels(ref Filters a, int first, int end)
    {
        int rowPanels = RowPanels(a.Out);
        float* g = stackalloc float[9];
        for (int rp = first; rp < end; rp++)
            for (int r = 0; r < MR; r++)
                for (int ci = 0; ci < a.In; ci++)
                {
                    int co = rp * MR + r;
                    long at = ((long)rp * a.In + ci) * MR + r, positionStride = (long)rowPanels * a.In * MR;
                    if (co >= a.Out)
                    {
                        for (int xi = 0; xi < Positions; xi++)
                            a.U[at + xi * positionStride] = 0; // rows past the last channel: zero products
                        continue;
                    }
                    for (int k = 0; k < 9; k++)
                        g[k] = a.Flipped ? a.Weight[((long)ci * a.Out + co) * 9 + 8 - k] : a.Weight[((long)co * a.In + ci) * 9 + k];
                    Transform(g, a.U + at, positionStride);
                }
    }

    // U = G·g·Gᵀ for one 3×3 filter g, into ξ = 4·row + column at `stride` apart. G·g has rows g0, (g0 + g1 + g2)/2,
    // (g0 − g1 + g2)/2 and g2 (g's rows), and (·)·Gᵀ does the same across each row.
    private static void Transform(float* g, float* u, long stride)
    {
        for (int r = 0; r < 4; r++)
        {
            float h0 = FilterRow(g, r, 0), h1 = FilterRow(g, r, 1), h2 = FilterRow(g, r, 2);
            float* at = u + 4 * r * stride;
            at[0] = h0;
            at[stride] = 0.5f * (h0 + h1 + h2);
            at[2 * stride] = 0.5f * (h0 - h1 + h2);
            at[3 * stride] = h2;
        }
    }

    // Row r of G·g, column j.
    private static float FilterRow(float* g, int r, int j) => r switch
    {
        0 => g[j],
        1 => 0.5f * (g[j] + g[3 + j] + g[6 + j]),
        2 => 0.5f * (g[j] - g[3 + j] + g[6 + j]),
        _ => g[6 + j],
    };

    /// <summary>One image: x [C_in, H, W] → y [C_out, OH, OW] (overwritten), plus the bias when there is one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Image(float* y, float* x, float* u, float* scratch, ReadOnlySpan<float> bias, int inChannels, int outChannels, Window2d w)
    {
        int panels = Panels(w), rowPanels = RowPanels(outChannels);
        long positionStride = PositionStride(inChannels, w);
        float* v = scratch, m = scratch + Positions * positionStride, rows = m + (long)Positions * rowPanels * MR * PanelWidth;
        TransformInput(v, x, rows, inChannels, w);
        for (int p = 0; p < panels; p++)
        {
            for (int xi = 0; xi < Positions; xi++)
            {
                float* b = v + xi * positionStride + (long)p * inChannels * PanelWidth;
                for (int rp = 0; rp < rowPanels; rp++)
                    SgemmKernel.Tile6x16(inChannels, u + ((long)xi * rowPanels + rp) * inChannels * MR, 1, MR, b,
                        m + ((long)xi * rowPanels + rp) * MR * PanelWidth, PanelWidth, overwrite: true);
            }
            TransformOutput(y, m, p, rowPanels * MR, bias, outChannels, w);
        }
    }

    // V = Bᵀ·d·B for every tile and input channel. Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]: down the patch's rows
    // first (on whole tile rows at once), then across its columns. A tile row's patches start at every second column, so
    // each input row is first split, once, into four column sets per chunk of eight tiles (RowSets): columns 2j, 2j + 1,
    // 2j + 2 and 2j + 3 of tile j's patch, one lane per tile.
    private static void TransformInput(float* v, float* x, float* rows, int inChannels, Window2d w)
    {
        int tileRows = TileRows(w), chunks = Chunks(w), panels = Panels(w), rowFloats = RowFloats(w);
        // Per chunk and load of RowSets, the lanes that fall inside the row (the rest read as the padding's zeros).
        Span<Vector256<float>> inside = stackalloc Vector256<float>[4 * chunks];
        for (int c = 0; c < chunks; c++)
            for (int k = 0; k < 4; k++)
            {
                int first = PanelWidth * c - w.Padding + LoadOffsets[k];
                var column = Vector256.Create(0f, 1, 2, 3, 4, 5, 6, 7) + Vector256.Create((float)first);
                inside[4 * c + k] = Vector256.GreaterThanOrEqual(column, Vector256<float>.Zero) & Vector256.LessThan(column, Vector256.Create((float)w.Width));
            }
        float* zeros = rows + (long)w.Height * rowFloats;
        new Span<float>(zeros, rowFloats).Clear();
        long positionStride = PositionStride(inChannels, w);
        if (tileRows * chunks % 2 == 1)
        {
            // The last panel's second half has no tiles: zeros, so that its products are of finite values.
            for (int xi = 0; xi < Positions; xi++)
                for (int ci = 0; ci < inChannels; ci++)
                    new Span<float>(v + xi * positionStride + ((long)(panels - 1) * inChannels + ci) * PanelWidth + Lanes8, Lanes8).Clear();
        }
        for (int ci = 0; ci < inChannels; ci++)
        {
            float* plane = x + (long)ci * w.PlaneSize;
            for (int r = 0; r < w.Height; r++)
                RowSets(rows + (long)r * rowFloats, plane + (long)r * w.Width - w.Padding, inside);
            for (int ti = 0; ti < tileRows; ti++)
            {
                float* r0 = InputRow(rows, zeros, 2 * ti - w.Padding, w.Height, rowFloats);
                float* r1 = InputRow(rows, zeros, 2 * ti - w.Padding + 1, w.Height, rowFloats);
                float* r2 = InputRow(rows, zeros, 2 * ti - w.Padding + 2, w.Height, rowFloats);
                float* r3 = InputRow(rows, zeros, 2 * ti - w.Padding + 3, w.Height, rowFloats);
                for (int c = 0; c < chunks; c++)
                {
                    int slotRow = ti * chunks + c, at = 4 * Lanes8 * c;
                    TransformChunk(v + ((long)(slotRow / 2) * inChannels + ci) * PanelWidth + slotRow % 2 * Lanes8, positionStride,
                        r0 + at, r1 + at, r2 + at, r3 + at);
                }
            }
        }
    }

    // The column sets of input row r, or zeros above and below the plane.
    private static float* InputRow(float* rows, float* zeros, int r, int height, int rowFloats) =>
        r >= 0 && r < height ? rows + (long)r * rowFloats : zeros;

    // Where RowSets loads, in columns from a chunk's first: 0 and 8 (split into columns 2j and 2j + 1), then 2 and 10
    // (2j + 2 and 2j + 3).
    private static readonly int[] LoadOffsets = [0, 8, 2, 10];

    // A row's columns 2j, 2j + 1, 2j + 2, 2j + 3 (counted from −padding) for the eight tiles j of each chunk, as four
    // vectors per chunk; masked loads read the columns outside the row as zeros, and never touch them.
    private static void RowSets(float* sets, float* line, ReadOnlySpan<Vector256<float>> inside)
    {
        for (int c = 0; c < inside.Length / 4; c++, line += PanelWidth, sets += 4 * Lanes8)
        {
            var (e, o) = Deinterleave(Avx.MaskLoad(line, inside[4 * c]), Avx.MaskLoad(line + 8, inside[4 * c + 1]));
            var (e1, o1) = Deinterleave(Avx.MaskLoad(line + 2, inside[4 * c + 2]), Avx.MaskLoad(line + 10, inside[4 * c + 3]));
            e.Store(sets);
            o.Store(sets + Lanes8);
            e1.Store(sets + 2 * Lanes8);
            o1.Store(sets + 3 * Lanes8);
        }
    }

    // Eight tiles of one tile row, from the column sets of its four input rows.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TransformChunk(float* v, long positionStride, float* d0, float* d1, float* d2, float* d3)
    {
        // Bᵀ·d: rows d0 − d2, d1 + d2, d2 − d1, d1 − d3, for each of the four column sets.
        Across(v, positionStride, 0, Set(d0, 0) - Set(d2, 0), Set(d0, 1) - Set(d2, 1), Set(d0, 2) - Set(d2, 2), Set(d0, 3) - Set(d2, 3));
        Across(v, positionStride, 1, Set(d1, 0) + Set(d2, 0), Set(d1, 1) + Set(d2, 1), Set(d1, 2) + Set(d2, 2), Set(d1, 3) + Set(d2, 3));
        Across(v, positionStride, 2, Set(d2, 0) - Set(d1, 0), Set(d2, 1) - Set(d1, 1), Set(d2, 2) - Set(d1, 2), Set(d2, 3) - Set(d1, 3));
        Across(v, positionStride, 3, Set(d1, 0) - Set(d3, 0), Set(d1, 1) - Set(d3, 1), Set(d1, 2) - Set(d3, 2), Set(d1, 3) - Set(d3, 3));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Set(float* row, int set) => Vector256.Load(row + set * Lanes8);

    // (·)·B for row k of Bᵀ·d: columns c0 − c2, c1 + c2, c2 − c1, c1 − c3, stored at ξ = 4k + 0…3.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Across(float* v, long positionStride, int k, Vector256<float> c0, Vector256<float> c1, Vector256<float> c2,
        Vector256<float> c3)
    {
        float* at = v + 4 * k * positionStride;
        (c0 - c2).Store(at);
        (c1 + c2).Store(at + positionStride);
        (c2 - c1).Store(at + 2 * positionStride);
        (c1 - c3).Store(at + 3 * positionStride);
    }

    // a0…a7, b0…b7 → (a0 a2 a4 a6 b0 b2 b4 b6, a1 a3 a5 a7 b1 b3 b5 b7).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float> Even, Vector256<float> Odd) Deinterleave(Vector256<float> a, Vector256<float> b)
    {
        var even = Avx.Shuffle(a, b, 0b10_00_10_00);
        var odd = Avx.Shuffle(a, b, 0b11_01_11_01);
        return (Avx2.Permute4x64(even.AsDouble(), 0b11_01_10_00).AsSingle(), Avx2.Permute4x64(odd.AsDouble(), 0b11_01_10_00).AsSingle());
    }

    // Y = Aᵀ·M·A for the tiles of panel p, Aᵀ = [1 1 1 0; 0 1 −1 −1]: across each row of M first (a = m0 + m1 + m2,
    // b = m1 − m2 − m3), then down (the same on a and b), eight tiles at a time, each tile row written as pairs of columns.
    private static void TransformOutput(float* y, float* m, int p, int rows, ReadOnlySpan<float> bias, int outChannels, Window2d w)
    {
        int chunks = Chunks(w), oh = w.OutHeight, ow = w.OutWidth, tileRows = TileRows(w);
        long positionStride = (long)rows * PanelWidth;
        // Planes at least 8 and at most 16 wide take whole 16-value stores that run into the next row, which is written
        // after (the pair's second row, or the next tile row's first): masked stores cost as much as the transform. A
        // plane's last row, and rows of wider planes' last chunks, are masked.
        bool spill = chunks == 1 && ow >= Lanes8;
        for (int half = 0; half < 2; half++)
        {
            int slotRow = 2 * p + half, ti = slotRow / chunks, c = slotRow % chunks;
            if (ti >= tileRows)
                break;
            int row = 2 * ti, column = PanelWidth * c, count = Math.Min(PanelWidth, ow - column);
            var store = new PairStore(count);
            bool wholeFirst = count == PanelWidth || (spill && row + 1 < oh), wholeSecond = count == PanelWidth || (spill && row + 2 < oh);
            for (int co = 0; co < outChannels; co++)
            {
                float* t = m + (long)co * PanelWidth + half * Lanes8;
                var (a0, b0) = OutputRow(t, positionStride, 0);
                var (a1, b1) = OutputRow(t, positionStride, 1);
                var (a2, b2) = OutputRow(t, positionStride, 2);
                var (a3, b3) = OutputRow(t, positionStride, 3);
                var shift = Vector256.Create(bias.IsEmpty ? 0f : bias[co]);
                float* plane = y + (long)co * oh * ow;
                store.Put(plane + (long)row * ow + column, a0 + a1 + a2 + shift, b0 + b1 + b2 + shift, wholeFirst);
                if (row + 1 < oh)
                    store.Put(plane + (long)(row + 1) * ow + column, a1 - a2 - a3 + shift, b1 - b2 - b3 + shift, wholeSecond);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    // Row k of M·A for eight tiles: a = m0 + m1 + m2, b = m1 − m2 − m3.
    private static (Vector256<float> A, Vector256<float> B) OutputRow(float* t, long positionStride, int k)
    {
        float* at = t + 4 * k * positionStride;
        var m0 = Vector256.Load(at);
        var m1 = Vector256.Load(at + positionStride);
        var m2 = Vector256.Load(at + 2 * positionStride);
        var m3 = Vector256.Load(at + 3 * positionStride);
        return (m0 + m1 + m2, m1 - m2 - m3);
    }

    // Columns 2j (from `left`) and 2j + 1 (from `right`) for eight tiles j: 16 values, of which the first `count` belong
    // to the row; the rest are written too where the caller allows it (whole), else masked off.
    private readonly struct PairStore(int count)
    {
        private readonly Vector256<float> _first = FirstLanes(count), _second = FirstLanes(count - Lanes8);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Put(float* at, Vector256<float> left, Vector256<float> right, bool whole)
        {
            var lo = Avx.UnpackLow(left, right);
            var hi = Avx.UnpackHigh(left, right);
            var first = Avx.Permute2x128(lo, hi, 0x20);
            var second = Avx.Permute2x128(lo, hi, 0x31);
            if (whole)
            {
                first.Store(at);
                second.Store(at + Lanes8);
                return;
            }
            Avx.MaskStore(at, _first, first);
            Avx.MaskStore(at + Lanes8, _second, second);
        }

        private static Vector256<float> FirstLanes(int count) =>
            Vector256.LessThan(Vector256.Create(0f, 1, 2, 3, 4, 5, 6, 7), Vector256.Create((float)count));
    }
}

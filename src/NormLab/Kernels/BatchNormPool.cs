using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NormLab.Kernels;

/// <summary>
/// The normalize pass of a BatchNorm with a ReLU and a 2×2, stride-2 max pooling after it, in one pass: each pair of rows
/// of a plane is normalized, rectified and pooled in registers, so the full-size activation between the layers is neither
/// written nor read back (a CNN's largest tensors). The same bits as the three layers one after the other: the map is
/// per element (<see cref="Rectified{T, TMap}"/> of <see cref="Normalized{T}"/>, as the normalize pass
/// applies it), and four windows at a time are compared as <see cref="Pooling.MaxForward{T}"/> compares them.
/// </summary>
internal static unsafe class BatchNormPool
{
    /// <summary>Whether planes of <paramref name="height"/>×<paramref name="width"/> pool in this pass: windows that tile the
    /// plane (even sides), at least four of them across, and the vector instructions of the pooling kernel.</summary>
    public static bool Applies(int height, int width) =>
        Sse41.IsSupported && Vector256.IsHardwareAccelerated && height >= 2 && height % 2 == 0 && width >= 8 && width % 2 == 0;

    /// <summary>Planes <c>[first, end)</c> of the n·c: constants in <see cref="BatchNormArgs{T}.Hi"/>, <see cref="BatchNormArgs{T}.Alpha"/>
    /// and <see cref="BatchNormArgs{T}.Shift"/>, the pooled planes into <see cref="BatchNormArgs{T}.Y"/> and <see cref="BatchNormArgs{T}.Argmax"/>.</summary>
    public static void PlanesRange(ref BatchNormArgs<float> a, int first, int end)
    {
        int width = a.Width, outW = width / 2, outS = a.S / 4;
        for (int plane = first, ch = first % a.C; plane < end; plane++, ch = ch + 1 == a.C ? 0 : ch + 1)
            Plane(a.X + (long)plane * a.S, a.Y + (long)plane * outS, a.Argmax + (long)plane * outS, a.S / width, width, outW,
                Rectified<float, Normalized<float>>.Create(a.Hi[ch], a.Alpha[ch], a.Shift[ch]));
    }

    // Four windows at a time along each pair of rows; the last group overlaps the one before (rewriting the same values),
    // as in the pooling kernel.
    private static void Plane(float* x, float* y, int* argmax, int height, int width, int outW, Rectified<float, Normalized<float>> f)
    {
        for (int row = 0; row < height * width; row += 2 * width, y += outW, argmax += outW)
        {
            float* top = x + row, bottom = top + width;
            for (int ox = 0; ; ox += 4)
            {
                ox = Math.Min(ox, outW - 4);
                var t = Vector256.Load(top + 2 * ox);
                var b = Vector256.Load(bottom + 2 * ox);
                (t, b) = (f.Of(t, t), f.Of(b, b));
                Pooling.MaxFour(t.GetLower(), t.GetUpper(), b.GetLower(), b.GetUpper(), y + ox, argmax + ox, row + 2 * ox, width);
                if (ox == outW - 4)
                    break;
            }
        }
    }
}

using TorchSharp;
using static TorchSharp.torch;

namespace NormLab.Peer;

/// <summary>Copying TorchSharp tensors into a <see cref="SafeTensorsWriter"/>.</summary>
internal static class TensorIO
{
    public static SafeTensorsWriter Put(this SafeTensorsWriter w, string name, Tensor t)
    {
        using var c = t.detach().cpu().contiguous();
        long[] shape = c.shape;
        switch (c.dtype)
        {
            case ScalarType.Float32:
                return w.F32(name, shape, c.data<float>().ToArray());
            case ScalarType.Int64:
                return w.I64(name, shape, c.data<long>().ToArray());
            default:
                throw new NotSupportedException($"tensor '{name}': dtype {c.dtype} not supported in fixtures");
        }
    }

    public static string Shape(long[] shape) => string.Join(",", shape);

    public static string Bool(bool b) => b ? "true" : "false";

    public static string Num(double d) => d.ToString("R", System.Globalization.CultureInfo.InvariantCulture);

    public static string Num(long n) => n.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Stable per-case seed (FNV-1a of the case name), so adding cases never changes others.</summary>
    public static long Seed(string caseName)
    {
        uint h = 2166136261;
        foreach (char ch in caseName)
        {
            h ^= ch;
            h *= 16777619;
        }
        return h;
    }
}

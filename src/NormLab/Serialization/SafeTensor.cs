using System.Buffers.Binary;

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

namespace NormLab;

/// <summary>What the normalization layers share: γ starts at 1 and β at 0 (PyTorch's init), and per-call statistics
/// live in grow-only buffers so that a steady shape allocates nothing.</summary>
internal static class NormParameters
{
    /// <summary>γ (<c>weight</c>), all ones.</summary>
    public static Parameter Scale(params int[] shape) => new("weight", Ones(shape), ParameterRole.NormScale);

    /// <summary>β (<c>bias</c>), all zeros.</summary>
    public static Parameter Shift(params int[] shape) => new("bias", new Tensor(shape), ParameterRole.NormShift);

    /// <summary>A tensor of ones (γ, a running variance or standard deviation at its start).</summary>
    public static Tensor Ones(params int[] shape)
    {
        var t = new Tensor(shape);
        t.Fill(1f);
        return t;
    }

    /// <summary>Replaces <paramref name="buffer"/> by a larger one only when it is too short.</summary>
    public static void Grow<T>(ref T[] buffer, int length)
    {
        if (buffer is null || buffer.Length < length)
            buffer = new T[length];
    }
}

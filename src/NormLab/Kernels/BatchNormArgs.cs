using System.Numerics;

namespace NormLab.Kernels;

/// <summary>
/// The arguments of one BN kernel call, shared by the threads of the team: pinned pointers (the caller keeps them pinned
/// until the call returns), the layout [n, c, s], and the per-channel buffers. Null γ, β mean 1 and 0; null dγ, dβ are skipped.
/// </summary>
internal unsafe struct BatchNormArgs<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>The output: y forward, dx backward.</summary>
    public T* Y;
    public T* X, DY, Gamma, Beta, DGamma, DBeta;
    public double* Mean, M2, InvStd;
    /// <summary>Per-channel Σdy and Σdy·(x − μ) when the backward runs in two calls (<see cref="BatchNormKernels.GradientSums{T}"/>).</summary>
    public double* SumDy, SumDyXc;
    /// <summary>The values per channel the statistics are over, when it is not n·s (a batch split across processes).</summary>
    public double Count;
    /// <summary>Per-(block, channel) partial sums of the in-order walk (<see cref="BatchNormBlocks"/>), [blocks, c] each.</summary>
    public double* PartialA, PartialB;
    /// <summary>Per-channel constants of <see cref="Normalized{T}"/> when they are computed once per call (eval).</summary>
    public T* Hi, Alpha, Shift;
    /// <summary>Per-channel constants of <see cref="InputGradient{T}"/> (with <see cref="Hi"/>) for the in-order backward.</summary>
    public T* Lo, Scale, MeanDy, K;
    public int N, C, S;
    /// <summary>Whether maps write whole lines with non-temporal stores (<see cref="Centered.MapStreaming{T, TMap, TMaps}"/>).</summary>
    public bool Streaming;
    /// <summary>Whether a ReLU is fused after the layer: maps write max(y, 0), gradient passes see dy only where y &gt; 0
    /// (<see cref="ReluGate{T}"/>, with the normalize constants; the in-order backward keeps them in <see cref="Alpha"/> and <see cref="Shift"/>).</summary>
    public bool Relu;
    public double Eps;
    /// <summary>The indices of a fused 2×2 max pooling (<see cref="BatchNormPool"/>), and the planes' width: forward, where it
    /// writes them (<see cref="Y"/> is then the pooled output); backward, where <see cref="DY"/> is the pooled gradient to
    /// route through them.</summary>
    public int* Argmax;
    public int Width;

    /// <summary>dy of plane <paramref name="plane"/> (at <paramref name="at"/>): in place, or, with a pooled gradient, routed
    /// to each window's argmax into <paramref name="scratch"/> (s values) as the pooling's backward routes it.</summary>
    public readonly T* GradientOf(int plane, long at, T* scratch)
    {
        if (Argmax == null)
            return DY + at;
        int outS = S / 4;
        Pooling.MaxBackward2x2Float((float*)scratch, (float*)(DY + (long)plane * outS), Argmax + (long)plane * outS, S / Width, Width);
        return scratch;
    }

    public readonly double GammaOf(int ch) => Gamma == null ? 1.0 : Lanes.ToDouble(Gamma[ch]);

    public readonly double BetaOf(int ch) => Beta == null ? 0.0 : Lanes.ToDouble(Beta[ch]);

    /// <summary>The gate of a fused ReLU for channel <paramref name="ch"/>, from the statistics and γ, β as the forward had them.</summary>
    public readonly TGate GateOf<TGate>(int ch) where TGate : struct, IGate<T, TGate>
    {
        if (typeof(TGate) == typeof(Open<T>))
            return default;
        var (hi, alpha, shift) = BatchNormFormulas.Affine<T>(Mean[ch], InvStd[ch], GammaOf(ch), BetaOf(ch));
        return TGate.Create(hi, alpha, shift);
    }

    /// <summary>dβ += Σdy, dγ += Σdy·x̂ = invStd·Σdy·(x − μ).</summary>
    public readonly void AccumulateParameterGradients(int ch, double sumDy, double sumDyXc)
    {
        if (DBeta != null)
            DBeta[ch] += Lanes.FromDouble<T>(sumDy);
        if (DGamma != null)
            DGamma[ch] += Lanes.FromDouble<T>(sumDyXc * InvStd[ch]);
    }
}

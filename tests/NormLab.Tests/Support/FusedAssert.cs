namespace NormLab.Tests.Support;

/// <summary>A model whose layers run fused against the same model with the fusion off, bit for bit.</summary>
public static class FusedAssert
{
    /// <summary>Two training steps' forward and backward on (x, dz) (the second from updated running statistics), then
    /// the BatchNorm's parameter gradients and running statistics: every bit alike. The output must hold some zeros (the
    /// ReLU at work).</summary>
    public static void SameSteps(Sequential plain, BatchNorm plainBn, Sequential fused, BatchNorm fusedBn, Tensor x, Tensor dz)
    {
        for (int step = 0; step < 2; step++)
        {
            var zPlain = plain.Forward(x).Clone();
            var zFused = fused.Forward(x).Clone();
            Assert.Contains(0f, zPlain.Span.ToArray());
            TensorAssert.Bits("z", zPlain, zFused);
            fused.ZeroGrad();
            plain.ZeroGrad();
            TensorAssert.Bits("dx", plain.Backward(dz), fused.Backward(dz));
        }
        if (plainBn.Weight is not null)
        {
            TensorAssert.Bits("dγ", plainBn.Weight.Grad, fusedBn.Weight!.Grad);
            TensorAssert.Bits("dβ", plainBn.Bias!.Grad, fusedBn.Bias!.Grad);
        }
        TensorAssert.Bits("running mean", plainBn.RunningMean!, fusedBn.RunningMean!);
        TensorAssert.Bits("running var", plainBn.RunningVar!, fusedBn.RunningVar!);
        Assert.Equal(plainBn.NumBatchesTracked, fusedBn.NumBatchesTracked);
    }
}

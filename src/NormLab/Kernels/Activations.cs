using System.Numerics;
using System.Numerics.Tensors;
using NormLab.Threading;

namespace NormLab.Kernels;

/// <summary>Element-wise activations and their backward, written in terms of the output y (what the modules keep).</summary>
/// <remarks>
/// Large tensors are cut into chunks over the <see cref="Team"/>; element-wise results do not depend on the cut.
/// </remarks>
public static unsafe class Activations
{
    private const int ParallelLength = 1 << 16;

    private enum Op { Relu, ReluBackward, Sigmoid, SigmoidBackward, Tanh, TanhBackward }

    /// <summary>y = max(x, 0).</summary>
    public static void Relu<T>(Span<T> y, ReadOnlySpan<T> x) where T : unmanaged, IFloatingPointIeee754<T> => Run(Op.Relu, y, x, default);

    /// <summary>dx = dy where y &gt; 0, else 0 (the subgradient at 0 is 0, as in PyTorch).</summary>
    public static void ReluBackward<T>(Span<T> dx, ReadOnlySpan<T> dy, ReadOnlySpan<T> y) where T : unmanaged, IFloatingPointIeee754<T> =>
        Run(Op.ReluBackward, dx, dy, y);

    /// <summary>y = 1/(1 + e^−x).</summary>
    public static void Sigmoid<T>(Span<T> y, ReadOnlySpan<T> x) where T : unmanaged, IFloatingPointIeee754<T> => Run(Op.Sigmoid, y, x, default);

    /// <summary>dx = dy·y·(1 − y).</summary>
    public static void SigmoidBackward<T>(Span<T> dx, ReadOnlySpan<T> dy, ReadOnlySpan<T> y) where T : unmanaged, IFloatingPointIeee754<T> =>
        Run(Op.SigmoidBackward, dx, dy, y);

    /// <summary>y = tanh(x).</summary>
    public static void Tanh<T>(Span<T> y, ReadOnlySpan<T> x) where T : unmanaged, IFloatingPointIeee754<T> => Run(Op.Tanh, y, x, default);

    /// <summary>dx = dy·(1 − y²).</summary>
    public static void TanhBackward<T>(Span<T> dx, ReadOnlySpan<T> dy, ReadOnlySpan<T> y) where T : unmanaged, IFloatingPointIeee754<T> =>
        Run(Op.TanhBackward, dx, dy, y);

    private static void Apply<T>(Op op, Span<T> output, ReadOnlySpan<T> a, ReadOnlySpan<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        switch (op)
        {
            case Op.Relu: TensorPrimitives.Max(a, T.Zero, output); break;
            case Op.Sigmoid when typeof(T) == typeof(float) && FastSigmoid.IsSupported:
                FastSigmoid.Apply(System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(output),
                    System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(a));
                break;
            case Op.Sigmoid: TensorPrimitives.Sigmoid(a, output); break;
            case Op.Tanh: TensorPrimitives.Tanh(a, output); break;
            default: Backward(op, output, a, y); break;
        }
    }

    // a = dy; the vector body and the scalar tail apply the same operations in the same order.
    private static void Backward<T>(Op op, Span<T> dx, ReadOnlySpan<T> dy, ReadOnlySpan<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var one = Vector<T>.One;
            for (; i <= dx.Length - Vector<T>.Count; i += Vector<T>.Count)
            {
                var g = new Vector<T>(dy.Slice(i));
                var v = new Vector<T>(y.Slice(i));
                var d = op switch
                {
                    Op.ReluBackward => Vector.ConditionalSelect(Vector.GreaterThan(v, Vector<T>.Zero), g, Vector<T>.Zero),
                    Op.SigmoidBackward => g * v * (one - v),
                    _ => g * (one - v * v),
                };
                d.CopyTo(dx.Slice(i));
            }
        }
        for (; i < dx.Length; i++)
            dx[i] = op switch
            {
                Op.ReluBackward => y[i] > T.Zero ? dy[i] : T.Zero,
                Op.SigmoidBackward => dy[i] * y[i] * (T.One - y[i]),
                _ => dy[i] * (T.One - y[i] * y[i]),
            };
    }

    private static void Run<T>(Op op, Span<T> output, ReadOnlySpan<T> a, ReadOnlySpan<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (a.Length != output.Length || (!y.IsEmpty && y.Length != output.Length))
            throw new ArgumentException($"Activation kernel: {output.Length} outputs for inputs of {a.Length} and {y.Length} values.");
        // σ and tanh cost an exponential per value, so a hidden layer's 60×100 pays for a parallel call; the other ops
        // move memory and pay only on large tensors. The chunks are fixed, not per thread, so every value falls in the
        // same place of the same chunk whatever the number of threads.
        bool transcendental = op is Op.Sigmoid or Op.Tanh;
        int chunk = transcendental ? TranscendentalChunk : Chunk;
        if (output.Length < (transcendental ? 4 * TranscendentalChunk : ParallelLength))
        {
            Apply(op, output, a, y);
            return;
        }
        var args = new Args<T> { Op = op, Output = output, A = a, Y = y, Chunk = chunk };
        Team.For((output.Length + chunk - 1) / chunk, ref args, &Chunks);
    }

    private const int Chunk = 1 << 14, TranscendentalChunk = 1 << 10;

    private static void Chunks<T>(ref Args<T> g, int first, int end) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int begin = first * g.Chunk, stop = Math.Min(end * g.Chunk, g.Output.Length);
        Apply(g.Op, g.Output[begin..stop], g.A[begin..stop], g.Y.IsEmpty ? default : g.Y[begin..stop]);
    }

    private ref struct Args<T> where T : unmanaged
    {
        public Op Op;
        public int Chunk;
        public Span<T> Output;
        public ReadOnlySpan<T> A, Y;
    }
}

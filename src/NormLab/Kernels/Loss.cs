using System.Numerics;
using System.Numerics.Tensors;

namespace NormLab.Kernels;

/// <summary>Loss kernels.</summary>
public static class Loss
{
    /// <summary>
    /// Mean softmax cross-entropy over rows of <paramref name="logits"/> [n, k] with integer targets, and its gradient
    /// dlogits = (softmax − onehot)/n. Log-sum-exp is shifted by the row maximum (TensorPrimitives.SoftMax does not shift).
    /// </summary>
    /// <returns>The mean loss, accumulated in double.</returns>
    public static double SoftmaxCrossEntropy<T>(Span<T> grad, ReadOnlySpan<T> logits, ReadOnlySpan<int> targets, int n, int k)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        double total = 0;
        T invN = T.One / T.CreateChecked(n);
        for (int i = 0; i < n; i++)
        {
            var row = logits.Slice(i * k, k);
            var g = grad.Slice(i * k, k);
            T max = TensorPrimitives.Max(row);
            TensorPrimitives.Subtract(row, max, g);
            TensorPrimitives.Exp(g, g);
            T sum = TensorPrimitives.Sum<T>(g);
            int t = targets[i];
            // loss_i = log Σ exp(z − max) − (z_t − max)
            total += double.CreateChecked(T.Log(sum)) - double.CreateChecked(row[t] - max);
            TensorPrimitives.Multiply(g, invN / sum, g);
            g[t] -= invN;
        }
        return total / n;
    }

    /// <summary>Mean squared error Σ(p − t)²/n over all elements, and its gradient 2(p − t)/n.</summary>
    public static double MeanSquaredError<T>(Span<T> grad, ReadOnlySpan<T> prediction, ReadOnlySpan<T> target)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        double total = 0;
        int n = prediction.Length;
        T scale = T.CreateChecked(2.0 / n);
        for (int i = 0; i < n; i++)
        {
            T d = prediction[i] - target[i];
            total += double.CreateChecked(d * d);
            grad[i] = scale * d;
        }
        return total / n;
    }
}

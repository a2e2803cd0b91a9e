namespace NormLab.Lab.Measures;

/// <summary>
/// How the gradient reaches each layer: ‖∂L/∂W‖ (Frobenius) of every weight for the mean softmax cross-entropy over one
/// fixed batch, in the model's current mode. Vanishing gradients show as norms falling towards the input layer.
/// </summary>
public static class LayerGradients
{
    /// <summary>
    /// The gradient norm of each weight (input layer first). The model is put back exactly (weights, running statistics)
    /// and its gradients are left zeroed, so a probe between training steps does not change training.
    /// </summary>
    public static double[] Norms(Sequential model, Tensor input, int[] labels, ModelState? state = null)
    {
        state = (state ?? new ModelState(model)).Save();
        model.ZeroGrad();
        var loss = new SoftmaxCrossEntropy();
        loss.Forward(model.Forward(input), labels);
        model.Backward(loss.Backward());
        var norms = Nets.Weights(model).Select(w => Nets.Norm(w.Grad.Span)).ToArray();
        model.ZeroGrad();
        state.Restore();
        return norms;
    }
}

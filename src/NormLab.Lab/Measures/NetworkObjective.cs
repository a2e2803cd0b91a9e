namespace NormLab.Lab.Measures;

/// <summary>
/// A network's loss on one fixed batch as a <see cref="LossGradient"/> of its flat parameter vector: write the
/// parameters, forward in the model's current mode (training: batch statistics, so the loss is a function of w alone
/// for a fixed batch), loss, backward, read the gradients. The model's parameters, running statistics and the noise
/// generators are saved on creation and put back by <see cref="Restore"/>, so a probe leaves training as it was.
/// </summary>
public sealed class NetworkObjective
{
    private readonly Sequential _model;
    private readonly Func<float> _loss;
    private readonly Func<Tensor> _lossGradient;
    private readonly ModelState _state;
    private readonly NoiseStreams _noise;

    private NetworkObjective(Sequential model, Func<float> loss, Func<Tensor> lossGradient, ModelState? state)
    {
        _model = model;
        _loss = loss;
        _lossGradient = lossGradient;
        Vector = new ParameterVector(model);
        _state = (state ?? new ModelState(model)).Save();
        _noise = new NoiseStreams(model).Save();
    }

    /// <summary>Softmax cross-entropy of <paramref name="model"/> on (<paramref name="x"/>, <paramref name="labels"/>).</summary>
    public static NetworkObjective CrossEntropy(Sequential model, Tensor x, int[] labels, ModelState? state = null)
    {
        var loss = new SoftmaxCrossEntropy();
        return new NetworkObjective(model, () => loss.Forward(model.Forward(x), labels), loss.Backward, state);
    }

    /// <summary>Mean squared error of <paramref name="model"/> on (<paramref name="x"/>, <paramref name="target"/>).</summary>
    public static NetworkObjective MeanSquared(Sequential model, Tensor x, Tensor target, ModelState? state = null)
    {
        var loss = new MeanSquaredError();
        return new NetworkObjective(model, () => loss.Forward(model.Forward(x), target), loss.Backward, state);
    }

    /// <summary>The parameters as a vector (the layout of <see cref="Evaluate"/>'s arguments).</summary>
    public ParameterVector Vector { get; }

    /// <summary>The loss and gradient at <paramref name="w"/> on the batch (the model's parameters are left at w).</summary>
    public double Evaluate(ReadOnlySpan<float> w, Span<float> grad)
    {
        Vector.Write(w);
        Vector.ZeroGrad();
        _noise.Restore();   // the same noise at every point: the loss is then a function of w alone
        float loss = _loss();
        _model.Backward(_lossGradient());
        Vector.ReadGrad(grad);
        return loss;
    }

    /// <summary>Puts parameters, buffers and noise generators back as they were when this objective was made.</summary>
    public void Restore()
    {
        _state.Restore();
        _noise.Restore();
    }
}

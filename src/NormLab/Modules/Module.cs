namespace NormLab;

/// <summary>
/// A layer with a hand-written backward. <see cref="Forward"/> returns an output the module owns (reused while the shape stays);
/// <see cref="Backward"/> takes the gradient of that output, returns the gradient of the input (also owned) and adds the
/// parameter gradients into <see cref="Parameter.Grad"/>.
/// </summary>
/// <remarks>
/// A module keeps what its backward needs from the last forward, so Backward must follow the Forward it belongs to.
/// Outputs are overwritten by the next Forward: copy them if you need them longer.
/// </remarks>
public abstract class Module
{
    /// <summary>True in training mode (the default), false after <see cref="Eval"/>.</summary>
    public bool Training { get; private set; } = true;

    /// <summary>
    /// Called after every forward with (module, input, output); for observing activations without changing the model
    /// (the lab's probes). Null by default.
    /// </summary>
    public Action<Module, Tensor, Tensor>? ForwardHook { get; set; }

    /// <summary>Computes the output for <paramref name="x"/>.</summary>
    public Tensor Forward(Tensor x)
    {
        var y = ForwardCore(x);
        ForwardHook?.Invoke(this, x, y);
        return y;
    }

    /// <summary>
    /// Called after every backward with (module, output gradient, input gradient); for observing gradients without changing
    /// the model (<see cref="NonFinite.Locate"/>). Null by default.
    /// </summary>
    public Action<Module, Tensor, Tensor>? BackwardHook { get; set; }

    /// <summary>Back-propagates <paramref name="dy"/> (the gradient of the last output) and returns the input gradient.</summary>
    public Tensor Backward(Tensor dy)
    {
        var dx = BackwardCore(dy);
        BackwardHook?.Invoke(this, dy, dx);
        return dx;
    }

    /// <summary>
    /// Whether <see cref="Backward"/> computes dx. A network's first layer sees data, whose gradient nobody reads (PyTorch
    /// skips it because the input does not require grad); switching it off saves that layer's largest product. Layers
    /// that can skip it then return <see cref="NoGradient"/>; parameter gradients are accumulated either way.
    /// </summary>
    public virtual bool NeedsInputGradient { get; set; } = true;

    /// <summary>What <see cref="Backward"/> returns when <see cref="NeedsInputGradient"/> is false: an empty tensor.</summary>
    public static Tensor NoGradient { get; } = new(0);

    /// <summary>The forward computation.</summary>
    protected abstract Tensor ForwardCore(Tensor x);

    /// <summary>The backward computation.</summary>
    protected abstract Tensor BackwardCore(Tensor dy);

    /// <summary>This module's own parameters (not its children's).</summary>
    protected virtual IEnumerable<Parameter> LocalParameters() => [];

    /// <summary>This module's own persistent buffers (running statistics), with their state-dict names.</summary>
    protected virtual IEnumerable<(string Name, Tensor Value)> LocalBuffers() => [];

    /// <summary>Direct sub-modules with their names (PyTorch's: an index in a Sequential).</summary>
    public virtual IEnumerable<(string Name, Module Child)> Children() => [];

    /// <summary>All parameters of this module and its descendants, in a stable order.</summary>
    public IEnumerable<Parameter> Parameters() => NamedParameters().Select(p => p.Parameter);

    /// <summary>All parameters with state-dict names such as <c>0.weight</c>.</summary>
    public IEnumerable<(string Name, Parameter Parameter)> NamedParameters(string prefix = "")
    {
        foreach (var p in LocalParameters())
            yield return (prefix + p.Name, p);
        foreach (var (name, child) in Children())
            foreach (var item in child.NamedParameters(prefix + name + "."))
                yield return item;
    }

    /// <summary>All buffers (running statistics) with state-dict names such as <c>1.running_mean</c>.</summary>
    public IEnumerable<(string Name, Tensor Value)> NamedBuffers(string prefix = "")
    {
        foreach (var (name, value) in LocalBuffers())
            yield return (prefix + name, value);
        foreach (var (name, child) in Children())
            foreach (var item in child.NamedBuffers(prefix + name + "."))
                yield return item;
    }

    /// <summary>This module and its descendants with state-dict prefixes ("" for this one, then e.g. "1", "2.body.0").</summary>
    public IEnumerable<(string Name, Module Module)> NamedModules(string prefix = "")
    {
        yield return (prefix, this);
        foreach (var (name, child) in Children())
            foreach (var item in child.NamedModules(prefix.Length == 0 ? name : prefix + "." + name))
                yield return item;
    }

    /// <summary>This module and all its descendants, depth first, parents before children.</summary>
    public IEnumerable<Module> Modules()
    {
        yield return this;
        foreach (var (_, child) in Children())
            foreach (var m in child.Modules())
                yield return m;
    }

    /// <summary>Sets training mode on this module and all descendants.</summary>
    public Module Train(bool mode = true)
    {
        foreach (var m in Modules())
            m.Training = mode;
        return this;
    }

    /// <summary>Sets evaluation mode (running statistics, no dropout) on this module and all descendants.</summary>
    public Module Eval() => Train(false);

    /// <summary>Zeroes the gradients of all parameters (walks the module tree; in a training loop prefer
    /// <see cref="Optimizer.ZeroGrad"/>, which holds the list and allocates nothing).</summary>
    public void ZeroGrad()
    {
        foreach (var p in Parameters())
            p.ZeroGrad();
    }

    /// <inheritdoc/>
    public override string ToString() => GetType().Name;
}

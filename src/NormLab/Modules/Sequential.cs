namespace NormLab;

/// <summary>Modules applied in order; backward runs them in reverse. Children are named by index, as in PyTorch.</summary>
public sealed class Sequential : Module
{
    private readonly Module[] _layers;
    private readonly bool[] _fused; // per layer: whether the last forward ran it together with the ReLU after it
    private readonly bool[] _pooled; // per layer: whether that forward also ran the MaxPool2d after the ReLU

    /// <summary>Creates the chain.</summary>
    public Sequential(params Module[] layers)
    {
        _layers = (Module[])layers.Clone();
        _fused = new bool[_layers.Length];
        _pooled = new bool[_layers.Length];
    }

    /// <summary>The modules, in order.</summary>
    public IReadOnlyList<Module> Layers => _layers;

    /// <summary>The module at <paramref name="index"/>.</summary>
    public Module this[int index] => _layers[index];

    /// <summary>
    /// Runs a BatchNorm followed by a ReLU as one layer (<see cref="BatchNorm.ForwardRelu"/>) where it can: one pass over the
    /// data instead of two each way, with the same results bit for bit (true by default). The ReLU still holds its output
    /// and each module's backward still works alone; a hook on either module turns the fusion off for that pair.
    /// <para>A 2×2, stride-2 <see cref="MaxPool2d"/> right after the pair is computed in the same pass as well
    /// (<see cref="BatchNorm.ForwardReluPool"/>), and backward the three run as one (<see cref="BatchNorm.BackwardReluPool"/>):
    /// the ReLU's full-size output and its gradient are then never written, and the ReLU's backward alone refuses to run
    /// after such a forward (the Sequential's backward does not need it). A hook on any of the three, or planes the
    /// pooling kernel does not take (odd sides, under 8 wide), keep the pool apart.</para>
    /// </summary>
    public bool FuseBatchNormRelu { get; set; } = true;

    /// <inheritdoc/>
    protected override Tensor ForwardCore(Tensor x)
    {
        Array.Clear(_fused);
        Array.Clear(_pooled);
        for (int i = 0; i < _layers.Length; i++)
        {
            try
            {
                if (FuseBatchNormRelu && i + 1 < _layers.Length && _layers[i] is BatchNorm bn && _layers[i + 1] is ReLU relu && bn.CanFuseRelu(x, relu))
                {
                    if (i + 2 < _layers.Length && _layers[i + 2] is MaxPool2d pool && bn.CanFuseReluPool(x, relu, pool))
                    {
                        x = bn.ForwardReluPool(x, relu, pool);
                        _fused[i] = _pooled[i] = true;
                        i += 2;
                        continue;
                    }
                    x = bn.ForwardRelu(x, relu);
                    _fused[i++] = true;
                    continue;
                }
                x = _layers[i].Forward(x);
            }
            catch (ArgumentException e)
            {
                // Which of several alike layers failed: the index is the name in NamedModules and the state dict.
                throw new ArgumentException($"Sequential layer {i}: {e.Message}", e);
            }
        }
        return x;
    }

    /// <inheritdoc/>
    protected override Tensor BackwardCore(Tensor dy)
    {
        for (int i = _layers.Length - 1; i >= 0; i--)
        {
            try
            {
                if (i > 1 && _pooled[i - 2] && _layers[i - 2].BackwardHook is null && _layers[i - 1].BackwardHook is null && _layers[i].BackwardHook is null)
                {
                    dy = ((BatchNorm)_layers[i - 2]).BackwardReluPool(dy, (ReLU)_layers[i - 1], (MaxPool2d)_layers[i]);
                    i -= 2;
                }
                else if (i > 0 && _fused[i - 1] && _layers[i - 1].BackwardHook is null && _layers[i].BackwardHook is null)
                    dy = ((BatchNorm)_layers[--i]).BackwardRelu(dy, (ReLU)_layers[i + 1]);
                else
                    dy = _layers[i].Backward(dy);
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"Sequential layer {i}: {e.Message}", e);
            }
            if (!_layers[i].NeedsInputGradient)
                return NoGradient; // the layers before it have no parameters (see NeedsInputGradient)
        }
        return dy;
    }

    /// <summary>
    /// Also applies to the layers up to and including the first with parameters: when the chain's dx is not needed,
    /// neither is theirs (a Flatten before the first Linear, say), and backward stops at that layer.
    /// </summary>
    public override bool NeedsInputGradient
    {
        get => base.NeedsInputGradient;
        set
        {
            base.NeedsInputGradient = value;
            foreach (var layer in _layers)
            {
                layer.NeedsInputGradient = value;
                if (layer.Parameters().Any())
                    break;
            }
        }
    }

    /// <inheritdoc/>
    public override IEnumerable<(string Name, Module Child)> Children()
    {
        for (int i = 0; i < _layers.Length; i++)
            yield return (i.ToString(System.Globalization.CultureInfo.InvariantCulture), _layers[i]);
    }

    /// <inheritdoc/>
    public override string ToString() => "Sequential(" + string.Join(", ", _layers.Select(l => l.ToString())) + ")";
}

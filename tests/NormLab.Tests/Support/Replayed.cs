namespace NormLab.Tests.Support;

/// <summary>
/// Restores a generator before every forward pass of <paramref name="inner"/>, so that a random layer (dropout, noisy
/// BatchNorm) draws the same numbers each time and finite differences see one function.
/// </summary>
public sealed class Replayed(Module inner, Rng rng, ulong[] state) : Module
{
    protected override Tensor ForwardCore(Tensor x)
    {
        rng.SetState(state);
        return inner.Forward(x);
    }

    protected override Tensor BackwardCore(Tensor dy) => inner.Backward(dy);

    public override IEnumerable<(string Name, Module Child)> Children()
    {
        yield return ("inner", inner);
    }
}

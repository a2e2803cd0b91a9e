using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace NormLab;

/// <summary>
/// Finding NaN and ±∞ in a network: a cheap test for every step, and a replay with a check after every module that names
/// where the first non-finite value appears, for the one step that needs it.
/// </summary>
public static class NonFinite
{
    /// <summary>Whether every value is finite: one vector pass, nothing allocated.</summary>
    public static bool AllFinite(ReadOnlySpan<float> values)
    {
        // v − v is 0 for a finite v and NaN for NaN and ±∞, and NaN survives any sum: a subtraction and an add per lane,
        // in four independent sums so that the adds do not wait for each other.
        int w = Vector256<float>.Count, i = 0;
        ref float start = ref MemoryMarshal.GetReference(values);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (; i <= values.Length - 4 * w; i += 4 * w)
        {
            var v0 = Vector256.LoadUnsafe(ref start, (nuint)i);
            var v1 = Vector256.LoadUnsafe(ref start, (nuint)(i + w));
            var v2 = Vector256.LoadUnsafe(ref start, (nuint)(i + 2 * w));
            var v3 = Vector256.LoadUnsafe(ref start, (nuint)(i + 3 * w));
            a0 += v0 - v0;
            a1 += v1 - v1;
            a2 += v2 - v2;
            a3 += v3 - v3;
        }
        float tail = 0;
        for (; i < values.Length; i++)
            tail += values[i] - values[i];
        return Vector256.Sum((a0 + a1) + (a2 + a3)) + tail == 0;
    }

    /// <summary>Whether every parameter's gradient is finite.</summary>
    public static bool GradientsFinite(IReadOnlyList<Parameter> parameters)
    {
        for (int i = 0; i < parameters.Count; i++)
            if (!AllFinite(parameters[i].Grad.Span))
                return false;
        return true;
    }

    /// <summary>The first parameter or buffer of <paramref name="model"/> holding a non-finite value, as
    /// "<c>name (Type)</c>" (state-dict name, type of the module that owns it); null if all are finite.</summary>
    public static string? FirstInState(Module model)
    {
        var state = model.NamedParameters().Select(p => (p.Name, p.Parameter.Value)).Concat(model.NamedBuffers());
        foreach (var (name, value) in state)
            if (!AllFinite(value.Span))
                return $"{name} ({Owner(model, name).GetType().Name})";
        return null;
    }

    /// <summary>
    /// Runs one forward and backward of <paramref name="model"/> on <paramref name="input"/> with a check after every module
    /// and describes the first non-finite value: the input, a module's output (forward order), the loss, or a module's input
    /// or parameter gradient (backward order), with the module's state-dict name and type, e.g. "the output of 2 (Sigmoid)".
    /// Modules are reported innermost first, as their hooks fire. Parameter gradients are zeroed first and left as the replay
    /// made them; training-mode side effects (running statistics) happen as in any forward. Null if everything is finite.
    /// </summary>
    /// <param name="model">The network.</param>
    /// <param name="input">The batch.</param>
    /// <param name="loss">The loss of an output and its gradient with respect to the output.</param>
    public static string? Locate(Module model, Tensor input, Func<Tensor, (float Loss, Tensor Gradient)> loss)
    {
        if (!AllFinite(input.Span))
            return "the input batch";
        var modules = model.NamedModules().ToList();
        var hooks = modules.Select(m => (m.Module.ForwardHook, m.Module.BackwardHook)).ToList();
        string? found = null;
        foreach (var (name, module) in modules)
        {
            var (forward, backward) = (module.ForwardHook, module.BackwardHook);
            module.ForwardHook = (m, x, y) =>
            {
                forward?.Invoke(m, x, y);
                if (found is null && !AllFinite(y.Span))
                    found = $"the output of {Describe(name, m)}";
            };
            module.BackwardHook = (m, dy, dx) =>
            {
                backward?.Invoke(m, dy, dx);
                if (found is null && !AllFinite(dx.Span))
                    found = $"the input gradient of {Describe(name, m)}";
                foreach (var (parameter, p) in m.NamedParameters(name.Length == 0 ? "" : name + "."))
                    if (found is null && !AllFinite(p.Grad.Span))
                        found = $"the gradient of {parameter} ({m.GetType().Name})";
            };
        }
        try
        {
            foreach (var p in model.Parameters())
                p.Grad.Zero();
            var output = model.Forward(input);
            if (found is not null)
                return found;
            var (value, gradient) = loss(output);
            if (!float.IsFinite(value) || !AllFinite(gradient.Span))
                return $"the loss ({value}) of a finite output";
            model.Backward(gradient);
            return found;
        }
        finally
        {
            for (int i = 0; i < modules.Count; i++)
                (modules[i].Module.ForwardHook, modules[i].Module.BackwardHook) = hooks[i];
        }
    }

    private static string Describe(string name, Module m) => name.Length == 0 ? $"the model ({m.GetType().Name})" : $"{name} ({m.GetType().Name})";

    // The innermost module whose parameters or buffers include the state-dict entry.
    private static Module Owner(Module model, string entry)
    {
        Module owner = model;
        foreach (var (name, m) in model.NamedModules())
            if (name.Length > 0 && entry.StartsWith(name + ".", StringComparison.Ordinal))
                owner = m;
        return owner;
    }
}

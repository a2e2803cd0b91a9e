using NormLab.Onnx.Proto;
using static NormLab.Onnx.GraphBuilder;

namespace NormLab.Onnx;

/// <summary>
/// Turns modules into ONNX nodes, walking the model as its forward pass does and carrying each value's static shape, so
/// that a layer that does not fit its input fails here, naming the layer, rather than in the runtime that loads the file.
/// Layers the forward pass skips in eval mode (dropout, step noise) emit nothing. The normalization family is in
/// <c>Emitter.Norms.cs</c>.
/// </summary>
internal sealed partial class Emitter(GraphBuilder g)
{
    public Value Emit(Module m, string path, Value x) => m switch
    {
        Sequential s => Chain(s, path, x),
        Residual r => Residual(r, path, x),
        Linear l => Linear(l, path, x),
        Conv2d c => Conv(c, path, x),
        MaxPool2d p => Pool(p, "MaxPool", path, x),
        AvgPool2d p => Pool(p, "AveragePool", path, x, Int("count_include_pad", 1)),
        GlobalAvgPool2d => GlobalAveragePool(m, path, x),
        NormLab.Flatten => FlattenAll(m, path, x),
        ReLU => new Value(g.Node(path, "Relu", [x.Name]), x.Shape),
        Sigmoid => new Value(g.Node(path, "Sigmoid", [x.Name]), x.Shape),
        Tanh => new Value(g.Node(path, "Tanh", [x.Name]), x.Shape),
        Dropout or StepNoise => x,   // identities in eval mode
        _ => Norm(m, path, x) ?? throw Unsupported(m, path),
    };

    private Value Chain(Sequential s, string path, Value x)
    {
        foreach (var (name, child) in s.Children())
            x = Emit(child, Child(path, name), x);
        return x;
    }

    private Value Residual(Residual r, string path, Value x)
    {
        var f = Emit(r.Body, Child(path, "body"), x);
        var s = r.Shortcut is null ? x : Emit(r.Shortcut, Child(path, "shortcut"), x);
        if (!f.Shape.SequenceEqual(s.Shape))
            throw Error(r, path, $"the body's output {f.ShapeString} and the shortcut's {s.ShapeString} differ");
        return new Value(g.Node(path, "Add", [f.Name, s.Name]), f.Shape);
    }

    private Value Linear(Linear l, string path, Value x)
    {
        if (x.Rank != 2 || x.Shape[1] != l.InFeatures)
            throw Error(l, path, $"expects input [N, {l.InFeatures}], gets {x.ShapeString}");
        string[] inputs = l.Bias is null ? [x.Name, g.State(l.Weight.Value)] : [x.Name, g.State(l.Weight.Value), g.State(l.Bias.Value)];
        // y = x·Wᵀ + b with W stored [out, in] as in the state dict.
        return new Value(g.Node(path, "Gemm", inputs, Int("transB", 1)), [x.Shape[0], l.OutFeatures]);
    }

    private Value Conv(Conv2d c, string path, Value x)
    {
        if (x.Rank != 4 || x.Shape[1] != c.InChannels)
            throw Error(c, path, $"expects input [N, {c.InChannels}, H, W], gets {x.ShapeString}");
        int k = c.KernelSize, s = c.Stride, p = c.Padding;
        int oh = OutputSize(x.Shape[2], k, s, p), ow = OutputSize(x.Shape[3], k, s, p);
        if (oh < 1 || ow < 1)
            throw Error(c, path, $"input {x.ShapeString} is smaller than the {k}×{k} kernel even with padding {p}");
        string[] inputs = c.Bias is null ? [x.Name, g.State(c.Weight.Value)] : [x.Name, g.State(c.Weight.Value), g.State(c.Bias.Value)];
        var y = g.Node(path, "Conv", inputs, Ints("kernel_shape", k, k), Ints("strides", s, s), Ints("pads", p, p, p, p), Ints("dilations", 1, 1), Int("group", 1));
        return new Value(y, [x.Shape[0], c.OutChannels, oh, ow]);
    }

    // Both pools round down (ceil_mode = 0); average pooling counts padded zeros, as NormLab's and PyTorch's do.
    private Value Pool(Pool2d pool, string op, string path, Value x, params AttributeProto[] extra)
    {
        int k = pool.KernelSize, s = pool.Stride, p = pool.Padding;
        if (x.Rank != 4)
            throw Error(pool, path, $"expects input [N, C, H, W], gets {x.ShapeString}");
        int oh = OutputSize(x.Shape[2], k, s, p), ow = OutputSize(x.Shape[3], k, s, p);
        if (oh < 1 || ow < 1)
            throw Error(pool, path, $"input {x.ShapeString} is smaller than the {k}×{k} window even with padding {p}");
        AttributeProto[] attributes = [Ints("kernel_shape", k, k), Ints("strides", s, s), Ints("pads", p, p, p, p), Int("ceil_mode", 0), .. extra];
        return new Value(g.Node(path, op, [x.Name], attributes), [x.Shape[0], x.Shape[1], oh, ow]);
    }

    // NormLab's global pool returns [N, C] (what the classifier takes); ONNX's keeps [N, C, 1, 1], so flatten after it.
    private Value GlobalAveragePool(Module m, string path, Value x)
    {
        if (x.Rank != 4)
            throw Error(m, path, $"expects input [N, C, H, W], gets {x.ShapeString}");
        var pooled = g.Node(path, "GlobalAveragePool", [x.Name]);
        return new Value(g.Node(path, "Flatten", [pooled], Int("axis", 1)), [x.Shape[0], x.Shape[1]]);
    }

    private Value FlattenAll(Module m, string path, Value x)
    {
        int rest = 1;
        for (int d = 1; d < x.Rank; d++)
            rest *= x.Shape[d];
        return new Value(g.Node(path, "Flatten", [x.Name], Int("axis", 1)), [x.Shape[0], rest]);
    }

    private static int OutputSize(int size, int kernel, int stride, int padding) =>
        size + 2 * padding < kernel ? 0 : (size + 2 * padding - kernel) / stride + 1;

    private static string Child(string path, string name) => path.Length == 0 ? name : path + "." + name;

    private static string Where(Module m, string path) => path.Length == 0 ? $"the model ({m})" : $"module '{path}' ({m})";

    private static ArgumentException Error(Module m, string path, string what) => new($"ONNX export: {Where(m, path)}: {what}.");

    private static ArgumentException Unsupported(Module m, string path) => new(
        $"ONNX export: {Where(m, path)} has no ONNX equivalent here; exportable are Sequential, Residual, Linear, Conv2d, pools, Flatten, " +
        "ReLU, Sigmoid, Tanh, Dropout and the normalization layers.");
}

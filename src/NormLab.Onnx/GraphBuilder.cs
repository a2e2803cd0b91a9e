using System.Runtime.InteropServices;
using Google.Protobuf;
using NormLab.Onnx.Proto;

namespace NormLab.Onnx;

/// <summary>A value of the graph: its name and static shape, the batch dimension written as −1.</summary>
internal readonly record struct Value(string Name, int[] Shape)
{
    public int Rank => Shape.Length;

    public string ShapeString => "[" + string.Join(", ", Shape.Select(d => d < 0 ? "N" : d.ToString(System.Globalization.CultureInfo.InvariantCulture))) + "]";
}

/// <summary>
/// Collects the nodes and initializers of one graph. Parameters and buffers become initializers under their state-dict
/// names (each once, however often it is used); constants the export derives (shapes, axes, ones for a missing γ) are
/// named after the module that needs them. Node names and outputs follow torch.onnx's pattern, <c>/2/body/0/Conv</c> and
/// <c>/2/body/0/Conv_output_0</c>, so a graph viewer shows where each node comes from.
/// </summary>
internal sealed class GraphBuilder
{
    private readonly Dictionary<Tensor, string> _stateNames = new(ReferenceEqualityComparer.Instance);
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private readonly HashSet<Tensor> _written = new(ReferenceEqualityComparer.Instance);

    public GraphBuilder(Module model, int opset)
    {
        Opset = opset;
        foreach (var (name, p) in model.NamedParameters())
            _stateNames[p.Value] = name;
        foreach (var (name, b) in model.NamedBuffers())
            _stateNames[b] = name;
        _names.UnionWith(_stateNames.Values);
        _names.UnionWith(["input", "output"]);   // the graph's own
    }

    public int Opset { get; }

    public GraphProto Graph { get; } = new();

    /// <summary>The initializer of a parameter or buffer of the model, named as in its state dict.</summary>
    public string State(Tensor tensor)
    {
        if (!_stateNames.TryGetValue(tensor, out var name))
            throw new InvalidOperationException($"A tensor of shape {tensor.ShapeString} is not a parameter or buffer of the exported model.");
        if (_written.Add(tensor))
            Graph.Initializer.Add(FloatTensor(name, tensor.Span, tensor.Shape));
        return name;
    }

    /// <summary>A float constant, as an initializer named <paramref name="name"/> (made unique).</summary>
    public string Constant(string name, ReadOnlySpan<float> values, ReadOnlySpan<int> shape)
    {
        name = Unique(name);
        Graph.Initializer.Add(FloatTensor(name, values, shape));
        return name;
    }

    /// <summary>An int64 vector constant (shapes, axes), as an initializer.</summary>
    public string Int64s(string name, params long[] values)
    {
        name = Unique(name);
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
        t.Dims.Add(values.Length);
        t.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan()));
        Graph.Initializer.Add(t);
        return name;
    }

    /// <summary>Adds a node of <paramref name="op"/> for the module at <paramref name="scope"/> and returns its output's name.</summary>
    public string Node(string scope, string op, IEnumerable<string> inputs, params AttributeProto[] attributes)
    {
        string name = Unique(Scoped(scope, op));
        string output = Unique(name + "_output_0");
        var node = new NodeProto { Name = name, OpType = op };
        node.Input.AddRange(inputs);
        node.Output.Add(output);
        node.Attribute.AddRange(attributes);
        Graph.Node.Add(node);
        return output;
    }

    /// <summary>The name <paramref name="name"/> under the module at <paramref name="scope"/>: <c>/2/body/0/name</c>.</summary>
    public static string Scoped(string scope, string name) => "/" + scope.Replace('.', '/') + (scope.Length == 0 ? "" : "/") + name;

    public static AttributeProto Int(string name, long value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static AttributeProto Float(string name, double value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = (float)value };

    public static AttributeProto Ints(string name, params long[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }

    /// <summary>A float tensor type with the batch dimension symbolic.</summary>
    public static ValueInfoProto Info(string name, int[] shape)
    {
        var tensorShape = new TensorShapeProto();
        foreach (int d in shape)
            tensorShape.Dim.Add(d < 0 ? new TensorShapeProto.Types.Dimension { DimParam = "batch" } : new TensorShapeProto.Types.Dimension { DimValue = d });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = tensorShape } },
        };
    }

    private string Unique(string name)
    {
        string candidate = name;
        for (int k = 1; !_names.Add(candidate); k++)
            candidate = name + "_" + k.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return candidate;
    }

    private static TensorProto FloatTensor(string name, ReadOnlySpan<float> values, ReadOnlySpan<int> shape)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        foreach (int d in shape)
            t.Dims.Add(d);
        // raw_data is little-endian by the specification, as memory is on every platform .NET 10 supports officially.
        t.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values));
        return t;
    }
}

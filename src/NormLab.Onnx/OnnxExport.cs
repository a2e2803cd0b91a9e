using Google.Protobuf;
using NormLab.Onnx.Proto;

namespace NormLab.Onnx;

/// <summary>Settings of <see cref="OnnxExport"/>.</summary>
/// <param name="Opset">
/// The ONNX operator set, 17 to 21. 17 (the default) is the first with LayerNormalization and what most runtimes take;
/// from 21 GroupNorm is one GroupNormalization node instead of a reshape, instance norm and affine.
/// </param>
/// <param name="Metadata">Key–value pairs stored in the model's <c>metadata_props</c> (e.g. the checkpoint's architecture).</param>
public sealed record OnnxExportOptions(int Opset = 17, IReadOnlyDictionary<string, string>? Metadata = null);

/// <summary>
/// Exports a model to ONNX as it computes in eval mode (running statistics, no dropout, no noise), like
/// <c>torch.onnx.export</c> of a model after <c>eval()</c>; the model itself is not changed, whatever its mode. The graph
/// has one input <c>input</c> of shape [batch, …<c>inputShape</c>] and one output <c>output</c>, float32, with a symbolic
/// batch dimension; parameters and running statistics are initializers under their PyTorch state-dict names
/// (<c>0.weight</c>, <c>1.running_var</c>). To export the BatchNorm-folded model, export <c>model.FoldBatchNorm()</c>.
/// </summary>
public static class OnnxExport
{
    /// <summary>The operator sets the exporter writes (and the tests run in ONNX Runtime).</summary>
    public const int MinOpset = 17, MaxOpset = 21;

    /// <summary>Writes the model to <paramref name="path"/> (through a temporary file renamed over it, so a failed export leaves no partial file).</summary>
    /// <param name="model">The network.</param>
    /// <param name="inputShape">One sample's shape, without the batch dimension: [784] for the zoo's MLPs, [1, 28, 28] for its convolutional nets.</param>
    /// <param name="path">The .onnx file to write.</param>
    /// <param name="options">Opset and metadata.</param>
    /// <exception cref="ArgumentException">A module has no ONNX equivalent or does not fit its input; the message names it.</exception>
    /// <exception cref="IOException">The file cannot be written.</exception>
    public static void Export(Module model, int[] inputShape, string path, OnnxExportOptions? options = null)
    {
        var bytes = ToModel(model, inputShape, options).ToByteArray();
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full))
            throw new IOException($"cannot write the ONNX model to '{path}': it is a folder.");
        string? folder = Path.GetDirectoryName(full);
        if (folder is not null && !Directory.Exists(folder))
            throw new IOException($"cannot write the ONNX model to '{path}': the folder '{folder}' does not exist.");
        AtomicFile.Write(full, stream => stream.Write(bytes));
    }

    /// <summary>The ONNX model as a protobuf message (serialize it with <c>ToByteArray()</c>).</summary>
    /// <inheritdoc cref="Export" path="/param"/>
    /// <exception cref="ArgumentException">A module has no ONNX equivalent or does not fit its input; the message names it.</exception>
    public static ModelProto ToModel(Module model, int[] inputShape, OnnxExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputShape);
        options ??= new OnnxExportOptions();
        if (options.Opset is < MinOpset or > MaxOpset)
            throw new ArgumentException($"ONNX export: opset {options.Opset} is not supported; choose {MinOpset} to {MaxOpset}.");
        if (inputShape.Length == 0 || inputShape.Any(d => d <= 0))
            throw new ArgumentException($"ONNX export: the input shape (one sample, without the batch) must have positive dimensions, got [{string.Join(", ", inputShape)}].");

        var g = new GraphBuilder(model, options.Opset);
        var input = new Value("input", [-1, .. inputShape]);
        var output = new Emitter(g).Emit(model, "", input);
        // A model that is the identity in eval mode still needs a node between the graph's input and output.
        string last = output.Name == input.Name ? g.Node("", "Identity", [input.Name]) : output.Name;
        foreach (var node in g.Graph.Node)
        {
            for (int i = 0; i < node.Input.Count; i++)
                if (node.Input[i] == last)
                    node.Input[i] = "output";
            for (int i = 0; i < node.Output.Count; i++)
                if (node.Output[i] == last)
                    node.Output[i] = "output";
        }

        g.Graph.Name = model.GetType().Name;
        g.Graph.Input.Add(GraphBuilder.Info("input", input.Shape));
        g.Graph.Output.Add(GraphBuilder.Info("output", output.Shape));
        var result = new ModelProto
        {
            IrVersion = IrVersion(options.Opset),
            ProducerName = "NormLab",
            ProducerVersion = typeof(OnnxExport).Assembly.GetName().Version?.ToString() ?? "",
            Graph = g.Graph,
        };
        result.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = options.Opset });
        foreach (var (key, value) in options.Metadata ?? new Dictionary<string, string>())
            result.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
        return result;
    }

    // The IR version that introduced each opset (onnx/helper.py's VERSION_TABLE): 17, 18 → 8; 19, 20 → 9; 21 → 10.
    private static long IrVersion(int opset) => opset switch
    {
        <= 18 => 8,
        <= 20 => 9,
        _ => 10,
    };
}

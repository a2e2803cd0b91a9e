using System.CommandLine;
using NormLab.Onnx;

namespace NormLab.Cli;

/// <summary><c>normlab export</c>: a checkpoint to an ONNX model in eval mode, optionally with BatchNorm folded.</summary>
internal static class ExportCommand
{
    public static Command Build(TextWriter log, TextWriter err)
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "a checkpoint written by normlab train", Required = true };
        var onnx = new Option<string>("--onnx") { Description = "the .onnx file to write", Required = true };
        var fold = new Option<bool>("--fold") { Description = "fold every BatchNorm that follows a Linear or Conv2d into it first" };
        var opset = new Option<int>("--opset")
        {
            Description = $"ONNX operator set, {OnnxExport.MinOpset} to {OnnxExport.MaxOpset} (21: GroupNorm as one GroupNormalization node)",
            DefaultValueFactory = _ => OnnxExport.MinOpset,
        };
        var cmd = new Command("export", "Export a checkpoint to ONNX (eval mode: running statistics, no dropout).") { checkpoint, onnx, fold, opset };
        cmd.SetAction(p => Commands.Guard(err, () =>
        {
            string path = p.GetValue(checkpoint)!, target = p.GetValue(onnx)!;
            if (!File.Exists(path))
                throw new ArgumentException($"checkpoint '{path}' not found");
            var (_, meta) = SafeTensors.Read(path);
            var spec = ModelSpec.FromMetadata(meta, path);
            Module net = spec.Build(new Rng(0));
            Checkpoint.LoadModel(path, net);
            bool folded = p.GetValue(fold);
            if (folded)
                net = net.FoldBatchNorm();
            var metadata = new Dictionary<string, string>(meta) { ["folded"] = folded ? "true" : "false" };
            OnnxExport.Export(net, spec.Flat ? [784] : [1, 28, 28], target, new OnnxExportOptions(p.GetValue(opset), metadata));
            log.WriteLine($"{spec.Model} (norm {spec.Norm.Kind.ToString().ToLowerInvariant()}{(folded ? ", folded" : "")}) → {target} (ONNX opset {p.GetValue(opset)})");
            return 0;
        }));
        return cmd;
    }
}

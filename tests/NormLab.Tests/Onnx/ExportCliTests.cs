using Microsoft.ML.OnnxRuntime;
using NormLab.Onnx.Proto;
using NormLab.Tests.Support;
using static NormLab.Tests.Onnx.OnnxRuntimeHarness;

namespace NormLab.Tests.Onnx;

/// <summary><c>normlab export</c>, run in process.</summary>
public class ExportCliTests
{
    [Fact]
    public void ExportsACheckpointThatOnnxRuntimeRunsFoldedOrNot()
    {
        string dir = TempDirs.Create("normlab-export");
        var train = CliTests.Run("train", "--model", "ioffe-mlp", "--norm", "batch", "--data", Paths.Dataset("mnist-10k"), "--steps", "20",
            "--eval-every", "20", "--out", dir);
        Assert.True(train.Code == 0, train.Err);
        string checkpoint = Path.Combine(dir, NormLab.Cli.TrainRun.ModelName);
        var net = NormLab.Cli.ModelSpec.FromMetadata(SafeTensors.Read(checkpoint).Metadata, checkpoint).Build(new Rng(0));
        Checkpoint.LoadModel(checkpoint, net);
        net.Eval();
        var x = Images(0, 8, flat: true);
        var expected = net.Forward(x).ToArray();

        foreach (bool fold in new[] { false, true })
        {
            string onnx = Path.Combine(dir, fold ? "folded.onnx" : "model.onnx");
            var export = CliTests.Run(["export", "--checkpoint", checkpoint, "--onnx", onnx, .. fold ? new[] { "--fold" } : []]);
            Assert.True(export.Code == 0, export.Err);
            Assert.Contains($"ioffe-mlp (norm batch{(fold ? ", folded" : "")}) → {onnx} (ONNX opset 17)", export.Out);
            var bytes = File.ReadAllBytes(onnx);
            var model = ModelProto.Parser.ParseFrom(bytes);
            Assert.Equal(fold ? "true" : "false", model.MetadataProps.Single(p => p.Key == "folded").Value);
            Assert.Equal("ioffe-mlp", model.MetadataProps.Single(p => p.Key == "model").Value);
            Assert.Equal(fold ? 0 : 3, model.Graph.Node.Count(n => n.OpType == "BatchNormalization"));
            foreach (var level in new[] { GraphOptimizationLevel.ORT_DISABLE_ALL, GraphOptimizationLevel.ORT_ENABLE_ALL })
                Assert.True(MaxAbsDifference(expected, Run(bytes, x, level)) <= 1e-4, $"{onnx} {level}");
        }
        Assert.Equal(["folded.onnx", "model.onnx"], Directory.GetFiles(dir, "*.onnx*").Select(Path.GetFileName).Order());
    }

    [Fact]
    public void ErrorsAreOneLineAndLeaveNoFile()
    {
        string dir = TempDirs.Create("normlab-export");
        string notCheckpoint = Path.Combine(dir, "junk.safetensors");
        File.WriteAllBytes(notCheckpoint, [1, 2, 3]);
        string fine = Path.Combine(dir, "fine.safetensors");
        Checkpoint.SaveModel(fine, new NormLab.Cli.ModelSpec("mlp", NormLab.Models.NormKind.Layer, NormLab.Models.NormPosition.Before, 0.1, false).Build(new Rng(1)),
            new NormLab.Cli.ModelSpec("mlp", NormLab.Models.NormKind.Layer, NormLab.Models.NormPosition.Before, 0.1, false).ToMetadata());
        (string[] Args, string Message)[] cases =
        [
            (["--checkpoint", Path.Combine(dir, "missing.safetensors"), "--onnx", Path.Combine(dir, "a.onnx")], "not found"),
            (["--checkpoint", notCheckpoint, "--onnx", Path.Combine(dir, "a.onnx")], notCheckpoint),
            (["--checkpoint", fine, "--onnx", Path.Combine(dir, "no-such-folder", "a.onnx")], "does not exist"),
            (["--checkpoint", fine, "--onnx", dir], "is a folder"),
            (["--checkpoint", fine, "--onnx", Path.Combine(dir, "a.onnx"), "--opset", "13"], "opset 13 is not supported"),
        ];
        foreach (var (args, message) in cases)
        {
            var (code, _, err) = CliTests.Run(["export", .. args]);
            Assert.Equal(1, code);
            Assert.StartsWith("normlab: error: ", err);
            Assert.Contains(message, err);
            Assert.Single(err.TrimEnd().Split('\n'));
        }
        Assert.Equal(["fine.safetensors", "junk.safetensors"], Directory.GetFileSystemEntries(dir).Select(Path.GetFileName).Order());

        var ok = CliTests.Run("export", "--checkpoint", fine, "--onnx", Path.Combine(dir, "mlp.onnx"), "--opset", "21");
        Assert.True(ok.Code == 0, ok.Err);
        Assert.Contains(ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(dir, "mlp.onnx"))).Graph.Node, n => n.OpType == "LayerNormalization");
    }
}

using NormLab.Tests.Support;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using NormLab.Models;
using NormLab.Onnx;
using NormLab.Onnx.Proto;
using static NormLab.Tests.Onnx.OnnxRuntimeHarness;

namespace NormLab.Tests.Onnx;

/// <summary>ONNX export of the zoo, run in ONNX Runtime against NormLab's own eval outputs.</summary>
public class OnnxExportTests
{
    private const double Tolerance = 1e-4;

    public static TheoryData<string, NormKind> ZooModels()
    {
        var data = new TheoryData<string, NormKind>();
        foreach (var model in NormLab.Cli.ModelSpec.Models)
            foreach (var norm in Enum.GetValues<NormKind>())
                data.Add(model, norm);
        return data;
    }

    private static bool Flat(string model) => model is "ioffe-mlp" or "mlp";

    private static int[] InputShape(string model) => Flat(model) ? [784] : [1, 28, 28];

    // Every zoo model with every --norm: the exported graph, unfolded and folded, loads in ONNX Runtime with graph
    // optimizations off and fully on and gives NormLab's eval output on 8 MNIST test images. Where folding changes
    // nothing (no BN-like layer), the folded export must be the same file.
    [Theory]
    [MemberData(nameof(ZooModels))]
    public void ZooModelRunsInOnnxRuntimeWithNormLabsOutputs(string name, NormKind norm)
    {
        var x = Images(0, 8, Flat(name));
        var (model, expected) = Prepared(name, norm, x);
        var unfolded = OnnxExport.ToModel(model, InputShape(name)).ToByteArray();
        var folded = OnnxExport.ToModel(model.FoldBatchNorm(), InputShape(name)).ToByteArray();
        var runs = new List<(byte[] Bytes, string What)> { (unfolded, "unfolded") };
        if (norm is NormKind.None or NormKind.Group or NormKind.Layer or NormKind.Instance or NormKind.Whiten)
            Assert.Equal(unfolded, folded);
        else
        {
            Assert.DoesNotContain(ModelProto.Parser.ParseFrom(folded).Graph.Node, n => n.OpType == "BatchNormalization");
            runs.Add((folded, "folded"));
        }
        foreach (var (bytes, what) in runs)
            foreach (var level in new[] { GraphOptimizationLevel.ORT_DISABLE_ALL, GraphOptimizationLevel.ORT_ENABLE_ALL })
            {
                double difference = MaxAbsDifference(expected, Run(bytes, x, level));
                Assert.True(difference <= Tolerance, $"{name}/{norm} {what} {level}: max |ORT − NormLab| = {difference:E2}");
            }
    }

    [Theory]
    [InlineData("mlp")]
    [InlineData("cnn")]
    [InlineData("resnet")]
    public void GroupNormIsOneGroupNormalizationNodeFromOpset21(string name)
    {
        var x = Images(0, 8, Flat(name));
        var (model, expected) = Prepared(name, NormKind.Group, x);
        var onnx = OnnxExport.ToModel(model, InputShape(name), new OnnxExportOptions(Opset: 21));
        Assert.Equal(10, onnx.IrVersion);
        Assert.Contains(onnx.Graph.Node, n => n.OpType == "GroupNormalization");
        Assert.DoesNotContain(onnx.Graph.Node, n => n.OpType == "InstanceNormalization");
        foreach (var level in new[] { GraphOptimizationLevel.ORT_DISABLE_ALL, GraphOptimizationLevel.ORT_ENABLE_ALL })
            Assert.True(MaxAbsDifference(expected, Run(onnx.ToByteArray(), x, level)) <= Tolerance, level.ToString());
    }

    // ONNX's BatchNormalization: epsilon as set, momentum in ONNX's convention (weight of the old value: 1 − PyTorch's),
    // inference mode; initializers are exactly the state dict's parameters and running statistics, under its names.
    [Theory]
    [InlineData("ioffe-mlp")]
    [InlineData("cnn")]
    [InlineData("resnet")]
    public void BatchNormalizationAttributesAndStateDictNames(string name)
    {
        var (model, _) = Prepared(name, NormKind.Batch, Images(0, 2, Flat(name)));
        var onnx = ModelProto.Parser.ParseFrom(OnnxExport.ToModel(model, InputShape(name)).ToByteArray());
        Assert.Equal(8, onnx.IrVersion);
        Assert.Equal(17, Assert.Single(onnx.OpsetImport).Version);
        var bns = onnx.Graph.Node.Where(n => n.OpType == "BatchNormalization").ToList();
        Assert.Equal(model.Modules().OfType<BatchNorm>().Count(), bns.Count);
        foreach (var node in bns)
        {
            var attributes = node.Attribute.ToDictionary(a => a.Name);
            Assert.Equal(1e-5f, attributes["epsilon"].F);
            Assert.Equal(0.9f, attributes["momentum"].F);
            Assert.True(attributes["training_mode"].HasI);
            Assert.Equal(0, attributes["training_mode"].I);
            Assert.Equal(5, node.Input.Count);
            Assert.Single(node.Output);
            Assert.EndsWith(".running_var", node.Input[4]);
        }
        var stateDict = model.NamedParameters().Select(p => p.Name).Concat(model.NamedBuffers().Select(b => b.Name)).Order(StringComparer.Ordinal);
        Assert.Equal(stateDict, onnx.Graph.Initializer.Select(t => t.Name).Order(StringComparer.Ordinal));
        var weight = onnx.Graph.Initializer.Single(t => t.Name == model.NamedParameters().First().Name);
        Assert.Equal(model.NamedParameters().First().Parameter.Value.ToArray(), System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(weight.RawData.Span).ToArray());
        Assert.Equal(["batch", .. InputShape(name).Select(d => d.ToString())], onnx.Graph.Input.Single().Type.TensorType.Shape.Dim.Select(d => d.DimParam.Length > 0 ? d.DimParam : d.DimValue.ToString()));
        Assert.Equal([1, 10], onnx.Graph.Output.Single().Type.TensorType.Shape.Dim.Select(d => d.DimParam.Length > 0 ? 1 : d.DimValue));

        var folded = OnnxExport.ToModel(model.FoldBatchNorm(), InputShape(name));
        Assert.DoesNotContain(folded.Graph.Node, n => n.OpType == "BatchNormalization");
    }

    // Settings the zoo does not use: average pooling with padding, tanh, dropout, BN without γ/β and with a cumulative
    // average, instance norm with running statistics, LayerNorm over [C, H, W], an identity shortcut.
    [Fact]
    public void LayersAndSettingsBeyondTheZoo()
    {
        var rng = new Rng(11);
        var block = new Sequential(new Conv2d(4, 4, 3, padding: 1, rng: rng), new InstanceNorm2d(4, trackRunningStats: true), new Tanh());
        var model = new Sequential(
            new Conv2d(1, 4, 3, stride: 2, padding: 1, bias: false, rng: rng), new BatchNorm2d(4, affine: false, momentum: null), new ReLU(),
            new AvgPool2d(3, stride: 2, padding: 1), new Residual(block), new LayerNorm([4, 7, 7]), new Dropout(0.5, rng),
            new GlobalAvgPool2d(), new Linear(4, 6, rng: rng), new BatchNorm1d(6, eps: 1e-3), new Sigmoid(), new Linear(6, 3, rng: rng));
        model.Train();
        model.Forward(Images(100, 16, flat: false));
        model.Forward(Images(116, 16, flat: false));
        model.Eval();
        var x = Images(0, 5, flat: false);
        var expected = model.Forward(x).ToArray();
        foreach (var exported in new[] { model, model.FoldBatchNorm() })
        {
            var bytes = OnnxExport.ToModel(exported, [1, 28, 28]).ToByteArray();
            foreach (var level in new[] { GraphOptimizationLevel.ORT_DISABLE_ALL, GraphOptimizationLevel.ORT_ENABLE_ALL })
                Assert.True(MaxAbsDifference(expected, Run(bytes, x, level)) <= Tolerance, level.ToString());
        }
        var bn = OnnxExport.ToModel(model, [1, 28, 28]).Graph.Node.First(n => n.OpType == "BatchNormalization");
        Assert.DoesNotContain(bn.Attribute, a => a.Name == "momentum");   // a cumulative average has no ONNX momentum
    }

    [Fact]
    public void ModelThatIsTheIdentityInEvalMode()
    {
        var x = Images(0, 3, flat: true);
        var bytes = OnnxExport.ToModel(new Sequential(new Dropout(0.3)), [784]).ToByteArray();
        Assert.Equal(x.ToArray(), Run(bytes, x, GraphOptimizationLevel.ORT_ENABLE_ALL));
    }

    private sealed class Square : Module
    {
        protected override Tensor ForwardCore(Tensor x) => x;

        protected override Tensor BackwardCore(Tensor dy) => dy;

        public override string ToString() => "Square()";
    }

    [Fact]
    public void WhatCannotBeExportedIsNamed()
    {
        static string Fails(Module model, int[] shape, int opset = 17) =>
            Assert.Throws<ArgumentException>(() => OnnxExport.ToModel(model, shape, new OnnxExportOptions(opset))).Message;

        Assert.Contains("module '1.body.0' (Square()) has no ONNX equivalent", Fails(new Sequential(new Linear(4, 4), new Residual(new Sequential(new Square()))), [4]));
        Assert.Contains("module '1' (BatchNorm1d(3", Fails(new Sequential(new Linear(4, 3), new BatchNorm1d(3, trackRunningStats: false)), [4]));
        Assert.Contains("running statistics", Fails(new Sequential(new Linear(4, 3), new BatchNorm1d(3, trackRunningStats: false)), [4]));
        Assert.Contains("module '0' (Linear(5, 3, bias=True)): expects input [N, 5], gets [N, 4]", Fails(new Sequential(new Linear(5, 3)), [4]));
        Assert.Contains("module '1' (BatchNorm2d(3", Fails(new Sequential(new Linear(4, 3), new BatchNorm2d(3)), [4]));
        Assert.Contains("body's output [N, 3] and the shortcut's [N, 4]", Fails(new Residual(new Linear(4, 3)), [4]));
        Assert.Contains("opset 16 is not supported", Fails(new Sequential(new Linear(4, 3)), [4], opset: 16));
        Assert.Contains("positive dimensions", Fails(new Sequential(new Linear(4, 3)), [0]));
    }

    [Fact]
    public void ExportWritesNothingWhereItCannotWrite()
    {
        string dir = TempDirs.Create("normlab-onnx");
        var model = new Sequential(new Linear(4, 3));
        Assert.Contains("does not exist", Assert.Throws<IOException>(() => OnnxExport.Export(model, [4], Path.Combine(dir, "no", "m.onnx"))).Message);
        Assert.Contains("is a folder", Assert.Throws<IOException>(() => OnnxExport.Export(model, [4], dir)).Message);
        OnnxExport.Export(model, [4], Path.Combine(dir, "m.onnx"), new OnnxExportOptions(Metadata: new Dictionary<string, string> { ["model"] = "tiny" }));
        Assert.Equal(["m.onnx"], Directory.GetFiles(dir).Select(Path.GetFileName));
        var onnx = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(dir, "m.onnx")));
        Assert.Equal("tiny", onnx.MetadataProps.Single(p => p.Key == "model").Value);
        Assert.Equal("NormLab", onnx.ProducerName);
    }
}

using NormLab.Data;
using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>Initializers, optimizer policies, hooks, tensors and file readers.</summary>
public class EngineTests
{
    [Fact]
    public void InitializersHaveTheirDocumentedSpreadAndRepeatWithTheSeed()
    {
        var w = new Tensor(200, 300);   // fan_in 300, fan_out 200
        double Std(Tensor t) => Math.Sqrt(t.ToArray().Select(v => (double)v * v).Average());
        Init.Normal(w, new Rng(1), 0.1);
        Assert.InRange(Std(w), 0.099, 0.101);
        Init.KaimingNormal(w, new Rng(1));
        Assert.InRange(Std(w), 0.99 * Math.Sqrt(2.0 / 300), 1.01 * Math.Sqrt(2.0 / 300));
        Init.XavierUniform(w, new Rng(1));
        double a = Math.Sqrt(6.0 / 500);
        Assert.All(w.ToArray(), v => Assert.InRange(v, -a, a));
        Assert.InRange(Std(w), 0.99 * a / Math.Sqrt(3), 1.01 * a / Math.Sqrt(3));
        Init.KaimingUniform(w, new Rng(1), a: Math.Sqrt(5));   // PyTorch's Linear default: bound 1/√fan_in
        Assert.All(w.ToArray(), v => Assert.InRange(v, -1 / Math.Sqrt(300), 1 / Math.Sqrt(300)));
        var again = new Tensor(200, 300);
        Init.KaimingUniform(again, new Rng(1), a: Math.Sqrt(5));
        Assert.Equal(w.ToArray(), again.ToArray());
        Assert.Equal((27, 36), Init.Fans(new Tensor(4, 3, 3, 3)));
        Assert.Throws<ArgumentException>(() => Init.XavierNormal(new Tensor(5), new Rng(1)));
    }

    // Kernels load whole vectors: a large tensor starts on a cache line so that none straddles two, and its views keep
    // addressing the same values.
    [Theory]
    [InlineData(new[] { 1 }, false)]
    [InlineData(new[] { 60, 100 }, false)]
    [InlineData(new[] { 128, 128 }, true)]
    [InlineData(new[] { 7, 3, 29, 31 }, true)]
    public unsafe void LargeTensorsStartOnACacheLineAndAreZero(int[] shape, bool aligned)
    {
        var t = new Tensor(shape);
        Assert.Equal(t.Length >= Tensor.AlignedLength, aligned);
        Assert.All(t.ToArray(), v => Assert.Equal(0f, v));
        Assert.InRange(t.Offset + t.Length, t.Length, t.Storage.Length);
        fixed (float* p = t.Span)
        {
            if (aligned)
                Assert.Equal(0, (long)((nint)p & 63));
            else
                Assert.Equal(0, t.Offset);
        }
        for (int i = 0; i < t.Length; i++)
            t[i] = i;
        var clone = t.Clone();
        Assert.Equal(t.ToArray(), clone.ToArray());
        fixed (float* p = clone.Span)
            Assert.True(!aligned || ((nint)p & 63) == 0);
        var flat = t.Reshape(-1);
        Assert.Equal(t.Length - 1, flat[t.Length - 1]);
        var last = t.Slice(shape[0] - 1, 1);
        Assert.Equal(t.Length - last.Length, last[0]);
        Assert.Same(t.Storage, last.Storage);
    }

    [Fact]
    public void WeightDecayCanSkipNormalizationParameters()
    {
        var model = new Sequential(new Linear(3, 2, rng: new Rng(1)), new BatchNorm1d(2));
        var before = model.Parameters().Select(p => p.Value.Clone()).ToList();
        var sgd = new Sgd(model.Parameters(), lr: 0.1, weightDecay: 0.5, decay: DecayPolicy.SkipNormalization);
        sgd.ZeroGrad();
        sgd.Step();   // zero gradients: only weight decay moves anything
        var ps = model.Parameters().ToList();
        Assert.NotEqual(before[0].ToArray(), ps[0].Value.ToArray());   // linear weight decays: w·(1 − 0.05)
        Assert.Equal(before[0][0] * 0.95f, ps[0].Value[0], 6);
        Assert.NotEqual(before[1].ToArray(), ps[1].Value.ToArray());   // linear bias decays under SkipNormalization
        Assert.Equal(before[2].ToArray(), ps[2].Value.ToArray());      // γ untouched
        Assert.Equal(before[3].ToArray(), ps[3].Value.ToArray());      // β untouched
        var adamw = new AdamW(model.Parameters(), weightDecay: 0.5, decay: DecayPolicy.SkipNormalizationAndBias);
        var bias = ps[1].Value.Clone();
        adamw.ZeroGrad();
        adamw.Step();
        Assert.Equal(bias.ToArray(), ps[1].Value.ToArray());
        Assert.Throws<ArgumentException>(() => new Sgd([], 0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Sgd(model.Parameters(), -1));
        Assert.Throws<ArgumentException>(() => new Sgd(model.Parameters(), 0.1, nesterov: true));
    }

    [Fact]
    public void ParametersAndBuffersCarryStateDictNames()
    {
        var model = new Sequential(new Linear(3, 4), new BatchNorm1d(4), new Residual(new Sequential(new Linear(4, 4))));
        Assert.Equal(["0.weight", "0.bias", "1.weight", "1.bias", "2.body.0.weight", "2.body.0.bias"], model.NamedParameters().Select(p => p.Name));
        Assert.Equal(["1.running_mean", "1.running_var"], model.NamedBuffers().Select(b => b.Name));
        model.Eval();
        Assert.All(model.Modules(), m => Assert.False(m.Training));
        model.Train();
        Assert.All(model.Modules(), m => Assert.True(m.Training));
    }

    [Fact]
    public void ForwardHooksObserveActivationsWithoutChangingThem()
    {
        var sigmoid = new Sigmoid();
        var model = new Sequential(new Linear(3, 5, rng: new Rng(2)), new BatchNorm1d(5), sigmoid);
        float[]? seen = null;
        sigmoid.ForwardHook = (m, input, output) => seen = input.ToArray();
        var x = TensorAssert.Randn(3, 4, 3);
        var y = model.Forward(x).ToArray();
        Assert.Equal(((BatchNorm)model[1]).Forward(((Linear)model[0]).Forward(x)).ToArray(), seen);
        sigmoid.ForwardHook = null;
        Assert.Equal(y.Length, model.Forward(x).Length);
    }

    [Fact]
    public void TensorShapeErrorsNameTheShapes()
    {
        var t = new Tensor(2, 3);
        Assert.Contains("[3, 2]", Assert.Throws<ArgumentException>(() => t.CopyFrom(new Tensor(3, 2))).Message);
        Assert.Contains("[2, 3]", Assert.Throws<ArgumentException>(() => t.Reshape(4, 2)).Message);
        Assert.Equal([3, 2], t.Reshape(-1, 2).Shape.ToArray());
        Assert.Throws<IndexOutOfRangeException>(() => t[0, 3]);
        Assert.Throws<IndexOutOfRangeException>(() => t[6]);
        Assert.Throws<ArgumentException>(() => new Tensor(2, -1));
        var slice = Tensor.FromArray([1, 2, 3, 4, 5, 6], 3, 2).Slice(1, 2);
        Assert.Equal([3f, 4, 5, 6], slice.ToArray());
    }

    [Fact]
    public void SafeTensorsRoundTripAndRejectBrokenFiles()
    {
        string dir = TempDirs.Create("normlab");
        string path = Path.Combine(dir, "m.safetensors");
        var a = TensorAssert.Randn(1, 2, 3);
        SafeTensors.Write(path, [("a", a)], new Dictionary<string, string> { ["model"] = "mlp" }, [("steps", 42L)]);
        var (tensors, meta) = SafeTensors.Read(path);
        Assert.Equal(a.ToArray(), tensors["a"].ToTensor().ToArray());
        Assert.Equal(42, tensors["steps"].ToInt64s()[0]);
        Assert.Equal("mlp", meta["model"]);
        Assert.Empty(Directory.GetFiles(dir, "*.tmp-*"));
        var bytes = File.ReadAllBytes(path);
        for (int cut = 0; cut < bytes.Length; cut += 7)
        {
            var e = Assert.Throws<NormLabFormatException>(() => SafeTensors.Parse(bytes[..cut], "cut.safetensors"));
            Assert.Contains("cut.safetensors", e.Message);
        }
        var huge = (byte[])bytes.Clone();
        BitConverter.TryWriteBytes(huge.AsSpan(0, 8), ulong.MaxValue);
        Assert.Contains("header length", Assert.Throws<NormLabFormatException>(() => SafeTensors.Parse(huge, "h")).Message);
    }

    [Fact]
    public void IdxReaderNamesWhatIsWrong()
    {
        byte[] good = [0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3];
        Assert.Equal([3], Idx.Parse(good, "ok").Dims);
        Assert.Contains("magic", Assert.Throws<NormLabFormatException>(() => Idx.Parse([1, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3], "f")).Message);
        Assert.Contains("truncated", Assert.Throws<NormLabFormatException>(() => Idx.Parse(good[..10], "f")).Message);
        Assert.Contains("data type", Assert.Throws<NormLabFormatException>(() => Idx.Parse([0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0], "f")).Message);
        string dir = TempDirs.Create("normlab");
        Assert.Contains("not found", Assert.Throws<NormLabFormatException>(() => ImageDataset.LoadIdx(dir, "train")).Message);
        File.WriteAllBytes(Path.Combine(dir, "train-images-idx3-ubyte"), [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 7, 9]);
        File.WriteAllBytes(Path.Combine(dir, "train-labels-idx1-ubyte"), [0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3]);
        Assert.Contains("2 images but", Assert.Throws<NormLabFormatException>(() => ImageDataset.LoadIdx(dir, "train")).Message);
        File.WriteAllBytes(Path.Combine(dir, "train-labels-idx1-ubyte"), [0, 0, 8, 1, 0, 0, 0, 2, 1, 12]);
        Assert.Contains("label 12", Assert.Throws<NormLabFormatException>(() => ImageDataset.LoadIdx(dir, "train")).Message);
    }
}

using TorchSharp;
using static TorchSharp.torch;
using static NormLab.Peer.TensorIO;
using F = TorchSharp.torch.nn.functional;

namespace NormLab.Peer;

/// <summary>
/// Single layers and losses: forward and backward of (y * dy).sum() (losses: of the loss
/// itself), with parameters as PyTorch initialises them under the case's seed.
/// </summary>
internal static class LayerFixtures
{
    public static IEnumerable<(string, SafeTensorsWriter)> All()
    {
        yield return Linear("linear", 6, 4, bias: true, [5, 6]);
        yield return Linear("linear_nobias", 6, 4, bias: false, [5, 6]);
        yield return Conv2d("conv2d_s1_p1", 3, 4, kernel: 3, stride: 1, padding: 1, bias: true, [2, 3, 7, 6]);
        yield return Conv2d("conv2d_s2_p1", 2, 3, kernel: 3, stride: 2, padding: 1, bias: false, [2, 2, 7, 7]);
        yield return Conv2d("conv2d_k1", 3, 5, kernel: 1, stride: 1, padding: 0, bias: true, [2, 3, 4, 4]);
        // 3×3, stride 1, at least 8 channels each way: NormLab computes these by Winograd F(2×2, 3×3), forward and dx.
        yield return Conv2d("conv2d_winograd", 16, 20, kernel: 3, stride: 1, padding: 1, bias: true, [2, 16, 9, 10]);
        yield return Conv2d("conv2d_winograd_p2", 17, 16, kernel: 3, stride: 1, padding: 2, bias: false, [1, 17, 5, 19]);
        yield return MaxPool("maxpool2d_k2", kernel: 2, stride: 2, padding: 0, [2, 3, 6, 6]);
        yield return MaxPool("maxpool2d_k3_s2_p1", kernel: 3, stride: 2, padding: 1, [2, 2, 7, 7]);
        yield return AvgPool("avgpool2d_k2", kernel: 2, stride: 2, padding: 0, [2, 3, 6, 6]);
        yield return AvgPool("avgpool2d_k3_s2_p1", kernel: 3, stride: 2, padding: 1, [2, 2, 7, 7]);
        yield return Activation("sigmoid", "Sigmoid", nn.Sigmoid(), [4, 5]);
        yield return Activation("tanh", "Tanh", nn.Tanh(), [4, 5]);
        yield return Activation("relu", "ReLU", nn.ReLU(), [4, 5]);
        yield return CrossEntropy("cross_entropy", scale: 5, shift: 0);
        yield return CrossEntropy("log_softmax_large", scale: 1, shift: 1000);
        yield return Mse("mse", [4, 3]);
    }

    private static SafeTensorsWriter Begin(string name, string module, long[] xShape) =>
        FixturesCommand.NewFile()
            .Meta("case", name)
            .Meta("module", module)
            .Meta("x_shape", Shape(xShape))
            .Meta("seed", Num(Seed(name)));

    /// <summary>Forward, backward of (y*dy).sum(); records x, dy, y, dx and parameter grads.</summary>
    private static void Run(SafeTensorsWriter file, nn.Module<Tensor, Tensor> module, long[] xShape,
        TorchSharp.Modules.Parameter? weight, TorchSharp.Modules.Parameter? bias)
    {
        if (weight is not null)
        {
            file.Put("weight", weight);
        }
        if (bias is not null)
        {
            file.Put("bias", bias);
        }
        var x = randn(xShape).requires_grad_(true);
        var y = module.forward(x);
        var dy = randn(y.shape);
        module.zero_grad();
        (y * dy).sum().backward();
        file.Put("x", x).Put("dy", dy).Put("y", y).Put("dx", x.grad!);
        if (weight is not null)
        {
            file.Put("dweight", weight.grad!);
        }
        if (bias is not null)
        {
            file.Put("dbias", bias.grad!);
        }
    }

    private static (string, SafeTensorsWriter) Linear(string name, long inF, long outF, bool bias, long[] xShape)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(Seed(name));
        var m = nn.Linear(inF, outF, hasBias: bias);
        var file = Begin(name, "Linear", xShape)
            .Meta("in_features", Num(inF))
            .Meta("out_features", Num(outF))
            .Meta("bias", Bool(bias));
        Run(file, m, xShape, m.weight, m.bias);
        return (name, file);
    }

    private static (string, SafeTensorsWriter) Conv2d(string name, long cin, long cout, long kernel, long stride,
        long padding, bool bias, long[] xShape)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(Seed(name));
        var m = nn.Conv2d(cin, cout, kernel, stride: stride, padding: padding, bias: bias);
        var file = Begin(name, "Conv2d", xShape)
            .Meta("in_channels", Num(cin))
            .Meta("out_channels", Num(cout))
            .Meta("kernel_size", Num(kernel))
            .Meta("stride", Num(stride))
            .Meta("padding", Num(padding))
            .Meta("dilation", "1")
            .Meta("groups", "1")
            .Meta("bias", Bool(bias));
        Run(file, m, xShape, m.weight, m.bias);
        return (name, file);
    }

    private static (string, SafeTensorsWriter) MaxPool(string name, long kernel, long stride, long padding, long[] xShape)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(Seed(name));
        var m = nn.MaxPool2d(kernel, stride, padding);
        var file = Begin(name, "MaxPool2d", xShape)
            .Meta("kernel_size", Num(kernel))
            .Meta("stride", Num(stride))
            .Meta("padding", Num(padding))
            .Meta("dilation", "1")
            .Meta("ceil_mode", "false");
        Run(file, m, xShape, null, null);
        return (name, file);
    }

    private static (string, SafeTensorsWriter) AvgPool(string name, long kernel, long stride, long padding, long[] xShape)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(Seed(name));
        var m = nn.AvgPool2d(kernel, stride, padding, ceil_mode: false, count_include_pad: true);
        var file = Begin(name, "AvgPool2d", xShape)
            .Meta("kernel_size", Num(kernel))
            .Meta("stride", Num(stride))
            .Meta("padding", Num(padding))
            .Meta("ceil_mode", "false")
            .Meta("count_include_pad", "true");
        Run(file, m, xShape, null, null);
        return (name, file);
    }

    private static (string, SafeTensorsWriter) Activation(string name, string module, nn.Module<Tensor, Tensor> m, long[] xShape)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(Seed(name));
        var file = Begin(name, module, xShape);
        Run(file, m, xShape, null, null);
        return (name, file);
    }

    /// <summary>Mean cross-entropy of logits [6,10] = randn * scale + shift; dx = dloss/dlogits.</summary>
    private static (string, SafeTensorsWriter) CrossEntropy(string name, double scale, double shift)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(Seed(name));
        long[] shape = [6, 10];
        var x = (randn(shape) * scale + shift).detach().requires_grad_(true);
        var target = randint(0, shape[1], [shape[0]], ScalarType.Int64);
        var loss = F.cross_entropy(x, target, reduction: nn.Reduction.Mean);
        loss.backward();
        var file = Begin(name, "CrossEntropyLoss", shape)
            .Meta("reduction", "mean")
            .Meta("logits", $"randn*{Num(scale)}+{Num(shift)}");
        file.Put("x", x).Put("target", target).Put("loss", loss).Put("dx", x.grad!);
        return (name, file);
    }

    private static (string, SafeTensorsWriter) Mse(string name, long[] shape)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(Seed(name));
        var x = randn(shape).requires_grad_(true);
        var target = randn(shape);
        var loss = F.mse_loss(x, target, reduction: nn.Reduction.Mean);
        loss.backward();
        var file = Begin(name, "MSELoss", shape).Meta("reduction", "mean");
        file.Put("x", x).Put("target", target).Put("loss", loss).Put("dx", x.grad!);
        return (name, file);
    }
}

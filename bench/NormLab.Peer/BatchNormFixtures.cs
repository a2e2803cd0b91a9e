using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static NormLab.Peer.TensorIO;

namespace NormLab.Peer;

/// <summary>
/// BatchNorm1d/2d: 3 training steps then one eval step, each with a fresh input and
/// upstream gradient; records forward, backward and running statistics after each step.
/// </summary>
internal static class BatchNormFixtures
{
    public const int TrainSteps = 3;

    private sealed record Config(string Name, double Eps, double? Momentum, bool Affine, bool Track);

    private sealed record Shape(string Name, string Module, long[] Dims);

    private static readonly Config Default = new("default", 1e-5, 0.1, true, true);

    private static readonly Config[] Configs =
    [
        Default,
        Default with { Name = "momentum_none", Momentum = null },
        Default with { Name = "affine_false", Affine = false },
        Default with { Name = "track_false", Track = false },
        Default with { Name = "eps_1e-3", Eps = 1e-3 },
    ];

    private static readonly Shape[] Shapes =
    [
        new("bn1d_2d", "BatchNorm1d", [8, 5]),
        new("bn1d_3d", "BatchNorm1d", [4, 3, 7]),
        new("bn2d", "BatchNorm2d", [4, 3, 5, 6]),
    ];

    /// <summary>Edge cases, default config unless stated.</summary>
    private static readonly (Shape Shape, Config Config)[] Edges =
    [
        (new("bn2d_n2_c1_hw1", "BatchNorm2d", [2, 1, 1, 1]), Default),
        (new("bn1d_n2", "BatchNorm1d", [2, 4]), Default),
        (new("bn2d_n1", "BatchNorm2d", [1, 2, 3, 3]), Default),
        (new("bn2d_hw1", "BatchNorm2d", [3, 2, 1, 1]), Default with { Name = "momentum_none", Momentum = null }),
    ];

    public static IEnumerable<(string, SafeTensorsWriter)> All()
    {
        foreach (var shape in Shapes)
        {
            foreach (var config in Configs)
            {
                string name = $"{shape.Name}_{config.Name}";
                yield return (name, Make(name, shape, config));
            }
        }
        foreach (var (shape, config) in Edges)
        {
            yield return (shape.Name, Make(shape.Name, shape, config));
        }
    }

    private static SafeTensorsWriter Make(string caseName, Shape shape, Config config)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(Seed(caseName));
        long channels = shape.Dims[1];

        // TorchSharp's factories take a plain double momentum; PyTorch's momentum=None
        // (cumulative moving average) is the module's nullable `momentum` property set to null.
        NormBase bn = shape.Module switch
        {
            "BatchNorm1d" => nn.BatchNorm1d(channels, config.Eps, config.Momentum ?? 0.1, config.Affine, config.Track),
            "BatchNorm2d" => nn.BatchNorm2d(channels, config.Eps, config.Momentum ?? 0.1, config.Affine, config.Track),
            _ => throw new InvalidOperationException(shape.Module),
        };
        if (config.Momentum is null)
        {
            bn.momentum = null;
        }

        var file = FixturesCommand.NewFile()
            .Meta("case", caseName)
            .Meta("module", shape.Module)
            .Meta("shape", Shape(shape.Dims))
            .Meta("eps", Num(config.Eps))
            .Meta("momentum", config.Momentum is double m ? Num(m) : "none")
            .Meta("affine", Bool(config.Affine))
            .Meta("track_running_stats", Bool(config.Track))
            .Meta("steps", Num(TrainSteps))
            .Meta("seed", Num(Seed(caseName)));

        if (config.Affine)
        {
            using (no_grad())
            {
                bn.weight.copy_(rand(channels) + 0.5);            // U(0.5, 1.5)
                bn.bias!.copy_(randn(channels) * 0.5);            // N(0, 0.5^2)
            }
            file.Put("weight", bn.weight).Put("bias", bn.bias!);
        }

        // Per-channel offset c * 0.5 along dim 1, broadcast over the other dims.
        var offsetShape = Enumerable.Repeat(1L, shape.Dims.Length).ToArray();
        offsetShape[1] = channels;
        var offset = (arange(channels, ScalarType.Float32) * 0.5).reshape(offsetShape);

        bn.train();
        for (int s = 1; s <= TrainSteps; s++)
        {
            Step(bn, file, s.ToString(System.Globalization.CultureInfo.InvariantCulture), shape.Dims, offset, config);
        }
        bn.eval();
        Step(bn, file, "e", shape.Dims, offset, config);
        return file;
    }

    private static void Step(NormBase bn, SafeTensorsWriter file, string s, long[] dims, Tensor offset, Config config)
    {
        using var scope = NewDisposeScope();
        var x = (randn(dims) * 3 + 2 + offset).detach().requires_grad_(true);
        var dy = randn(dims);
        bn.zero_grad();
        var y = bn.forward(x);
        (y * dy).sum().backward();

        file.Put($"x.{s}", x).Put($"dy.{s}", dy).Put($"y.{s}", y).Put($"dx.{s}", x.grad!);
        if (config.Affine)
        {
            file.Put($"dweight.{s}", bn.weight.grad!).Put($"dbias.{s}", bn.bias!.grad!);
        }
        if (config.Track && s != "e")
        {
            file.Put($"running_mean.{s}", bn.running_mean!)
                .Put($"running_var.{s}", bn.running_var!)
                .Put($"num_batches_tracked.{s}", bn.num_batches_tracked!);
        }
    }
}

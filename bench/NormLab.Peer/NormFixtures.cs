using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static NormLab.Peer.TensorIO;

namespace NormLab.Peer;

/// <summary>
/// GroupNorm, LayerNorm and InstanceNorm2d: 3 training steps then one eval step, as for BatchNorm, each with a fresh input
/// and upstream gradient; records y, dx, parameter gradients and (InstanceNorm with tracking) running statistics.
/// </summary>
internal static class NormFixtures
{
    private sealed record Case(string Name, string Module, long[] Dims, long Groups = 0, long[]? Normalized = null, bool Affine = true, bool Track = false);

    private static readonly Case[] Cases =
    [
        new("groupnorm_g2", "GroupNorm", [3, 4, 5, 5], Groups: 2),
        new("groupnorm_g1", "GroupNorm", [2, 6, 3, 3], Groups: 1),
        new("groupnorm_g6", "GroupNorm", [2, 6, 2, 3], Groups: 6),
        new("groupnorm_noaffine", "GroupNorm", [2, 4, 3, 3], Groups: 2, Affine: false),
        new("groupnorm_2d_input", "GroupNorm", [5, 6], Groups: 3),
        new("layernorm_last", "LayerNorm", [4, 6], Normalized: [6]),
        new("layernorm_two_dims", "LayerNorm", [3, 4, 2, 5], Normalized: [2, 5]),
        new("layernorm_noaffine", "LayerNorm", [4, 7], Normalized: [7], Affine: false),
        new("instancenorm", "InstanceNorm2d", [3, 4, 5, 5], Affine: false),
        new("instancenorm_affine", "InstanceNorm2d", [2, 3, 4, 6]),
        new("instancenorm_track", "InstanceNorm2d", [3, 2, 4, 4], Track: true),
    ];

    public static IEnumerable<(string, SafeTensorsWriter)> All()
    {
        foreach (var c in Cases)
            yield return (c.Name, Make(c));
    }

    private static SafeTensorsWriter Make(Case c)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(Seed(c.Name));
        long channels = c.Dims[1];
        nn.Module<Tensor, Tensor> module;
        Parameter? weight, bias;
        Tensor? runningMean = null, runningVar = null;
        switch (c.Module)
        {
            case "GroupNorm":
                var gn = nn.GroupNorm(c.Groups, channels, 1e-5, c.Affine);
                (module, weight, bias) = (gn, gn.weight, gn.bias);
                break;
            case "LayerNorm":
                var ln = nn.LayerNorm(c.Normalized!, 1e-5, c.Affine);
                (module, weight, bias) = (ln, ln.weight, ln.bias);
                break;
            default:
                var inorm = nn.InstanceNorm2d(channels, 1e-5, 0.1, c.Affine, c.Track);
                (module, weight, bias) = (inorm, inorm.weight, inorm.bias);
                (runningMean, runningVar) = (inorm.running_mean, inorm.running_var);
                break;
        }
        var file = FixturesCommand.NewFile()
            .Meta("case", c.Name)
            .Meta("module", c.Module)
            .Meta("shape", Shape(c.Dims))
            .Meta("groups", Num(c.Groups))
            .Meta("normalized_shape", c.Normalized is null ? "" : Shape(c.Normalized))
            .Meta("eps", Num(1e-5))
            .Meta("momentum", Num(0.1))
            .Meta("affine", Bool(c.Affine))
            .Meta("track_running_stats", Bool(c.Track))
            .Meta("seed", Num(Seed(c.Name)));
        if (c.Affine)
        {
            using (no_grad())
            {
                weight!.copy_(rand(weight.shape) + 0.5);
                bias!.copy_(randn(bias.shape) * 0.5);
            }
            file.Put("weight", weight!).Put("bias", bias!);
        }
        module.train();
        for (int s = 1; s <= 4; s++)
        {
            string step = s == 4 ? "e" : s.ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (s == 4)
                module.eval();
            using var inner = NewDisposeScope();
            var x = (randn(c.Dims) * 3 + 2).detach().requires_grad_(true);
            var dy = randn(c.Dims);
            module.zero_grad();
            // TorchSharp's GroupNorm module wants a spatial dimension; [N, C] is [N, C, 1] to PyTorch's group_norm.
            var y = c.Dims.Length == 2 && c.Module == "GroupNorm" ? module.forward(x.unsqueeze(2)).squeeze(2) : module.forward(x);
            (y * dy).sum().backward();
            file.Put($"x.{step}", x).Put($"dy.{step}", dy).Put($"y.{step}", y).Put($"dx.{step}", x.grad!);
            if (c.Affine)
                file.Put($"dweight.{step}", weight!.grad!).Put($"dbias.{step}", bias!.grad!);
            if (runningMean is not null && s != 4)
                file.Put($"running_mean.{step}", runningMean).Put($"running_var.{step}", runningVar!);
        }
        return file;
    }
}

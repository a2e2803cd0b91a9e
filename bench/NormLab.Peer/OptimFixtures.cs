using TorchSharp;
using static TorchSharp.torch;
using static NormLab.Peer.TensorIO;

namespace NormLab.Peer;

/// <summary>
/// Optimizers: one parameter p of shape [7], three steps with given gradients.
/// TorchSharp implements the optimizers in managed code on libtorch tensor ops, following
/// PyTorch's single-tensor (for-loop) algorithms. Every hyperparameter is passed explicitly:
/// TorchSharp's torch.optim.Adam/AdamW factories default beta2 to 0.99, not PyTorch's 0.999.
/// </summary>
internal static class OptimFixtures
{
    public const int Steps = 3;
    private const long Size = 7;

    private sealed record Case(string Name, string Optimizer, double Lr,
        double Momentum = 0, double Dampening = 0, double WeightDecay = 0, bool Nesterov = false,
        double Beta1 = 0.9, double Beta2 = 0.999, double Eps = 1e-8);

    private static readonly Case[] Cases =
    [
        new("sgd", "SGD", 0.1),
        new("sgd_momentum", "SGD", 0.1, Momentum: 0.9),
        new("sgd_nesterov", "SGD", 0.1, Momentum: 0.9, Nesterov: true),
        new("sgd_momentum_dampening_wd", "SGD", 0.1, Momentum: 0.9, Dampening: 0.1, WeightDecay: 0.01),
        new("adam", "Adam", 0.01),
        new("adam_wd", "Adam", 0.01, WeightDecay: 0.1),
        new("adamw", "AdamW", 0.01, WeightDecay: 0.1),
        new("adam_betas", "Adam", 0.01, Beta1: 0.8, Beta2: 0.99, Eps: 1e-6),
    ];

    public static IEnumerable<(string, SafeTensorsWriter)> All() => Cases.Select(c => (c.Name, Make(c)));

    private static SafeTensorsWriter Make(Case c)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(Seed(c.Name));
        var file = FixturesCommand.NewFile()
            .Meta("case", c.Name)
            .Meta("optimizer", c.Optimizer)
            .Meta("lr", Num(c.Lr))
            .Meta("weight_decay", Num(c.WeightDecay))
            .Meta("steps", Num(Steps))
            .Meta("seed", Num(Seed(c.Name)));
        if (c.Optimizer == "SGD")
        {
            file.Meta("momentum", Num(c.Momentum))
                .Meta("dampening", Num(c.Dampening))
                .Meta("nesterov", Bool(c.Nesterov))
                .Meta("maximize", "false");
        }
        else
        {
            file.Meta("beta1", Num(c.Beta1))
                .Meta("beta2", Num(c.Beta2))
                .Meta("eps", Num(c.Eps))
                .Meta("amsgrad", "false")
                .Meta("maximize", "false");
        }

        var p = new TorchSharp.Modules.Parameter(randn(Size));
        file.Put("p.0", p);
        TorchSharp.Modules.Parameter[] ps = [p];
        optim.Optimizer opt = c.Optimizer switch
        {
            "SGD" => optim.SGD(ps, c.Lr, c.Momentum, c.Dampening, c.WeightDecay, c.Nesterov, maximize: false),
            "Adam" => optim.Adam(ps, c.Lr, c.Beta1, c.Beta2, c.Eps, c.WeightDecay, amsgrad: false, maximize: false),
            "AdamW" => optim.AdamW(ps, c.Lr, c.Beta1, c.Beta2, c.Eps, c.WeightDecay, amsgrad: false, maximize: false),
            _ => throw new InvalidOperationException(c.Optimizer),
        };
        for (int s = 1; s <= Steps; s++)
        {
            var g = randn(Size);
            p.grad = g.clone();
            opt.step();
            file.Put($"g.{s}", g).Put($"p.{s}", p);
        }
        return file;
    }
}

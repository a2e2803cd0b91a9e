using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>
/// Every public module, fed a wrong shape or built with a bad argument, says what it got and what it expected:
/// the input's shape beside the expected shape or size, a gradient's shape beside the output's, the bad value itself.
/// </summary>
public sealed class ShapeErrorTests
{
    /// <summary>A module, an input it accepts, an input it must reject, and what the rejection must mention besides the bad shape.</summary>
    private sealed record Case(Func<Module> Make, int[] Good, int[] Bad, params string[] Expected);

    private static readonly Dictionary<string, Case> Modules = new()
    {
        ["Linear features"] = new(() => new Linear(4, 3), [2, 4], [2, 5], "[N, 4]", "[3, 4]"),
        ["Linear rank"] = new(() => new Linear(4, 3), [2, 4], [2, 4, 1], "[N, 4]"),
        ["Conv2d channels"] = new(() => new Conv2d(3, 8, 3), [2, 3, 5, 5], [2, 4, 5, 5], "channels C = 3"),
        ["Conv2d rank"] = new(() => new Conv2d(3, 8, 3), [2, 3, 5, 5], [2, 3, 5], "[N, 3, H, W]"),
        ["Conv2d too small"] = new(() => new Conv2d(3, 8, 3), [2, 3, 5, 5], [2, 3, 2, 2], "3×3 kernel"),
        ["MaxPool2d rank"] = new(() => new MaxPool2d(2), [2, 3, 4, 4], [2, 3], "[N, C, H, W]"),
        ["MaxPool2d too small"] = new(() => new MaxPool2d(2), [2, 3, 4, 4], [2, 3, 1, 1], "2×2 window"),
        ["AvgPool2d too small"] = new(() => new AvgPool2d(3, padding: 1), [2, 3, 4, 4], [2, 3, 0, 4], "3×3 window"),
        ["GlobalAvgPool2d rank"] = new(() => new GlobalAvgPool2d(), [2, 3, 4, 4], [2, 3], "[N, C, H, W]"),
        ["GlobalAvgPool2d empty"] = new(() => new GlobalAvgPool2d(), [2, 3, 4, 4], [2, 3, 0, 4], "H, W ≥ 1"),
        ["BatchNorm1d channels"] = new(() => new BatchNorm1d(4), [2, 4], [2, 5], "4 channels"),
        ["BatchNorm1d rank"] = new(() => new BatchNorm1d(4), [2, 4, 3], [2, 4, 3, 3], "[N, 4] or [N, 4, L]"),
        ["BatchNorm1d one value"] = new(() => new BatchNorm1d(4), [2, 4], [1, 4], "more than 1 value per channel"),
        ["BatchNorm2d channels"] = new(() => new BatchNorm2d(3), [2, 3, 2, 2], [2, 4, 2, 2], "3 channels"),
        ["BatchNorm2d rank"] = new(() => new BatchNorm2d(3), [2, 3, 2, 2], [2, 3], "[N, 3, H, W]"),
        ["SyncBatchNorm channels"] = new(() => new SyncBatchNorm(4), [2, 4, 3], [2, 5, 3], "4 channels"),
        ["SyncBatchNorm rank"] = new(() => new SyncBatchNorm(4), [2, 4], [4], "[N, C, *]"),
        ["BatchRenorm"] = new(() => new BatchRenorm(4), [2, 4], [2, 5], "[N, 4]"),
        ["GhostBatchNorm"] = new(() => new GhostBatchNorm(4, 2), [4, 4], [4, 5], "[N, 4]"),
        ["NoisyBatchNorm"] = new(() => new NoisyBatchNorm(new BatchNorm1d(4), rng: new Rng(1)), [2, 4], [2, 5], "4 channels"),
        ["LpBatchNorm"] = new(() => new LpBatchNorm(4, 2), [2, 4], [2, 5], "[N, 4]"),
        ["DecorrelatedBatchNorm"] = new(() => new DecorrelatedBatchNorm(4), [8, 4], [8, 5], "[N, 4]"),
        ["GroupNorm"] = new(() => new GroupNorm(2, 4), [2, 4, 3], [2, 5, 3], "[N, 4, *]"),
        ["InstanceNorm2d"] = new(() => new InstanceNorm2d(3), [2, 3, 2, 2], [2, 4, 2, 2], "3 channels"),
        ["LayerNorm"] = new(() => new LayerNorm(5), [2, 5], [2, 4], "[*, 5]"),
        ["StepNoise"] = new(() => new StepNoise(rng: new Rng(1)), [2, 3], [6], "[N, C] or [N, C, H, W]"),
        ["Flatten"] = new(() => new Flatten(), [2, 3, 4], [], "at least 1 dimension"),
        ["Residual"] = new(() => new Residual(new Flatten()), [2, 4], [2, 2, 2], "[2, 4]"),
        ["Sequential"] = new(() => new Sequential(new Linear(4, 3), new ReLU(), new Linear(3, 2)), [2, 4], [2, 3], "[N, 4]", "layer 0"),
    };

    /// <summary>Modules that take any shape: only a gradient of the wrong shape is an error.</summary>
    private static readonly Dictionary<string, Func<Module>> AnyShape = new()
    {
        ["ReLU"] = () => new ReLU(),
        ["Sigmoid"] = () => new Sigmoid(),
        ["Tanh"] = () => new Tanh(),
        ["Dropout"] = () => new Dropout(0.5, new Rng(1)),
    };

    public static TheoryData<string> ModuleNames => [.. Modules.Keys];

    public static TheoryData<string> AllModules => [.. Modules.Keys, .. AnyShape.Keys];

    private static Tensor Input(int[] shape, int seed) => shape.Length == 0 ? new Tensor() : TensorAssert.Randn(seed, shape);

    [Theory]
    [MemberData(nameof(ModuleNames))]
    public void AWrongInputShapeIsNamedWithWhatWasExpected(string name)
    {
        var c = Modules[name];
        var module = c.Make();
        module.Forward(Input(c.Good, 1));
        var bad = Input(c.Bad, 2);
        var e = Assert.ThrowsAny<ArgumentException>(() => module.Forward(bad));
        Assert.Contains(bad.ShapeString, e.Message);
        foreach (var expected in c.Expected)
            Assert.Contains(expected, e.Message);
    }

    [Theory]
    [MemberData(nameof(AllModules))]
    public void AGradientOfTheWrongShapeNamesBothShapes(string name)
    {
        var module = Modules.TryGetValue(name, out var c) ? c.Make() : AnyShape[name]();
        var x = Input(c?.Good ?? [2, 3], 1);
        var y = module.Forward(x);
        int[] wrong = [.. y.Shape.ToArray()[..^1], y.Shape[^1] + 1];
        var e = Assert.ThrowsAny<ArgumentException>(() => module.Backward(Input(wrong, 3)));
        Assert.Contains(y.ShapeString, e.Message);
        Assert.Contains(Input(wrong, 3).ShapeString, e.Message);
    }

    [Fact]
    public void LossesNameTheShapesAndTargets()
    {
        var logits = TensorAssert.Randn(1, 2, 3);
        var ce = new SoftmaxCrossEntropy();
        Assert.Contains("3 targets for logits of shape [2, 3]", Assert.ThrowsAny<ArgumentException>(() => ce.Forward(logits, [0, 1, 2])).Message);
        Assert.Contains("target 5 at row 1 is outside [0, 3)", Assert.ThrowsAny<ArgumentException>(() => ce.Forward(logits, [0, 5])).Message);
        var rank = Assert.ThrowsAny<ArgumentException>(() => ce.Forward(TensorAssert.Randn(1, 2, 3, 4), [0, 1])).Message;
        Assert.Contains("[2, 3, 4]", rank);
        Assert.Contains("[N, K]", rank);
        var mse = Assert.ThrowsAny<ArgumentException>(() => new MeanSquaredError().Forward(logits, TensorAssert.Randn(2, 3, 2))).Message;
        Assert.Contains("[2, 3]", mse);
        Assert.Contains("[3, 2]", mse);
    }

    public static TheoryData<string, string> BadArguments => new()
    {
        { "Linear", "got in=0" },
        { "Conv2d kernel", "kernel_size=0" },
        { "Conv2d stride", "got -1" },
        { "MaxPool2d", "got 0" },
        { "AvgPool2d padding", "got padding=2" },
        { "BatchNorm2d features", "got 0" },
        { "BatchNorm2d eps", "got -1" },
        { "BatchNorm1d momentum", "got 2" },
        { "SyncBatchNorm", "got 0" },
        { "BatchRenorm", "got 0" },
        { "GhostBatchNorm", "got 4 and 0" },
        { "GhostBatchNorm eps", "got eps = -1" },
        { "NoisyBatchNorm", "b = 0.5" },
        { "LpBatchNorm", "got 3" },
        { "DecorrelatedBatchNorm", "(4) must divide the number of channels (6)" },
        { "GroupNorm", "num_channels (4) must be divisible by num_groups (3)" },
        { "InstanceNorm2d", "got -2" },
        { "LayerNorm", "got [0]" },
        { "StepNoise", "a = -1" },
        { "Dropout", "got 1.5" },
    };

    private static readonly Dictionary<string, Action> Constructors = new()
    {
        ["Linear"] = () => _ = new Linear(0, 3),
        ["Conv2d kernel"] = () => _ = new Conv2d(3, 8, 0),
        ["Conv2d stride"] = () => _ = new Conv2d(3, 8, 3, stride: -1),
        ["MaxPool2d"] = () => _ = new MaxPool2d(0),
        ["AvgPool2d padding"] = () => _ = new AvgPool2d(3, padding: 2),
        ["BatchNorm2d features"] = () => _ = new BatchNorm2d(0),
        ["BatchNorm2d eps"] = () => _ = new BatchNorm2d(3, eps: -1),
        ["BatchNorm1d momentum"] = () => _ = new BatchNorm1d(3, momentum: 2),
        ["SyncBatchNorm"] = () => _ = new SyncBatchNorm(0),
        ["BatchRenorm"] = () => _ = new BatchRenorm(0),
        ["GhostBatchNorm"] = () => _ = new GhostBatchNorm(4, 0),
        ["GhostBatchNorm eps"] = () => _ = new GhostBatchNorm(4, 2, eps: -1),
        ["NoisyBatchNorm"] = () => _ = new NoisyBatchNorm(new BatchNorm1d(4), b: 0.5),
        ["LpBatchNorm"] = () => _ = new LpBatchNorm(4, 3),
        ["DecorrelatedBatchNorm"] = () => _ = new DecorrelatedBatchNorm(6, 4),
        ["GroupNorm"] = () => _ = new GroupNorm(3, 4),
        ["InstanceNorm2d"] = () => _ = new InstanceNorm2d(-2),
        ["LayerNorm"] = () => _ = new LayerNorm(0),
        ["StepNoise"] = () => _ = new StepNoise(a: -1),
        ["Dropout"] = () => _ = new Dropout(1.5),
    };

    [Theory]
    [MemberData(nameof(BadArguments))]
    public void ABadConstructorArgumentIsNamedWithItsValue(string name, string expected) =>
        Assert.Contains(expected, Assert.ThrowsAny<ArgumentException>(Constructors[name]).Message);
}

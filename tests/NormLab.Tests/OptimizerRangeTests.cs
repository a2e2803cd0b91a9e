using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>
/// Large parameters are updated and cleared in ranges over the team: the bits must be those of the same values updated
/// as small parameters, one thread, whatever the number of threads.
/// </summary>
[Collection(TeamSize.Collection)]
public class OptimizerRangeTests
{
    private const int Length = 40_003; // above the parallel threshold, not a multiple of a vector

    public static TheoryData<string> Optimizers => ["sgd", "sgd-momentum", "sgd-nesterov", "adam", "adamw"];

    [Theory]
    [MemberData(nameof(Optimizers))]
    public void ALargeParameterGetsTheBitsOfTheSameValuesInSmallParameters(string kind)
    {
        var expected = Steps(kind, split: true, threads: 1);
        foreach (int threads in new[] { 1, 2, 3 })
        {
            var actual = Steps(kind, split: false, threads);
            for (int i = 0; i < Length; i++)
                if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                    Assert.Fail($"{kind}, {threads} thread(s): value {i} is {actual[i]:R}, split into small parameters {expected[i]:R}");
        }
    }

    // Three steps of the optimizer on one parameter of Length values, or on the same values cut into small parameters;
    // returns the values after them.
    private static float[] Steps(string kind, bool split, int threads)
    {
        using var _ = new TeamSize(threads);
        var start = TensorAssert.Randn(1, Length).Span.ToArray();
        int[] sizes = split ? [10_000, 20_000, Length - 30_000] : [Length];
        var parameters = new List<Parameter>();
        int at = 0;
        foreach (int size in sizes)
        {
            parameters.Add(new Parameter("w", Tensor.FromArray(start.AsSpan(at, size), size), ParameterRole.Weight));
            at += size;
        }
        Optimizer optimizer = kind switch
        {
            "sgd" => new Sgd(parameters, 0.1, weightDecay: 0.01),
            "sgd-momentum" => new Sgd(parameters, 0.1, momentum: 0.9, dampening: 0.1),
            "sgd-nesterov" => new Sgd(parameters, 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01),
            "adam" => new Adam(parameters, 0.01, weightDecay: 0.01),
            _ => new AdamW(parameters, 0.01),
        };
        for (int step = 0; step < 3; step++)
        {
            optimizer.ZeroGrad();
            at = 0;
            foreach (var p in parameters)
            {
                var grad = TensorAssert.Randn(10 + step, Length).Span.Slice(at, p.Grad.Length);
                var g = p.Grad.Span;
                for (int i = 0; i < g.Length; i++)
                    g[i] += grad[i] * (1 + step);
                at += g.Length;
            }
            optimizer.Step();
        }
        return parameters.SelectMany(p => p.Value.Span.ToArray()).ToArray();
    }
}

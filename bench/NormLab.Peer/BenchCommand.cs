using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace NormLab.Peer;

/// <summary>
/// The PyTorch side of NormLab's benchmark: the same workloads (names shared with bench/NormLab.Benchmarks/Workloads.cs),
/// timed as medians, one JSON object per line on standard output.
/// <code>bench --threads N [--group G] [--malloc reuse|default] [--seconds S]</code>
/// </summary>
/// <remarks>
/// PyTorch allocates every output; glibc serves blocks over 32 MiB with a fresh mmap whose page faults cost more than the
/// kernel. <c>--malloc reuse</c> (mallopt(M_MMAP_MAX, 0), and no trimming) makes freed blocks reusable so that kernel is compared with
/// kernel; <c>--malloc default</c> is what a TorchSharp user gets.
/// </remarks>
internal static class BenchCommand
{
    public static int Run(string[] args)
    {
        int threads = 1;
        string group = "all", malloc = "reuse";
        double seconds = 1.0;
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--threads": threads = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
                case "--group": group = args[i + 1]; break;
                case "--malloc": malloc = args[i + 1]; break;
                case "--seconds": seconds = double.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
                default: Console.Error.WriteLine($"unknown option {args[i]}"); return 2;
            }
        }
        if (malloc == "reuse")
            ReuseFreedBlocks();
        torch.set_num_threads(threads);
        torch.set_num_interop_threads(1);
        torch.manual_seed(1);
        foreach (var (name, make) in Workloads())
        {
            if (group != "all" && !name.StartsWith(group + "/", StringComparison.Ordinal))
                continue;
            WriteResult(name, threads, malloc, Median(make(), seconds));
        }
        return 0;
    }

    /// <summary>
    /// <c>serve [--malloc reuse|default]</c>: one request per line on standard input, <c>WORKLOAD THREADS SECONDS</c>, each
    /// answered with one JSON line as <c>bench</c> writes them, until the input ends. The comparison keeps one server per
    /// malloc setting running so that each row's PyTorch figure is taken seconds after NormLab's, under the same load.
    /// </summary>
    public static int Serve(string[] args)
    {
        string malloc = "reuse";
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--malloc": malloc = args[i + 1]; break;
                default: Console.Error.WriteLine($"unknown option {args[i]}"); return 2;
            }
        }
        if (malloc == "reuse")
            ReuseFreedBlocks();
        torch.set_num_interop_threads(1);
        var workloads = Workloads().ToDictionary(w => w.Name, w => w.Make);
        while (Console.ReadLine() is { } line)
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length != 3 || !workloads.TryGetValue(parts[0], out var make)
                || !int.TryParse(parts[1], CultureInfo.InvariantCulture, out int threads) || threads < 1
                || !double.TryParse(parts[2], CultureInfo.InvariantCulture, out double seconds) || seconds <= 0)
            {
                Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object> { ["error"] = $"bad request '{line}'" }));
                continue;
            }
            torch.set_num_threads(threads);
            torch.manual_seed(1);
            WriteResult(parts[0], threads, malloc, Median(make(), seconds));
            // The workload's tensors are garbage now; free their native memory before the next request measures anything.
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
        }
        return 0;
    }

    // One JSON line per timed workload, as the comparison reads them.
    private static void WriteResult(string workload, int threads, string malloc, double medianMs) =>
        Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["side"] = "pytorch", ["workload"] = workload, ["threads"] = threads, ["malloc"] = malloc, ["median_ms"] = medianMs,
            ["torch"] = PeerEnvironment.TorchVersion,
        }));

    private const int MmapMax = -4, TrimThreshold = -1;

    // Blocks from the heap rather than from mmap (M_MMAP_MAX = 0), and no trimming of the heap's top: with mmap off glibc
    // also stops raising its trim threshold (128 KiB) as it would by default, so a freed output of a few MiB at the top
    // went back to the kernel and faulted in again on the next call, slower than the default malloc it was to improve on.
    private static void ReuseFreedBlocks()
    {
        if (mallopt(MmapMax, 0) != 1)
            Console.Error.WriteLine("warning: mallopt(M_MMAP_MAX, 0) failed");
        if (mallopt(TrimThreshold, 1 << 30) != 1)
            Console.Error.WriteLine("warning: mallopt(M_TRIM_THRESHOLD, 1 GiB) failed");
    }

    [DllImport("libc")]
    private static extern int mallopt(int param, int value);

    /// <summary>Median time of one call, over samples of enough calls to last ≥ 20 ms each.</summary>
    private static double Median(Action body, double seconds)
    {
        var clock = Stopwatch.StartNew();
        int calls = 0;
        while (clock.Elapsed.TotalSeconds < Math.Min(0.3, seconds / 3) || calls < 3)
        {
            body();
            calls++;
        }
        int perSample = Math.Max(1, (int)(0.02 * calls / clock.Elapsed.TotalSeconds));
        var samples = new List<double>();
        clock.Restart();
        while (samples.Count < 7 || (clock.Elapsed.TotalSeconds < seconds && samples.Count < 200))
        {
            long t0 = Stopwatch.GetTimestamp();
            for (int i = 0; i < perSample; i++)
                body();
            samples.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds / perSample);
        }
        samples.Sort();
        return samples[samples.Count / 2];
    }

    private static IEnumerable<(string Name, Func<Action> Make)> Workloads()
    {
        foreach (var dims in new long[][] { [256, 64, 32, 32], [128, 256, 14, 14], [64, 16, 28, 28], [32, 128, 8, 8], [60, 100], [256, 1024], [4096, 512] })
        {
            string kind = dims.Length == 4 ? "bn2d" : "bn1d";
            string shape = string.Join("x", dims);
            yield return ($"{kind}/train/{shape}", () => BatchNorm(dims, training: true, backward: false));
            yield return ($"{kind}/eval/{shape}", () => BatchNorm(dims, training: false, backward: false));
            yield return ($"{kind}/train+backward/{shape}", () => BatchNorm(dims, training: true, backward: true));
        }
        foreach (var (form, m, k, n) in GemmShapes)
            yield return ($"gemm/{form}/{m}x{k}x{n}", () => Gemm(form, m, k, n));
        yield return ("step/mlp-bn", () => Step(Mlp(true), 60, [60, 784]));
        yield return ("step/mlp", () => Step(Mlp(false), 60, [60, 784]));
        yield return ("step/cnn-bn", () => Step(Cnn(true), 128, [128, 1, 28, 28]));
        yield return ("step/cnn", () => Step(Cnn(false), 128, [128, 1, 28, 28]));
    }

    /// <summary>The matrix products of the training steps: C[m,n] = A·B, A·Bᵀ or Aᵀ·B with the given m, k, n.</summary>
    public static readonly (string Form, int M, int K, int N)[] GemmShapes =
    [
        ("ABt", 60, 784, 100), ("AtB", 100, 60, 784), ("ABt", 60, 100, 100), ("AB", 60, 100, 100),
        ("AB", 32, 9, 784), ("AB", 64, 288, 196), ("AB", 64, 288, 3136), ("ABt", 64, 196, 288), ("AtB", 288, 64, 196),
        ("ABt", 128, 3136, 128), ("AtB", 128, 128, 3136), ("AB", 128, 128, 3136),
    ];

    private static Action BatchNorm(long[] dims, bool training, bool backward)
    {
        long c = dims[1];
        var x = randn(dims);
        var dy = randn(dims);
        var mean = zeros(c);
        var var_ = ones(c);
        var weight = (rand(c) + 0.5).requires_grad_(backward);
        var bias = randn(c).requires_grad_(backward);
        if (backward)
        {
            var xg = x.detach().requires_grad_(true);
            return () =>
            {
                using var scope = NewDisposeScope();
                var y = nn.functional.batch_norm(xg, mean, var_, weight, bias, training: true, momentum: 0.1, eps: 1e-5);
                torch.autograd.grad([y], [xg, weight, bias], [dy]);
            };
        }
        return () =>
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            nn.functional.batch_norm(x, mean, var_, weight, bias, training: training, momentum: 0.1, eps: 1e-5);
        };
    }

    private static Action Gemm(string form, int m, int k, int n)
    {
        var a = form == "AtB" ? randn(k, m) : randn(m, k);
        var b = form == "ABt" ? randn(n, k) : randn(k, n);
        return () =>
        {
            using var scope = NewDisposeScope();
            _ = form switch
            {
                "AB" => mm(a, b),
                "ABt" => mm(a, b.t()),
                _ => mm(a.t(), b),
            };
        };
    }

    private static nn.Module<Tensor, Tensor> Mlp(bool bn)
    {
        var layers = new List<nn.Module<Tensor, Tensor>>();
        int inputs = 784;
        for (int i = 0; i < 3; i++)
        {
            layers.Add(nn.Linear(inputs, 100, hasBias: !bn));
            if (bn)
                layers.Add(nn.BatchNorm1d(100));
            layers.Add(nn.Sigmoid());
            inputs = 100;
        }
        layers.Add(nn.Linear(100, 10));
        return nn.Sequential(layers);
    }

    private static nn.Module<Tensor, Tensor> Cnn(bool bn)
    {
        var layers = new List<nn.Module<Tensor, Tensor>> { nn.Conv2d(1, 32, 3, padding: 1, bias: !bn) };
        if (bn) layers.Add(nn.BatchNorm2d(32));
        layers.Add(nn.ReLU());
        layers.Add(nn.MaxPool2d(2));
        layers.Add(nn.Conv2d(32, 64, 3, padding: 1, bias: !bn));
        if (bn) layers.Add(nn.BatchNorm2d(64));
        layers.Add(nn.ReLU());
        layers.Add(nn.MaxPool2d(2));
        layers.Add(nn.Flatten());
        layers.Add(nn.Linear(3136, 128, hasBias: !bn));
        if (bn) layers.Add(nn.BatchNorm1d(128));
        layers.Add(nn.ReLU());
        layers.Add(nn.Linear(128, 10));
        return nn.Sequential(layers);
    }

    private static Action Step(nn.Module<Tensor, Tensor> net, int batch, long[] inputShape)
    {
        var x = randn(inputShape);
        var y = randint(10, [batch]);
        net.train();
        var opt = torch.optim.SGD(net.parameters(), 0.01);
        return () =>
        {
            using var scope = NewDisposeScope();
            opt.zero_grad();
            var loss = nn.functional.cross_entropy(net.call(x), y);
            loss.backward();
            opt.step();
        };
    }
}

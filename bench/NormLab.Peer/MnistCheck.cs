using System.IO.Compression;
using TorchSharp;
using static TorchSharp.torch;

namespace NormLab.Peer;

/// <summary>
/// Trains the same MLPs as NormLab's end-to-end test on MNIST-10k with PyTorch, to calibrate what accuracy the data allow.
/// </summary>
internal static class MnistCheck
{
    public static int Run(string[] args)
    {
        string dir = args.Length > 0 ? args[0] : "data/mnist-10k";
        string model = args.Length > 1 ? args[1] : "bn";
        int epochs = args.Length > 2 ? int.Parse(args[2]) : 10;
        torch.manual_seed(1);
        var (xtr, ytr) = Load(dir, "train");
        var (xte, yte) = Load(dir, "t10k");
        var net = model == "relu"
            ? nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
            : nn.Sequential(nn.Linear(784, 100, hasBias: false), nn.BatchNorm1d(100), nn.Sigmoid(),
                nn.Linear(100, 100, hasBias: false), nn.BatchNorm1d(100), nn.Sigmoid(),
                nn.Linear(100, 100, hasBias: false), nn.BatchNorm1d(100), nn.Sigmoid(), nn.Linear(100, 10));
        var opt = torch.optim.Adam(net.parameters(), lr: model == "relu" ? 1e-3 : 3e-3, beta1: 0.9, beta2: 0.999);
        long n = xtr.shape[0];
        for (int e = 0; e < epochs; e++)
        {
            net.train();
            var perm = torch.randperm(n);
            for (long s = 0; s + 60 <= n; s += 60)
            {
                using var scope = torch.NewDisposeScope();
                var idx = perm[TensorIndex.Slice(s, s + 60)];
                var loss = nn.functional.cross_entropy(net.call(xtr[idx]), ytr[idx]);
                opt.zero_grad();
                loss.backward();
                opt.step();
            }
            net.eval();
            using (torch.no_grad())
            {
                var acc = net.call(xte).argmax(1).eq(yte).to_type(ScalarType.Float32).mean().item<float>();
                var tracc = net.call(xtr).argmax(1).eq(ytr).to_type(ScalarType.Float32).mean().item<float>();
                Console.WriteLine($"epoch {e + 1}: train {tracc:P2} test {acc:P2}");
            }
        }
        return 0;
    }

    private static (Tensor X, Tensor Y) Load(string dir, string prefix)
    {
        byte[] images = Gunzip(Path.Combine(dir, $"{prefix}-images-idx3-ubyte.gz"));
        byte[] labels = Gunzip(Path.Combine(dir, $"{prefix}-labels-idx1-ubyte.gz"));
        int count = labels.Length - 8;
        var x = new float[count * 784];
        for (int i = 0; i < x.Length; i++)
            x[i] = images[16 + i] / 255f;
        var y = new long[count];
        for (int i = 0; i < count; i++)
            y[i] = labels[8 + i];
        return (torch.tensor(x, new long[] { count, 784 }), torch.tensor(y));
    }

    private static byte[] Gunzip(string path)
    {
        using var gz = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        using var ms = new MemoryStream();
        gz.CopyTo(ms);
        return ms.ToArray();
    }
}

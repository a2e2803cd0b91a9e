using NormLab.Cli;
using NormLab.Tests.Support;

namespace NormLab.Tests;

/// <summary>The normlab command, run in process.</summary>
public class CliTests
{
    internal static (int Code, string Out, string Err) Run(params string[] args)
    {
        var output = new StringWriter();
        var errors = new StringWriter();
        var parse = Commands.Build(output, errors).Parse(args);
        int code = parse.Invoke(new System.CommandLine.InvocationConfiguration { Output = output, Error = errors });
        return (code, output.ToString(), errors.ToString());
    }

    private static string TempDir() => TempDirs.Create("normlab-cli");

    [Fact]
    public void TrainThenEvalAndResumeEqualsAnUninterruptedRun()
    {
        string data = Paths.Dataset("mnist-10k");
        string whole = TempDir(), split = TempDir();
        string[] common = ["train", "--model", "ioffe-mlp", "--norm", "batch", "--data", data, "--lr", "0.5", "--eval-every", "100", "--seed", "3"];
        var a = Run([.. common, "--steps", "200", "--out", whole]);
        Assert.True(a.Code == 0, a.Err);
        Assert.Contains("step 200/200", a.Out);
        Assert.Equal(0, Run([.. common, "--steps", "100", "--out", split]).Code);
        var resumed = Run([.. common, "--steps", "200", "--out", split, "--resume"]);
        Assert.True(resumed.Code == 0, resumed.Err);
        Assert.Contains("resumed", resumed.Out);
        foreach (var file in new[] { TrainRun.ModelName, TrainRun.ResumeName })
        {
            var (x, _) = SafeTensors.Read(Path.Combine(whole, file));
            var (y, _) = SafeTensors.Read(Path.Combine(split, file));
            Assert.Equal(x.Keys.Order(), y.Keys.Order());
            foreach (var key in x.Keys)
                Assert.True(x[key].Data.AsSpan().SequenceEqual(y[key].Data), $"{file}: {key} differs between the whole and the resumed run");
        }
        Assert.Contains("0.weight", SafeTensors.Read(Path.Combine(whole, TrainRun.ModelName)).Tensors.Keys);
        Assert.Contains("1.num_batches_tracked", SafeTensors.Read(Path.Combine(whole, TrainRun.ModelName)).Tensors.Keys);
        // Metrics rows (step, losses, accuracy) agree to the last bit; only the seconds column may differ.
        static IEnumerable<string> Numbers(string dir) => File.ReadAllLines(Path.Combine(dir, "metrics.csv")).Select(l => l[..l.LastIndexOf(',')]);
        Assert.Equal(Numbers(whole), Numbers(split));

        var eval = Run("eval", "--checkpoint", Path.Combine(whole, TrainRun.ModelName), "--data", data);
        Assert.True(eval.Code == 0, eval.Err);
        Assert.Contains("accuracy", eval.Out);
    }

    [Fact]
    public void JsonResultsConfigAndModelList()
    {
        string dir = TempDir();
        var (code, output, err) = Run("train", "--model", "cnn", "--norm", "batch", "--data", Paths.Dataset("mnist-10k"), "--optimizer", "adam",
            "--lr", "0.001", "--batch", "32", "--steps", "30", "--eval-every", "15", "--out", dir, "--json");
        Assert.True(code == 0, err);
        using var result = System.Text.Json.JsonDocument.Parse(output.TrimEnd().Split('\n')[^1]);
        Assert.Equal(30, result.RootElement.GetProperty("steps").GetInt64());
        Assert.InRange(result.RootElement.GetProperty("test_accuracy").GetDouble(), 0.3, 1.0);   // 30 Adam steps of a BN CNN: well above chance
        var metrics = File.ReadAllLines(Path.Combine(dir, "metrics.csv"));
        Assert.Equal("step,epoch,train_loss,train_accuracy,test_loss,test_accuracy,lr,seconds", metrics[0]);
        Assert.Equal(3, metrics.Length);
        using var config = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "config.json")));
        Assert.Equal("cnn", config.RootElement.GetProperty("model").GetString());

        (code, output, _) = Run("models", "--json");
        Assert.Equal(0, code);
        using var models = System.Text.Json.JsonDocument.Parse(output.TrimEnd().Split('\n')[^1]);
        Assert.Equal(100_010, models.RootElement.GetProperty("ioffe-mlp").GetProperty("batch").GetInt64());
    }

    [Theory]
    [InlineData("train --steps 5 --batch 1", "--batch")]
    [InlineData("train --steps 5 --epochs 1", "exactly one")]
    [InlineData("train --steps 5 --model vgg", "unknown model 'vgg'")]
    [InlineData("train --steps 5 --norm batchy", "unknown --norm 'batchy'")]
    [InlineData("train --steps 5 --dataset cifar", "unknown dataset 'cifar'")]
    [InlineData("train --steps 5 --optimizer rmsprop", "unknown --optimizer")]
    [InlineData("eval --checkpoint /nonexistent.safetensors", "not found")]
    public void BadArgumentsGiveOneLineAndNoStackTrace(string args, string expected)
    {
        string[] argv = args.StartsWith("train", StringComparison.Ordinal) ? [.. args.Split(' '), "--out", TempDir()] : args.Split(' ');
        var (code, _, err) = Run(argv);
        Assert.NotEqual(0, code);
        Assert.Contains(expected, err);
        Assert.DoesNotContain("   at ", err);
    }

    [Fact]
    public void VariantSettingsTravelThroughTheCheckpoint()
    {
        string data = Paths.Dataset("mnist-10k"), dir = TempDir();
        var (code, _, err) = Run("train", "--model", "cnn", "--norm", "group", "--groups", "4", "--data", data, "--steps", "3", "--batch", "8",
            "--eval-every", "3", "--out", dir);
        Assert.True(code == 0, err);
        var (_, meta) = SafeTensors.Read(Path.Combine(dir, TrainRun.ModelName));
        Assert.Equal("group", meta["norm"]);
        Assert.Equal("4", meta["norm_groups"]);
        Assert.Contains("\"Groups\": 4", File.ReadAllText(Path.Combine(dir, "config.json")));
        var eval = Run("eval", "--checkpoint", Path.Combine(dir, TrainRun.ModelName), "--data", data);
        Assert.True(eval.Code == 0, eval.Err);
        (code, _, err) = Run("train", "--model", "cnn", "--norm", "group", "--groups", "5", "--data", data, "--steps", "3", "--out", TempDir());
        Assert.Equal(1, code);
        Assert.Contains("divisible", err);
        Assert.DoesNotContain("   at ", err);
    }

    [Fact]
    public void CorruptDataAndCheckpointFilesAreReportedByName()
    {
        string dir = TempDir();
        foreach (var f in Directory.GetFiles(Paths.Dataset("mnist-10k")))
            File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        string labels = Path.Combine(dir, "train-labels-idx1-ubyte.gz");
        File.WriteAllBytes(labels, File.ReadAllBytes(labels)[..100]);
        var (code, _, err) = Run("train", "--steps", "5", "--data", dir, "--out", TempDir());
        Assert.Equal(1, code);
        Assert.Contains("train-labels-idx1-ubyte.gz", err);
        Assert.DoesNotContain("   at ", err);

        string bad = Path.Combine(dir, "bad.safetensors");
        File.WriteAllBytes(bad, [1, 2, 3]);
        (code, _, err) = Run("eval", "--checkpoint", bad, "--data", Paths.Dataset("mnist-10k"));
        Assert.Equal(1, code);
        Assert.Contains("bad.safetensors", err);
    }
}

using NormLab.Lab;
using NormLab.Lab.Measures;
using NormLab.Lab.Reporting;

namespace NormLab.Tests.Lab;

[Collection("lab")]
public sealed class LabFrameworkTests
{
    [Fact]
    public void UnknownExperimentNamesTheKnownOnes()
    {
        var e = Assert.Throws<ArgumentException>(() => NormLab.Lab.Lab.Find("nope"));
        Assert.Contains("ioffe-mnist", e.Message);
    }

    [Fact]
    public void VerdictFollowsTheChecks()
    {
        Check Pass() => new("a", "b", true);
        Check Fail() => new("a", "b", false);
        Assert.Equal(Verdict.Reproduced, Verdicts.FromChecks([Pass(), Pass()]));
        Assert.Equal(Verdict.Partly, Verdicts.FromChecks([Pass(), Fail()]));
        Assert.Equal(Verdict.NotReproduced, Verdicts.FromChecks([Fail(), Fail()]));
    }

    [Fact]
    public void ASecondRunResumesFinishedArmsWithIdenticalNumbers()
    {
        using var dir = new LabFolder();
        var first = new List<string>();
        var a = LabHarness.RunTiny("ioffe-mnist", dir.Path, first);
        string metrics = File.ReadAllText(Path.Combine(dir.Path, "ioffe-mnist", "metrics.csv"));
        var second = new List<string>();
        var b = LabHarness.RunTiny("ioffe-mnist", dir.Path, second);
        Assert.DoesNotContain(first, l => l.Contains("done before"));
        Assert.Equal(4, second.Count(l => l.Contains("done before")));   // 2 arms × 2 seeds
        Assert.Equal(metrics, File.ReadAllText(Path.Combine(dir.Path, "ioffe-mnist", "metrics.csv")));
        Assert.Equal(a.Ours, b.Ours);
    }

    [Fact]
    public void TheSameSeedGivesTheSameNumbersWithoutTheCache()
    {
        using var one = new LabFolder();
        using var two = new LabFolder();
        LabHarness.RunTiny("ioffe-mnist", one.Path);
        LabHarness.RunTiny("ioffe-mnist", two.Path);
        Assert.Equal(File.ReadAllText(Path.Combine(one.Path, "ioffe-mnist", "metrics.csv")), File.ReadAllText(Path.Combine(two.Path, "ioffe-mnist", "metrics.csv")));
    }

    [Fact]
    public void LabBookGathersRunExperimentsIntoMarkdownAndSelfContainedHtml()
    {
        using var dir = new LabFolder();
        var s = LabHarness.RunTiny("ioffe-mnist", dir.Path);
        var (md, html) = LabBook.Write(dir.Path);
        string index = File.ReadAllText(md);
        Assert.Contains("| experiment | claim | published | ours | verdict |", index);
        Assert.Contains("[ioffe-mnist](ioffe-mnist/report.md)", index);
        Assert.Contains(s.Verdict.Text(), index);
        string page = File.ReadAllText(html);
        Assert.Contains("<table>", page);
        Assert.Contains("data:image/png;base64,", page);   // plots embedded, not linked
        Assert.DoesNotContain("missing plot", page);
        Assert.DoesNotContain("src=\"accuracy", page);
    }

    [Fact]
    public void LabBookWithNothingRunSaysWhatToDo()
    {
        using var dir = new LabFolder();
        var e = Assert.Throws<ArgumentException>(() => LabBook.Write(dir.Path));
        Assert.Contains("normlab lab", e.Message);
    }

    [Fact]
    public void ModelStateRestoresWeightsAndRunningStatistics()
    {
        var model = NormLab.Models.Zoo.Mlp(4, [3], 2, NormLab.Models.ActivationKind.ReLU, NormLab.Models.NormKind.Batch, rng: new Rng(1));
        var before = model.Parameters().Select(p => p.Value.ToArray()).Concat(model.NamedBuffers().Select(b => b.Value.ToArray())).ToArray();
        var state = new ModelState(model).Save();
        var x = new Tensor(5, 4);
        NormLab.Init.Normal(x, new Rng(2), 1.0);
        model.Forward(x);   // moves running statistics
        foreach (var p in model.Parameters())
            p.Value.Fill(7);
        state.Restore();
        var after = model.Parameters().Select(p => p.Value.ToArray()).Concat(model.NamedBuffers().Select(b => b.Value.ToArray())).ToArray();
        Assert.Equal(before.Length, after.Length);
        for (int i = 0; i < before.Length; i++)
            Assert.Equal(before[i], after[i]);
    }

    [Fact]
    public void GradientClippingScalesToTheMaximumNorm()
    {
        var p = new Parameter("w", new Tensor(2), ParameterRole.Weight);
        p.Grad[0] = 3;
        p.Grad[1] = 4;
        double norm = Training.ClipGradNorm([p], 1.0);
        Assert.Equal(5, norm, 6);
        Assert.Equal(0.6f, p.Grad[0], 4);
        Assert.Equal(0.8f, p.Grad[1], 4);
    }

    [Fact]
    public void MarkdownRendersToHtmlWithTablesAndEmphasis()
    {
        string html = LabBook.ToHtml("# T\n\n| a | b |\n|---|---|\n| 1 | **2** |\n\n- x `y`\n", ".");
        Assert.Contains("<h1>T</h1>", html);
        Assert.Contains("<th>a</th>", html);
        Assert.Contains("<td><strong>2</strong></td>", html);
        Assert.Contains("<li>x <code>y</code></li>", html);
    }
}

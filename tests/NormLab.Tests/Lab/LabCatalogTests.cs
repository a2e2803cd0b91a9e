namespace NormLab.Tests.Lab;

public sealed class LabCatalogTests
{
    [Fact]
    public void EveryExperimentOfTheIssueExistsWithAUniqueName()
    {
        string[] expected = ["ioffe-mnist", "learning-rate", "deep-sigmoid", "noisy-bn", "ics", "landscape", "small-batch", "precise-bn",
            "ghost-bn", "placement", "regularization", "init-scale", "remove-bn"];
        var names = NormLab.Lab.Lab.All.Select(e => e.Name).ToArray();
        Assert.Equal(names.Length, names.Distinct().Count());
        Assert.Superset(expected.ToHashSet(), names.ToHashSet());
        Assert.Equal(expected, names.Where(expected.Contains).ToArray());   // the issue's order
    }
}

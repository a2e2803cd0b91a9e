namespace NormLab.Lab;

/// <summary>How much compute an experiment spends.</summary>
public enum Budget
{
    /// <summary>A few seconds: the tests' end-to-end runs (checks files and verdict logic, not science).</summary>
    Tiny,
    /// <summary>A few minutes on two cores (the default): fewer steps, MNIST-10k or a part of Fashion-MNIST.</summary>
    Quick,
    /// <summary>The paper-scale budget (e.g. 50,000 steps for ioffe-mnist).</summary>
    Full,
}

/// <summary>What the lab concluded about a published claim, from the criterion fixed before the run.</summary>
public enum Verdict
{
    /// <summary>Every part of the criterion holds.</summary>
    Reproduced,
    /// <summary>Some parts hold.</summary>
    Partly,
    /// <summary>The criterion fails.</summary>
    NotReproduced,
    /// <summary>No criterion was fixed in advance: reported, not judged.</summary>
    Exploratory,
}

/// <summary>Verdict helpers.</summary>
public static class Verdicts
{
    /// <summary>The verdict's words in a report.</summary>
    public static string Text(this Verdict v) => v switch
    {
        Verdict.Reproduced => "reproduced",
        Verdict.Partly => "partly reproduced",
        Verdict.NotReproduced => "not reproduced",
        _ => "exploratory (no verdict)",
    };

    /// <summary>Reproduced when every check holds, not reproduced when none does, partly otherwise.</summary>
    public static Verdict FromChecks(IReadOnlyCollection<Check> checks)
    {
        int passed = checks.Count(c => c.Passed);
        return passed == checks.Count ? Verdict.Reproduced : passed == 0 ? Verdict.NotReproduced : Verdict.Partly;
    }
}

/// <summary>One part of a reproduction criterion: what was required, what we measured, whether it holds.</summary>
/// <param name="Requirement">The criterion's words (fixed in advance).</param>
/// <param name="Measured">Our figure(s).</param>
/// <param name="Passed">Whether the requirement holds.</param>
public sealed record Check(string Requirement, string Measured, bool Passed);

/// <summary>What an experiment found: the verdict, our headline figure for the lab book, and the checks behind the verdict.</summary>
/// <param name="Verdict">The verdict.</param>
/// <param name="Ours">Our result in one line (the lab book's "ours" column).</param>
/// <param name="Checks">The criterion's parts (empty for exploratory results).</param>
public sealed record Finding(Verdict Verdict, string Ours, IReadOnlyList<Check> Checks)
{
    /// <summary>A finding whose verdict follows from its checks.</summary>
    public static Finding FromChecks(string ours, params Check[] checks) => new(Verdicts.FromChecks(checks), ours, checks);
}

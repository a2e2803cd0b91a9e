namespace NormLab.Lab;

/// <summary>
/// One experiment of the lab: a published claim, a setup, arms run over several seeds, and a verdict from a criterion
/// fixed before the run (literature.md §6). Subclasses are found by reflection, so adding one is adding a file.
/// </summary>
public abstract class Experiment
{
    /// <summary>The name used by <c>normlab lab NAME</c> (e.g. "ioffe-mnist").</summary>
    public abstract string Name { get; }

    /// <summary>A title for the report.</summary>
    public abstract string Title { get; }

    /// <summary>The literature's claim, in one sentence.</summary>
    public abstract string Claim { get; }

    /// <summary>The published result (figures where the paper gives them), with its source.</summary>
    public abstract string Published { get; }

    /// <summary>What counts as reproduced, fixed before any run (or "exploratory").</summary>
    public abstract string Criterion { get; }

    /// <summary>Runs the arms (through <see cref="LabRun.Arm"/>, so finished arms are not redone), writes plots and report sections, and judges.</summary>
    public abstract Finding Run(LabRun run);

    /// <summary>The order in which <c>normlab lab all</c> runs experiments (the table order).</summary>
    public virtual int Order => 100;
}

namespace NormLab.Cli;

/// <summary>What <c>--on-nan</c> does with a step whose loss or gradients are not finite.</summary>
internal enum OnNan
{
    /// <summary>End the run with an error, without saving: the last checkpoint stays the last good one.</summary>
    Stop,

    /// <summary>Leave the batch out (no update, running statistics as before it) and go on; stop after too many in a row.</summary>
    Skip,
}

/// <summary>
/// The training loop's defence against NaN and ±∞. Every step checks its loss; skip mode also checks every gradient before
/// the update (one vector pass over the weights' gradients: a skipped batch must not have touched the weights). Before a
/// checkpoint is written, the weights and running statistics are checked, so a checkpoint is never a bad one. A failed step
/// is replayed with a check after every module to name the first whose output or gradient went non-finite.
/// </summary>
internal sealed class NanGuard
{
    /// <summary>Skipped batches in a row after which skipping stops: the model itself has gone bad, not a batch.</summary>
    public const int MaxSkipsInARow = 10;

    private readonly Module _model;
    private readonly IReadOnlyList<Parameter> _parameters;
    private readonly Tensor[] _state;
    private readonly OnNan _mode;
    // Skip mode's copy of what a forward changes (running statistics, batch counters), taken before every step.
    private readonly Tensor[] _buffers;
    private readonly float[][] _saved;
    private readonly IBatchCounter[] _counters;
    private readonly long[] _savedCounts;

    public NanGuard(Module model, Optimizer optimizer, OnNan mode)
    {
        _model = model;
        _parameters = optimizer.Parameters;
        _state = model.NamedParameters().Select(p => p.Parameter.Value).Concat(model.NamedBuffers().Select(b => b.Value)).ToArray();
        _mode = mode;
        _buffers = mode == OnNan.Skip ? model.NamedBuffers().Select(b => b.Value).ToArray() : [];
        _saved = _buffers.Select(b => new float[b.Length]).ToArray();
        _counters = mode == OnNan.Skip ? model.Modules().OfType<IBatchCounter>().ToArray() : [];
        _savedCounts = new long[_counters.Length];
    }

    public OnNan Mode => _mode;

    /// <summary>Batches skipped since the last good step.</summary>
    public int SkipsInARow { get; private set; }

    /// <summary>Before the forward pass: in skip mode, copies the state a forward changes.</summary>
    public void BeforeStep()
    {
        for (int i = 0; i < _buffers.Length; i++)
            _buffers[i].Span.CopyTo(_saved[i]);
        for (int i = 0; i < _counters.Length; i++)
            _savedCounts[i] = _counters[i].NumBatchesTracked;
    }

    /// <summary>Whether the step can be applied: a finite loss, and in skip mode finite gradients. (In stop mode a
    /// non-finite gradient makes non-finite weights, which the next loss or the next checkpoint's check reports.)</summary>
    public bool Passes(float loss) => float.IsFinite(loss) && (_mode == OnNan.Stop || NonFinite.GradientsFinite(_parameters));

    /// <summary>Whether the weights and running statistics are finite (checked before a checkpoint is written).</summary>
    public bool StateFinite()
    {
        foreach (var t in _state)
            if (!NonFinite.AllFinite(t.Span))
                return false;
        return true;
    }

    /// <summary>A good step: the count of skips in a row restarts.</summary>
    public void Passed() => SkipsInARow = 0;

    /// <summary>
    /// After a failed step: replays it to find where the first non-finite value appears, and in skip mode puts the
    /// running statistics back as they were before the batch and counts the skip.
    /// </summary>
    /// <returns>The place, e.g. "the output of 2 (Sigmoid)".</returns>
    /// <param name="input">The batch.</param>
    /// <param name="labels">Its labels.</param>
    /// <param name="loss">The loss to replay with.</param>
    /// <param name="locate">False under data-parallel training: the replay stops at the first non-finite value, which ranks
    /// reach at different layers, so their SyncBatchNorm collectives would no longer match.</param>
    public string Fail(Tensor input, int[] labels, SoftmaxCrossEntropy loss, bool locate = true)
    {
        // The replay starts from the state the failed forward started from (in stop mode nothing was saved: the run ends,
        // and only a layer that reads its running statistics in training, batch renormalization, could see them differ).
        Restore();
        string where = !locate
            ? "on some rank (not located under --distributed: rerun in one process with the same seed to locate it)"
            : NonFinite.Locate(_model, input, y => (loss.Forward(y, labels), loss.Backward())) ?? "not reproduced when the step was replayed";
        Restore();
        foreach (var p in _parameters)
            p.Grad.Zero();
        if (_mode == OnNan.Skip)
            SkipsInARow++;
        return where;
    }

    private void Restore()
    {
        for (int i = 0; i < _buffers.Length; i++)
            _saved[i].CopyTo(_buffers[i].Span);
        for (int i = 0; i < _counters.Length; i++)
            _counters[i].NumBatchesTracked = _savedCounts[i];
    }
}

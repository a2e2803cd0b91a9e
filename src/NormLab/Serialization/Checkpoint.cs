namespace NormLab;

/// <summary>
/// Checkpoints in safetensors.
/// <list type="bullet">
/// <item>The model file holds parameters and buffers under PyTorch's state-dict names (<c>0.weight</c>,
/// <c>1.running_mean</c>, <c>1.num_batches_tracked</c> as I64), so <c>safetensors.torch.load_file</c> reads it, and the
/// architecture in its metadata.</item>
/// <item>The resume file holds what training needs to continue: the optimizer's state (<c>optim.0.exp_avg</c>,
/// <c>optim.step</c>), caller-supplied I64 vectors (RNG and data-loader position) and, when given, the model itself under
/// <c>model.</c> names. With the model inside, one file is one consistent training state: there is no pair of files that a
/// crash between two writes could leave at different steps.</item>
/// </list>
/// Every file is written all at once (<see cref="AtomicFile"/>): an interrupted save leaves the previous file intact.
/// </summary>
public static class Checkpoint
{
    /// <summary>The prefix of the model's entries in a resume file.</summary>
    public const string ModelPrefix = "model.";

    /// <summary>Saves the model's parameters, buffers and batch counters with <paramref name="metadata"/>.</summary>
    public static void SaveModel(string path, Module model, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var (tensors, counters) = ModelEntries(model, "");
        SafeTensors.Write(path, tensors, metadata, counters);
    }

    /// <summary>
    /// Loads a model file: every parameter and buffer of the model must be present with its shape, and the file must hold
    /// nothing the model lacks. A missing <c>num_batches_tracked</c> reads as 0 (PyTorch's rule for old checkpoints).
    /// Everything is validated before anything is written, so a file that does not fit leaves the model as it was.
    /// </summary>
    /// <returns>The file's metadata.</returns>
    /// <exception cref="NormLabFormatException">The file is malformed or does not fit the model; the message names the file and the entry.</exception>
    public static Dictionary<string, string> LoadModel(string path, Module model)
    {
        var (tensors, metadata) = SafeTensors.Read(path);
        Fit(tensors, path, model, "")();
        return metadata;
    }

    /// <summary>
    /// Saves the optimizer's state and step count, <paramref name="extra"/> I64 vectors and, if given, the model under
    /// <see cref="ModelPrefix"/> names, in one file (the resume file).
    /// </summary>
    public static void SaveTrainingState(string path, Optimizer optimizer, IEnumerable<(string Name, long[] Values)>? extra = null,
        Module? model = null, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var tensors = optimizer.StateBuffers().Select(b => ("optim." + b.Name, Tensor.FromArray(b.Values, b.Values.Length))).ToList();
        var counters = new List<(string, long)> { ("optim.step", optimizer.StepCount) };
        if (model is not null)
        {
            var (modelTensors, modelCounters) = ModelEntries(model, ModelPrefix);
            tensors.AddRange(modelTensors);
            counters.AddRange(modelCounters);
        }
        SafeTensors.Write(path, tensors, metadata, counters, extra);
    }

    /// <summary>Restores the optimizer (and, if given, the model) from a resume file and returns its extra I64 vectors.
    /// Nothing is changed unless the whole file fits.</summary>
    /// <exception cref="NormLabFormatException">The file is malformed or does not fit the optimizer or the model.</exception>
    public static Dictionary<string, long[]> LoadTrainingState(string path, Optimizer optimizer, Module? model = null)
    {
        var (tensors, _) = SafeTensors.Read(path);
        if (!tensors.TryGetValue("optim.step", out var s) || s.DType != "I64" || s.Count != 1)
            throw new NormLabFormatException($"{path}: no optimizer step (optim.step) to resume from.");
        var buffers = tensors.Where(kv => kv.Key.StartsWith("optim.", StringComparison.Ordinal) && kv.Key != "optim.step")
            .ToDictionary(kv => kv.Key["optim.".Length..], kv => kv.Value.DType == "F32"
                ? kv.Value.ToFloats()
                : throw new NormLabFormatException($"{path}: '{kv.Key}' must be F32."));
        var loadModel = model is null ? null : Fit(tensors, path, model, ModelPrefix);
        try
        {
            optimizer.RestoreState(s.ToInt64s()[0], buffers);
        }
        catch (ArgumentException e)
        {
            throw new NormLabFormatException($"{path}: the optimizer state does not fit: {e.Message}", e);
        }
        loadModel?.Invoke();
        return tensors.Where(kv => !kv.Key.StartsWith("optim.", StringComparison.Ordinal) && !kv.Key.StartsWith(ModelPrefix, StringComparison.Ordinal)
                && kv.Value.DType == "I64")
            .ToDictionary(kv => kv.Key, kv => kv.Value.ToInt64s());
    }

    private static (List<(string, Tensor)> Tensors, List<(string, long)> Counters) ModelEntries(Module model, string prefix)
    {
        var tensors = model.NamedParameters().Select(p => (prefix + p.Name, p.Parameter.Value))
            .Concat(model.NamedBuffers().Select(b => (prefix + b.Name, b.Value)))
            .ToList();
        var counters = new List<(string, long)>();
        foreach (var (name, m) in model.NamedModules())
            if (m is IBatchCounter { TracksBatches: true } bn)
                counters.Add((prefix + Prefix(name) + "num_batches_tracked", bn.NumBatchesTracked));
        return (tensors, counters);
    }

    // Validates the entries under prefix against the model (all present with their shapes, none the model lacks) and
    // returns what writes them into it.
    private static Action Fit(Dictionary<string, SafeTensor> tensors, string path, Module model, string prefix)
    {
        var used = new HashSet<string>();
        Tensor Take(string key, Tensor like)
        {
            if (!tensors.TryGetValue(key, out var t))
                throw new NormLabFormatException($"{path}: missing '{key}' of shape {like.ShapeString}.");
            if (t.DType != "F32" || !t.Shape.SequenceEqual(like.Shape.ToArray().Select(d => (long)d)))
                throw new NormLabFormatException($"{path}: '{key}' is {t.DType} [{string.Join(", ", t.Shape)}], the model expects F32 {like.ShapeString}.");
            used.Add(key);
            return t.ToTensor();
        }

        var updates = new List<(Tensor Target, Tensor Value)>();
        foreach (var (name, p) in model.NamedParameters())
            updates.Add((p.Value, Take(prefix + name, p.Value)));
        foreach (var (name, b) in model.NamedBuffers())
            updates.Add((b, Take(prefix + name, b)));
        var counts = new List<(IBatchCounter, long)>();
        foreach (var (name, m) in model.NamedModules())
            if (m is IBatchCounter { TracksBatches: true } bn)
            {
                string key = prefix + Prefix(name) + "num_batches_tracked";
                long value = 0;
                if (tensors.TryGetValue(key, out var c))
                {
                    if (c.DType != "I64" || c.Count != 1)
                        throw new NormLabFormatException($"{path}: '{key}' must be an I64 scalar.");
                    value = c.ToInt64s()[0];
                    used.Add(key);
                }
                counts.Add((bn, value));
            }
        var unknown = tensors.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal) && !used.Contains(k)).Order(StringComparer.Ordinal).ToList();
        if (unknown.Count > 0)
            throw new NormLabFormatException($"{path}: entries the model does not have: {string.Join(", ", unknown.Take(5))}.");
        return () =>
        {
            foreach (var (target, value) in updates)
                target.CopyFrom(value);
            foreach (var (bn, value) in counts)
                bn.NumBatchesTracked = value;
        };
    }

    private static string Prefix(string moduleName) => moduleName.Length == 0 ? "" : moduleName + ".";
}

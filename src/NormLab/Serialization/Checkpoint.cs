namespace NormLab;

/// <summary>
/// Checkpoints in safetensors.
/// <list type="bullet">
/// <item>The model file holds parameters and buffers under PyTorch's state-dict names (<c>0.weight</c>,
/// <c>1.running_mean</c>, <c>1.num_batches_tracked</c> as I64), so <c>safetensors.torch.load_file</c> reads it, and the
/// architecture in its metadata.</item>
/// <item>The resume file beside it holds what only training needs: the optimizer's state (<c>optim.0.exp_avg</c>,
/// <c>optim.step</c>) and caller-supplied I64 vectors (RNG and data-loader position).</item>
/// </list>
/// Both are written to a temporary file that is renamed over the target: an interrupted save leaves the previous file intact.
/// </summary>
public static class Checkpoint
{
    /// <summary>Saves the model's parameters, buffers and batch counters with <paramref name="metadata"/>.</summary>
    public static void SaveModel(string path, Module model, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var tensors = model.NamedParameters().Select(p => (p.Name, p.Parameter.Value))
            .Concat(model.NamedBuffers())
            .ToList();
        var counters = new List<(string, long)>();
        foreach (var (name, m) in model.NamedModules())
            if (m is IBatchCounter { TracksBatches: true } bn)
                counters.Add((Prefix(name) + "num_batches_tracked", bn.NumBatchesTracked));
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
            updates.Add((p.Value, Take(name, p.Value)));
        foreach (var (name, b) in model.NamedBuffers())
            updates.Add((b, Take(name, b)));
        var counts = new List<(IBatchCounter, long)>();
        foreach (var (name, m) in model.NamedModules())
            if (m is IBatchCounter { TracksBatches: true } bn)
            {
                string key = Prefix(name) + "num_batches_tracked";
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
        var unknown = tensors.Keys.Where(k => !used.Contains(k)).Order(StringComparer.Ordinal).ToList();
        if (unknown.Count > 0)
            throw new NormLabFormatException($"{path}: entries the model does not have: {string.Join(", ", unknown.Take(5))}.");
        foreach (var (target, value) in updates)
            target.CopyFrom(value);
        foreach (var (bn, value) in counts)
            bn.NumBatchesTracked = value;
        return metadata;
    }

    /// <summary>Saves the optimizer's state and step count and <paramref name="extra"/> I64 vectors (the resume file).</summary>
    public static void SaveTrainingState(string path, Optimizer optimizer, IEnumerable<(string Name, long[] Values)>? extra = null)
    {
        var tensors = optimizer.StateBuffers().Select(b => ("optim." + b.Name, Tensor.FromArray(b.Values, b.Values.Length))).ToList();
        SafeTensors.Write(path, tensors, null, [("optim.step", optimizer.StepCount)], extra);
    }

    /// <summary>Restores the optimizer from a resume file and returns its extra I64 vectors.</summary>
    /// <exception cref="NormLabFormatException">The file is malformed or does not fit the optimizer.</exception>
    public static Dictionary<string, long[]> LoadTrainingState(string path, Optimizer optimizer)
    {
        var (tensors, _) = SafeTensors.Read(path);
        if (!tensors.TryGetValue("optim.step", out var s) || s.DType != "I64" || s.Count != 1)
            throw new NormLabFormatException($"{path}: no optimizer step (optim.step) to resume from.");
        var buffers = tensors.Where(kv => kv.Key.StartsWith("optim.", StringComparison.Ordinal) && kv.Key != "optim.step")
            .ToDictionary(kv => kv.Key["optim.".Length..], kv => kv.Value.DType == "F32"
                ? kv.Value.ToFloats()
                : throw new NormLabFormatException($"{path}: '{kv.Key}' must be F32."));
        try
        {
            optimizer.RestoreState(s.ToInt64s()[0], buffers);
        }
        catch (ArgumentException e)
        {
            throw new NormLabFormatException($"{path}: the optimizer state does not fit: {e.Message}", e);
        }
        return tensors.Where(kv => !kv.Key.StartsWith("optim.", StringComparison.Ordinal) && kv.Value.DType == "I64")
            .ToDictionary(kv => kv.Key, kv => kv.Value.ToInt64s());
    }

    private static string Prefix(string moduleName) => moduleName.Length == 0 ? "" : moduleName + ".";
}

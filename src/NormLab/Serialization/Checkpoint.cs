namespace NormLab;

/// <summary>
/// Model (and optionally optimizer) state in one safetensors file, under PyTorch's state-dict names:
/// <c>model.0.weight</c>, <c>model.1.running_mean</c>, <c>model.1.num_batches_tracked</c> (I64),
/// <c>optim.0.exp_avg</c>, <c>optim.step</c> (I64), plus caller-supplied I64 vectors (RNG and loader state) and
/// string metadata (the model's zoo name and arguments). Saving writes a temporary file and renames it, so an
/// interrupted save leaves the previous checkpoint intact.
/// </summary>
public static class Checkpoint
{
    /// <summary>Saves the state.</summary>
    public static void Save(string path, Module model, Optimizer? optimizer = null, IReadOnlyDictionary<string, string>? metadata = null,
        IEnumerable<(string Name, long[] Values)>? extra = null)
    {
        var tensors = model.NamedParameters().Select(p => ("model." + p.Name, p.Parameter.Value))
            .Concat(model.NamedBuffers().Select(b => ("model." + b.Name, b.Value)))
            .ToList();
        var counters = new List<(string, long)>();
        foreach (var (name, m) in model.NamedModules())
            if (m is BatchNorm { TrackRunningStats: true } bn)
                counters.Add(("model." + Prefix(name) + "num_batches_tracked", bn.NumBatchesTracked));
        if (optimizer is not null)
        {
            foreach (var (name, values) in optimizer.StateBuffers())
                tensors.Add(("optim." + name, Tensor.FromArray(values, values.Length)));
            counters.Add(("optim.step", optimizer.StepCount));
        }
        SafeTensors.Write(path, tensors, metadata, counters, extra);
    }

    /// <summary>
    /// Loads a checkpoint into <paramref name="model"/> (and <paramref name="optimizer"/>): every parameter and buffer of
    /// the model must be present with its shape, and the file must hold nothing for the model that the model lacks.
    /// A missing <c>num_batches_tracked</c> is read as 0 (PyTorch's rule for old checkpoints).
    /// </summary>
    /// <returns>The metadata and the extra I64 vectors.</returns>
    /// <exception cref="NormLabFormatException">The file is malformed or does not fit the model; the message names the file and the entry.</exception>
    public static (Dictionary<string, string> Metadata, Dictionary<string, long[]> Extra) Load(string path, Module model, Optimizer? optimizer = null)
    {
        var (tensors, metadata) = SafeTensors.Read(path);
        var used = new HashSet<string>();
        Tensor Take(string key, Tensor like)
        {
            if (!tensors.TryGetValue(key, out var t))
                throw new NormLabFormatException($"{path}: missing '{key}' of shape {like.ShapeString}.");
            if (t.DType != "F32" || !t.Shape.Select(d => (int)d).SequenceEqual(like.Shape.ToArray()))
                throw new NormLabFormatException($"{path}: '{key}' is {t.DType} [{string.Join(", ", t.Shape)}], the model expects F32 {like.ShapeString}.");
            used.Add(key);
            return t.ToTensor();
        }

        // Read everything before changing anything, so a bad file leaves the model as it was.
        var updates = new List<(Tensor Target, Tensor Value)>();
        foreach (var (name, p) in model.NamedParameters())
            updates.Add((p.Value, Take("model." + name, p.Value)));
        foreach (var (name, b) in model.NamedBuffers())
            updates.Add((b, Take("model." + name, b)));
        var counts = new List<(BatchNorm, long)>();
        foreach (var (name, m) in model.NamedModules())
            if (m is BatchNorm { TrackRunningStats: true } bn)
            {
                string key = "model." + Prefix(name) + "num_batches_tracked";
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
        var unknown = tensors.Keys.Where(k => k.StartsWith("model.", StringComparison.Ordinal) && !used.Contains(k)).Order().ToList();
        if (unknown.Count > 0)
            throw new NormLabFormatException($"{path}: entries the model does not have: {string.Join(", ", unknown.Take(5))}.");

        var optimizerBuffers = new Dictionary<string, float[]>();
        long step = 0;
        if (optimizer is not null)
        {
            if (!tensors.TryGetValue("optim.step", out var s) || s.DType != "I64")
                throw new NormLabFormatException($"{path}: no optimizer state (optim.step) to resume from.");
            step = s.ToInt64s()[0];
            foreach (var (key, t) in tensors)
                if (key.StartsWith("optim.", StringComparison.Ordinal) && key != "optim.step")
                    optimizerBuffers[key["optim.".Length..]] = t.ToFloats();
        }

        try
        {
            optimizer?.RestoreState(step, optimizerBuffers);
        }
        catch (ArgumentException e)
        {
            throw new NormLabFormatException($"{path}: the optimizer state does not fit: {e.Message}", e);
        }
        foreach (var (target, value) in updates)
            target.CopyFrom(value);
        foreach (var (bn, value) in counts)
            bn.NumBatchesTracked = value;
        var extra = tensors.Where(kv => !kv.Key.StartsWith("model.", StringComparison.Ordinal) && !kv.Key.StartsWith("optim.", StringComparison.Ordinal)
                && kv.Value.DType == "I64")
            .ToDictionary(kv => kv.Key, kv => kv.Value.ToInt64s());
        return (metadata, extra);
    }

    private static string Prefix(string moduleName) => moduleName.Length == 0 ? "" : moduleName + ".";
}

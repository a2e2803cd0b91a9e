using System.Globalization;
using NormLab.Models;

namespace NormLab.Cli;

/// <summary>A zoo model and its arguments; stored in checkpoint metadata so that eval and resume rebuild the same network.</summary>
internal sealed record ModelSpec(string Model, NormSpec Norm, NormPosition Position, double InitStd, bool Binarize)
{
    public static readonly string[] Models = ["ioffe-mlp", "mlp", "cnn", "resnet"];

    public static readonly string[] Norms = ["none", "batch", "group", "layer", "instance", "noisy", "renorm", "ghost", "frozen", "whiten", "lp1", "lp2", "lpinf", "sync"];

    /// <summary>Whether the model takes [N, 784] rather than [N, 1, 28, 28].</summary>
    public bool Flat => Model is "ioffe-mlp" or "mlp";

    public Sequential Build(Rng rng) => Model switch
    {
        "ioffe-mlp" => Zoo.IoffeMlp(Norm, Position, InitStd, rng),
        "mlp" => Zoo.Mlp(784, [256, 256], 10, ActivationKind.ReLU, Norm, Position, rng),
        "cnn" => Zoo.Cnn(Norm, Position, rng: rng),
        "resnet" => Zoo.ResNet(Norm, rng: rng),
        _ => throw new ArgumentException($"unknown model '{Model}' (known: {string.Join(", ", Models)})"),
    };

    public Dictionary<string, string> ToMetadata() => new()
    {
        ["model"] = Model,
        ["norm"] = Norm.Kind.ToString().ToLowerInvariant(),
        ["norm_groups"] = Norm.Groups?.ToString(CultureInfo.InvariantCulture) ?? "auto",
        ["norm_virtual_batch"] = Norm.VirtualBatch.ToString(CultureInfo.InvariantCulture),
        ["norm_whiten_group"] = Norm.WhitenGroup?.ToString(CultureInfo.InvariantCulture) ?? "auto",
        ["noise_a"] = Norm.NoiseA.ToString("R", CultureInfo.InvariantCulture),
        ["noise_b"] = Norm.NoiseB.ToString("R", CultureInfo.InvariantCulture),
        ["noise"] = Norm.Noise.ToString().ToLowerInvariant(),
        ["norm_position"] = Position.ToString().ToLowerInvariant(),
        ["init_std"] = InitStd.ToString("R", CultureInfo.InvariantCulture),
        ["binarize"] = Binarize ? "true" : "false",
    };

    /// <exception cref="NormLabFormatException">A setting is missing or malformed; the message names the file and the key.</exception>
    public static ModelSpec FromMetadata(IReadOnlyDictionary<string, string> meta, string path)
    {
        string Get(string key) => meta.TryGetValue(key, out var v) ? v : throw new NormLabFormatException($"{path}: metadata has no '{key}'; not a normlab training checkpoint.");
        // Settings of the variants: absent in checkpoints written before they existed, so defaults then.
        string Opt(string key, string fallback) => meta.TryGetValue(key, out var v) ? v : fallback;
        T Parse<T>(string key, string value, Func<string, T> parse)
        {
            try
            {
                return parse(value);
            }
            catch (Exception e) when (e is ArgumentException or FormatException or OverflowException)
            {
                throw new NormLabFormatException($"{path}: metadata '{key}' has the invalid value '{(value.Length > 40 ? value[..40] + "…" : value)}'.", e);
            }
        }
        int Int(string key, string value) => Parse(key, value, v => int.Parse(v, NumberStyles.Integer, CultureInfo.InvariantCulture));
        double Real(string key, string value) => Parse(key, value, v => double.Parse(v, NumberStyles.Float, CultureInfo.InvariantCulture));
        int? Auto(string key) => Opt(key, "auto") is var v && v == "auto" ? null : Int(key, v);
        var norm = new NormSpec(Parse("norm", Get("norm"), ParseNorm), Auto("norm_groups"), Int("norm_virtual_batch", Opt("norm_virtual_batch", "16")),
            Auto("norm_whiten_group"), Real("noise_a", Opt("noise_a", "1")), Real("noise_b", Opt("noise_b", "2")),
            Parse("noise", Opt("noise", "additive"), ParseNoise));
        return new ModelSpec(Get("model"), norm, Parse("norm_position", Get("norm_position"), ParsePosition),
            Real("init_std", Get("init_std")), Get("binarize") == "true");
    }

    public static NormKind ParseNorm(string s) => s switch
    {
        "none" => NormKind.None,
        "batch" => NormKind.Batch,
        "group" => NormKind.Group,
        "layer" => NormKind.Layer,
        "instance" => NormKind.Instance,
        "noisy" => NormKind.Noisy,
        "whiten" => NormKind.Whiten,
        "renorm" => NormKind.Renorm,
        "ghost" => NormKind.Ghost,
        "frozen" => NormKind.Frozen,
        "lp1" => NormKind.Lp1,
        "lp2" => NormKind.Lp2,
        "lpinf" => NormKind.LpInf,
        "sync" => NormKind.Sync,
        _ => throw new ArgumentException($"unknown --norm '{s}' (known: {string.Join(", ", Norms)})"),
    };

    public static NoiseKind ParseNoise(string s) => s switch
    {
        "additive" => NoiseKind.Additive,
        "multiplicative" => NoiseKind.Multiplicative,
        _ => throw new ArgumentException($"unknown --noise '{s}' (known: additive, multiplicative)"),
    };

    public static NormPosition ParsePosition(string s) => s switch
    {
        "before" => NormPosition.Before,
        "after" => NormPosition.After,
        _ => throw new ArgumentException($"unknown --norm-position '{s}' (known: before, after)"),
    };
}

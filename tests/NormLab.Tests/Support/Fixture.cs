using System.Globalization;

namespace NormLab.Tests.Support;

/// <summary>A committed PyTorch fixture (safetensors) read through NormLab's own reader.</summary>
public sealed class Fixture
{
    private readonly Dictionary<string, SafeTensor> _tensors;
    private readonly Dictionary<string, string> _metadata;

    private Fixture(string path)
    {
        Path = path;
        (_tensors, _metadata) = SafeTensors.Read(path);
    }

    /// <summary>The file.</summary>
    public string Path { get; }

    /// <summary>Loads <c>Fixtures/{group}/{name}.safetensors</c>.</summary>
    public static Fixture Load(string group, string name) =>
        new(System.IO.Path.Combine(Paths.Fixtures, group, name + ".safetensors"));

    /// <summary>The case names of a group, for theories.</summary>
    public static TheoryData<string> Cases(string group)
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.GetFiles(System.IO.Path.Combine(Paths.Fixtures, group), "*.safetensors").Order(StringComparer.Ordinal))
            data.Add(System.IO.Path.GetFileNameWithoutExtension(f));
        return data;
    }

    /// <summary>True if the file has the tensor.</summary>
    public bool Has(string name) => _tensors.ContainsKey(name);

    /// <summary>An F32 tensor.</summary>
    public Tensor T(string name) => _tensors.TryGetValue(name, out var t) ? t.ToTensor() : throw new KeyNotFoundException($"{Path}: no tensor '{name}'");

    /// <summary>An I64 tensor's values.</summary>
    public long[] Longs(string name) => _tensors[name].ToInt64s();

    /// <summary>A metadata string.</summary>
    public string Meta(string key) => _metadata.TryGetValue(key, out var v) ? v : throw new KeyNotFoundException($"{Path}: no metadata '{key}'");

    /// <summary>A metadata number.</summary>
    public double Number(string key) => double.Parse(Meta(key), CultureInfo.InvariantCulture);

    /// <summary>A metadata integer.</summary>
    public int Int(string key) => int.Parse(Meta(key), CultureInfo.InvariantCulture);

    /// <summary>A metadata flag.</summary>
    public bool Flag(string key) => Meta(key) == "true";
}

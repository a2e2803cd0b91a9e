using NormLab.Kernels;

namespace NormLab;

/// <summary>
/// Group normalization (Wu &amp; He 2018), PyTorch's <c>nn.GroupNorm(num_groups, num_channels, eps=1e-5, affine=True)</c>:
/// the C channels of each sample split into G groups of C/G channels; each group is normalized over its channels and
/// spatial positions by its own mean and biased variance, in training and eval alike; then per-channel γ, β.
/// G = 1 normalizes each sample over all its values (a layer norm with per-channel affine); G = C is instance norm.
/// Input [N, C, *].
/// </summary>
public sealed class GroupNorm : RowNorm
{
    /// <summary>Creates the layer.</summary>
    public GroupNorm(int numGroups, int numChannels, double eps = 1e-5, bool affine = true)
        : base(eps, affine ? [numChannels] : null)
    {
        if (numGroups <= 0 || numChannels <= 0)
            throw new ArgumentOutOfRangeException(nameof(numGroups), $"GroupNorm: num_groups and num_channels must be positive, got {numGroups} and {numChannels}.");
        if (numChannels % numGroups != 0)
            throw new ArgumentException($"GroupNorm: num_channels ({numChannels}) must be divisible by num_groups ({numGroups}).");
        NumGroups = numGroups;
        NumChannels = numChannels;
    }

    /// <summary>G.</summary>
    public int NumGroups { get; }

    /// <summary>C.</summary>
    public int NumChannels { get; }

    /// <summary>The largest group count up to <paramref name="preferred"/> that divides <paramref name="channels"/> (32 is the paper's default).</summary>
    public static int DivisorGroups(int channels, int preferred = 32)
    {
        for (int g = Math.Min(preferred, channels); g > 1; g--)
            if (channels % g == 0)
                return g;
        return 1;
    }

    /// <inheritdoc/>
    protected override RowLayout Layout(Tensor x)
    {
        if (x.Rank < 2 || x.Dim(1) != NumChannels)
            throw new ArgumentException($"{this}: expected input [N, {NumChannels}, *], got shape {x.ShapeString}.");
        int n = x.Dim(0), perGroup = NumChannels / NumGroups;
        int spatial = n == 0 ? 1 : x.Length / (n * NumChannels);
        return new RowLayout(n * NumGroups, perGroup, spatial, NumGroups);
    }

    /// <inheritdoc/>
    public override string ToString() => $"GroupNorm({NumGroups}, {NumChannels}, eps={Eps}, affine={Weight is not null})";
}

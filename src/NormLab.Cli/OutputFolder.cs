namespace NormLab.Cli;

/// <summary>Checks that training can write its output folder, before any training time is spent.</summary>
internal static class OutputFolder
{
    /// <summary>Creates the folder and writes and deletes a probe file in it.</summary>
    /// <exception cref="IOException">The folder cannot be created or written (read-only, no permission, not a folder).</exception>
    public static void EnsureWritable(string folder)
    {
        string probe = Path.Combine(folder, $".normlab-probe-{Environment.ProcessId}");
        try
        {
            Directory.CreateDirectory(folder);
            File.WriteAllBytes(probe, [0]);
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"--out {folder}: cannot write there ({e.Message}); choose a writable folder", e);
        }
    }

    /// <summary>Checks that the folder's disk has <paramref name="bytes"/> free (where the platform tells).</summary>
    /// <exception cref="IOException">Less is free.</exception>
    public static void EnsureSpace(string folder, long bytes)
    {
        long free;
        try
        {
            free = new DriveInfo(Path.GetFullPath(folder)).AvailableFreeSpace;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return;   // no figure to check against; a full disk is still caught when a save fails
        }
        if (free < bytes)
            throw new IOException($"--out {folder}: {Megabytes(free)} free on its disk, a checkpoint needs about {Megabytes(bytes)}; free some space or choose another folder");
    }

    private static string Megabytes(long bytes) => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{bytes / 1048576.0:F1} MB");
}

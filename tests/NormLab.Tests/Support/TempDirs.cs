namespace NormLab.Tests.Support;

/// <summary>
/// Scratch folders for tests, all under one folder per test run that is removed when the run ends,
/// so that repeated runs do not leave hundreds of folders in the system's temp directory.
/// </summary>
public static class TempDirs
{
    private static readonly Lazy<string> Root = new(() =>
    {
        string root = Directory.CreateTempSubdirectory("normlab-tests-").FullName;
        AppDomain.CurrentDomain.ProcessExit += (_, _) => Remove(root);
        return root;
    });

    private static int _count;

    /// <summary>A new, empty folder whose name starts with <paramref name="prefix"/>.</summary>
    public static string Create(string prefix)
    {
        string dir = Path.Combine(Root.Value, $"{prefix}{Interlocked.Increment(ref _count)}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    private static void Remove(string root)
    {
        // A file still held open (a crashed child process's) must not turn a passing run into a failing exit.
        try { Directory.Delete(root, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}

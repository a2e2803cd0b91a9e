using System.Runtime.InteropServices;

namespace NormLab;

/// <summary>
/// Replaces a file all at once: the new content goes to a temporary file in the same folder, is flushed to the disk, and
/// is renamed over the target, and then the folder itself is flushed so that the rename survives a power cut. A crash or a
/// full disk at any moment leaves either the old file or the new one, never a mixture.
/// </summary>
public static partial class AtomicFile
{
    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/>, which receives the temporary file's stream.</summary>
    /// <exception cref="IOException">The folder cannot be written (full, read-only, missing); the message names the file, and
    /// the previous file is left as it was and no temporary file is left behind.</exception>
    public static void Write(string path, Action<Stream> write)
    {
        string temp = TempName(path);
        try
        {
            using (var fs = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
        catch (Exception e)
        {
            TryDelete(temp);
            if (e is IOException or UnauthorizedAccessException)
                throw new IOException($"cannot write {path}: {e.Message.Replace(temp, path).TrimEnd('.')}; the previous file, if any, is unchanged", e);
            throw;
        }
        SyncFolder(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    /// <summary>Writes a text file (UTF-8) all at once.</summary>
    public static void WriteAllText(string path, string text) =>
        Write(path, s => s.Write(System.Text.Encoding.UTF8.GetBytes(text)));

    /// <summary>The temporary name of <paramref name="path"/> while this process writes it (one per process, so two
    /// processes writing the same file do not share one).</summary>
    internal static string TempName(string path) => path + ".tmp-" + Environment.ProcessId;

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Nothing more to do: the failure being reported is the one that matters.
        }
    }

    // A rename is an entry in the folder: until the folder is flushed, a power cut may forget it. .NET cannot open a
    // folder as a file on Unix, hence open(2)/fsync(2). On Windows the rename is journaled by NTFS.
    private static void SyncFolder(string folder)
    {
        if (OperatingSystem.IsWindows())
            return;
        int fd = Open(folder, 0 /* O_RDONLY */);
        if (fd < 0)
            return;
        _ = Fsync(fd);
        _ = Close(fd);
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync")]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}

using System.Diagnostics;
using System.Text;

namespace NormLab.Tests.Support;

/// <summary>The built <c>normlab</c> command as a child process, for what only another process can show (kills, signals).</summary>
public sealed class CliProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _out = new(), _err = new();

    private CliProcess(Process process) => _process = process;

    /// <summary>Starts <c>dotnet NormLab.Cli.dll ARGS</c> from the test's output folder with the dotnet host that runs the
    /// tests, standard output and error captured.</summary>
    public static CliProcess Start(params string[] args)
    {
        string host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { } fromEnv && File.Exists(fromEnv)
            ? fromEnv
            : System.IO.Path.GetFullPath(System.IO.Path.Combine(System.Runtime.InteropServices.RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", "..",
                OperatingSystem.IsWindows() ? "dotnet.exe" : "dotnet"));
        var info = new ProcessStartInfo(host)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        info.ArgumentList.Add(System.IO.Path.Combine(AppContext.BaseDirectory, "NormLab.Cli.dll"));
        foreach (var a in args)
            info.ArgumentList.Add(a);
        var cli = new CliProcess(new Process { StartInfo = info });
        cli._process.OutputDataReceived += (_, e) =>
        {
            lock (cli._out)
            {
                cli._out.AppendLine(e.Data);
                cli.LastLine = e.Data ?? cli.LastLine;
            }
        };
        cli._process.ErrorDataReceived += (_, e) => { lock (cli._err) cli._err.AppendLine(e.Data); };
        cli._process.Start();
        cli._process.BeginOutputReadLine();
        cli._process.BeginErrorReadLine();
        return cli;
    }

    public int Id => _process.Id;

    /// <summary>The last line of standard output so far.</summary>
    public string LastLine { get; private set; } = "";

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    /// <summary>Standard output so far.</summary>
    public string Out
    {
        get
        {
            lock (_out)
                return _out.ToString();
        }
    }

    /// <summary>Standard error so far.</summary>
    public string Err
    {
        get
        {
            lock (_err)
                return _err.ToString();
        }
    }

    /// <summary>Polls until <paramref name="condition"/> holds or the process exits; false after <paramref name="seconds"/>.</summary>
    public bool WaitUntil(Func<bool> condition, double seconds = 60)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (_process.HasExited || clock.Elapsed.TotalSeconds > seconds)
                return false;
            Thread.Sleep(1);
        }
        return true;
    }

    /// <summary>SIGKILL (if still running): no handler runs, no file is closed; what is on disk is what a crash leaves.
    /// Returns once the process and its output have ended.</summary>
    public void Kill()
    {
        if (!_process.HasExited)
            _process.Kill();
        _process.WaitForExit();
    }

    /// <summary>Sends SIGINT, as Ctrl+C in a terminal does.</summary>
    public void Interrupt()
    {
        using var kill = Process.Start("/bin/kill", ["-INT", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        kill.WaitForExit();
    }

    /// <summary>Waits for the exit and for the last output lines.</summary>
    public bool WaitForExit(int milliseconds)
    {
        if (!_process.WaitForExit(milliseconds))
            return false;
        _process.WaitForExit();
        return true;
    }

    public void Dispose()
    {
        if (!_process.HasExited)
            _process.Kill();
        _process.Dispose();
    }
}

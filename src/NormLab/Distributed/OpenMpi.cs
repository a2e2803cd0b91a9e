using System.Runtime.InteropServices;

namespace NormLab.Distributed;

/// <summary>
/// The few functions of Open MPI's C API (libmpi.so.40: Open MPI 3 to 5; checked with 4.1.4) that
/// <see cref="MpiCommunicator"/> calls. Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, …) are the addresses of
/// exported globals, so they are looked up in the library rather than written down as constants (which is what MPICH's
/// integer handles would be).
/// </summary>
/// <remarks>
/// libmpi is opened with libc's <c>dlopen(RTLD_NOW | RTLD_GLOBAL)</c> before the first call: Open MPI's plugins, which it
/// opens itself, resolve symbols of libmpi through the global scope, and .NET opens libraries RTLD_LOCAL. The imports
/// below name <see cref="Library"/>, which this assembly's DllImport resolver maps to that handle (an assembly can have
/// one resolver; this is it).
/// </remarks>
internal static unsafe partial class OpenMpi
{
    private const string Library = "libmpi";
    private const int RtldNow = 0x2, RtldGlobal = 0x100;

    /// <summary>MPI_THREAD_SERIALIZED: any thread may call MPI, one at a time (the training loop's thread, whichever it is).</summary>
    public const int ThreadSerialized = 2;

    /// <summary>MPI_IN_PLACE.</summary>
    public static readonly void* InPlace = (void*)1;

    private static readonly Lock Gate = new();
    private static nint _library;

    public static nint CommWorld { get; private set; }
    public static nint Float { get; private set; }
    public static nint Double { get; private set; }
    public static nint Long { get; private set; }
    public static nint Sum { get; private set; }
    public static nint ErrorsReturn { get; private set; }

    /// <summary>Opens libmpi once per process and finds the handles.</summary>
    /// <exception cref="MpiException">No Open MPI library here.</exception>
    public static void Load()
    {
        lock (Gate)
        {
            if (_library != 0)
                return;
            var library = Open(out string why);
            if (library == 0)
                throw new MpiException(
                    $"MPI: cannot load Open MPI's libmpi.so.40 ({why}); install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin) and start the ranks with mpirun.");
            _library = library;
            NativeLibrary.SetDllImportResolver(typeof(OpenMpi).Assembly, (name, _, _) => name == Library ? _library : 0);
            CommWorld = Export("ompi_mpi_comm_world");
            Float = Export("ompi_mpi_float");
            Double = Export("ompi_mpi_double");
            Long = Export("ompi_mpi_long");
            Sum = Export("ompi_mpi_op_sum");
            ErrorsReturn = Export("ompi_mpi_errors_return");
        }
    }

    /// <summary>Throws an <see cref="MpiException"/> naming the call and Open MPI's message unless <paramref name="code"/> is MPI_SUCCESS.</summary>
    public static void Check(int code, string call)
    {
        if (code == 0)
            return;
        const int capacity = 512; // MPI_MAX_ERROR_STRING is 256
        byte* text = stackalloc byte[capacity];
        int length = 0;
        string message = ErrorString(code, text, &length) == 0 ? System.Text.Encoding.UTF8.GetString(text, Math.Clamp(length, 0, capacity)) : "unknown error";
        throw new MpiException($"MPI: {call} failed: {message} (error {code}).");
    }

    private static nint Open(out string why)
    {
        why = "";
        foreach (var name in (ReadOnlySpan<string>)["libmpi.so.40", "libmpi.so"])
        {
            try
            {
                nint handle = DlOpen(name);
                if (handle != 0)
                    return handle;
                why = DlError();
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                return 0; // no libc dlopen: not Linux
            }
        }
        return 0;
    }

    private static nint Export(string symbol) =>
        NativeLibrary.TryGetExport(_library, symbol, out var address) ? address
            : throw new MpiException($"MPI: the loaded libmpi has no '{symbol}'; it is not Open MPI (MPICH and others are not supported).");

    // glibc 2.34 and later have dlopen in libc; older ones in libdl.
    private static nint DlOpen(string name)
    {
        try
        {
            return DlOpenLibc(name, RtldNow | RtldGlobal);
        }
        catch (EntryPointNotFoundException)
        {
            return DlOpenLibdl(name, RtldNow | RtldGlobal);
        }
    }

    private static string DlError()
    {
        nint text;
        try
        {
            text = DlErrorLibc();
        }
        catch (EntryPointNotFoundException)
        {
            text = DlErrorLibdl();
        }
        return Marshal.PtrToStringUTF8(text) ?? "not found";
    }

    [LibraryImport("libc.so.6", EntryPoint = "dlopen", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint DlOpenLibc(string file, int mode);

    [LibraryImport("libc.so.6", EntryPoint = "dlerror")]
    private static partial nint DlErrorLibc();

    [LibraryImport("libdl.so.2", EntryPoint = "dlopen", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint DlOpenLibdl(string file, int mode);

    [LibraryImport("libdl.so.2", EntryPoint = "dlerror")]
    private static partial nint DlErrorLibdl();

    [LibraryImport(Library, EntryPoint = "MPI_Initialized")]
    public static partial int Initialized(int* flag);

    [LibraryImport(Library, EntryPoint = "MPI_Finalized")]
    public static partial int Finalized(int* flag);

    [LibraryImport(Library, EntryPoint = "MPI_Init_thread")]
    public static partial int InitThread(int* argc, byte*** argv, int required, int* provided);

    [LibraryImport(Library, EntryPoint = "MPI_Finalize")]
    public static partial int Finalize();

    [LibraryImport(Library, EntryPoint = "MPI_Comm_rank")]
    public static partial int CommRank(nint comm, int* rank);

    [LibraryImport(Library, EntryPoint = "MPI_Comm_size")]
    public static partial int CommSize(nint comm, int* size);

    [LibraryImport(Library, EntryPoint = "MPI_Comm_set_errhandler")]
    public static partial int CommSetErrhandler(nint comm, nint errhandler);

    [LibraryImport(Library, EntryPoint = "MPI_Type_size")]
    public static partial int TypeSize(nint datatype, int* size);

    [LibraryImport(Library, EntryPoint = "MPI_Allreduce")]
    public static partial int Allreduce(void* send, void* receive, int count, nint datatype, nint op, nint comm);

    [LibraryImport(Library, EntryPoint = "MPI_Allgather")]
    public static partial int Allgather(void* send, int sendCount, nint sendType, void* receive, int receiveCount, nint receiveType, nint comm);

    [LibraryImport(Library, EntryPoint = "MPI_Bcast")]
    public static partial int Bcast(void* buffer, int count, nint datatype, int root, nint comm);

    [LibraryImport(Library, EntryPoint = "MPI_Barrier")]
    public static partial int Barrier(nint comm);

    [LibraryImport(Library, EntryPoint = "MPI_Error_string")]
    private static partial int ErrorString(int code, byte* text, int* length);
}

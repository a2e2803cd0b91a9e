namespace NormLab.Tests.Support;

/// <summary>Runs readers on hostile inputs and checks how they fail: the library's exception, naming the file, on one line, within a memory budget.</summary>
internal static class Hostile
{
    /// <summary>What a read may allocate beyond the file's size: streams, handles, the exception and its stack trace, small arrays.</summary>
    public const long Slack = 16 * 1024;

    /// <summary>
    /// Runs <paramref name="read"/> once. A rejection must be a <see cref="NormLabFormatException"/> whose one-line message
    /// names <paramref name="source"/>; either way the read may allocate at most <paramref name="budget"/> bytes.
    /// </summary>
    /// <returns>The rejection's message, or null when the input was accepted.</returns>
    public static string? Check(Action read, string source, long budget, string what)
    {
        Exception? error = null;
        long before = GC.GetAllocatedBytesForCurrentThread();
        try
        {
            read();
        }
        catch (Exception e)
        {
            error = e;
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated <= budget, $"{what}: allocated {allocated} bytes, more than the budget of {budget}");
        if (error is null)
            return null;
        Assert.True(error is NormLabFormatException, $"{what}: {error.GetType().Name} escaped: {error}");
        Assert.True(error.Message.Contains(source, StringComparison.Ordinal), $"{what}: the message does not name {source}: {error.Message}");
        Assert.False(error.Message.Contains('\n') || error.Message.Contains('\r'), $"{what}: the message spans lines: {error.Message}");
        return error.Message;
    }

    /// <summary>Like <see cref="Check"/>, but the input must be rejected with a message containing <paramref name="expected"/>.</summary>
    public static void Rejects(Action read, string source, long budget, string what, string expected)
    {
        var message = Check(read, source, budget, what);
        Assert.True(message is not null, $"{what}: accepted, expected a rejection mentioning \"{expected}\"");
        Assert.True(message.Contains(expected, StringComparison.Ordinal), $"{what}: expected \"{expected}\" in: {message}");
    }

    /// <summary>Runs a fuzzing loop on a worker thread and fails if it does not finish in <paramref name="seconds"/>: a hang is a defect too.</summary>
    public static void Within(double seconds, Action fuzz)
    {
        var task = Task.Run(fuzz);
        bool finished;
        try
        {
            finished = task.Wait(TimeSpan.FromSeconds(seconds));
        }
        catch (AggregateException e) when (e.InnerException is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerException).Throw();
            throw;
        }
        Assert.True(finished, $"the fuzzing did not finish within {seconds} s: a reader hangs");
    }

    /// <summary>A copy of <paramref name="bytes"/> with 1 to <paramref name="maxFlips"/> random bits flipped, and where.</summary>
    public static (byte[] Bytes, string Where) FlipBits(byte[] bytes, Random random, int maxFlips = 3)
    {
        var copy = (byte[])bytes.Clone();
        int flips = random.Next(1, maxFlips + 1);
        var where = new List<string>();
        for (int i = 0; i < flips; i++)
        {
            int at = random.Next(copy.Length), bit = random.Next(8);
            copy[at] ^= (byte)(1 << bit);
            where.Add($"{at}.{bit}");
        }
        return (copy, "bits " + string.Join(",", where));
    }
}

namespace NormLab.Lab.Measures;

/// <summary>
/// A loss as a function of a flat parameter vector: returns L(w) and writes ∇L(w) into <paramref name="grad"/>. The
/// landscape and ICS measures are written against this, so they can be checked on closed-form losses without a network.
/// </summary>
/// <param name="w">The parameters.</param>
/// <param name="grad">Receives the gradient (same length as <paramref name="w"/>).</param>
/// <returns>The loss at <paramref name="w"/>.</returns>
public delegate double LossGradient(ReadOnlySpan<float> w, Span<float> grad);

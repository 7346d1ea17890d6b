"""The running-statistics rule, written once for every layer and backend (PyTorch's).

After a training batch of m values per channel with mean μ and *biased* variance σ²:

    running_mean ← (1 − f)·running_mean + f·μ
    running_var  ← (1 − f)·running_var  + f·σ²·m/(m − 1)      (unbiased)

f = ``momentum`` weights the *new* batch; ``momentum=None`` means a cumulative average,
f = 1/(n + 1) for the batch that follows n tracked ones.  The functions are pure (they
return new values, float64 in, float64 out); each backend writes the result into its
buffers in their dtype.
"""

from typing import Any


def momentum_weight(momentum: float | None, num_batches_tracked: int) -> float:
    """f for the update by the batch after ``num_batches_tracked`` tracked ones:
    ``momentum``, or 1/(num_batches_tracked + 1) (cumulative average) when it is None."""
    return 1.0 / (num_batches_tracked + 1) if momentum is None else momentum


def unbiased(var: Any, count: int) -> Any:
    """The unbiased variance from the biased one of ``count`` values."""
    return var * (count / (count - 1))          # unbiased: m / (m - 1)


def blend(old: Any, new: Any, f: float) -> Any:
    """(1 − f)·old + f·new: an exponential moving average step, f weighting ``new``."""
    return (1.0 - f) * old + f * new


def running_stats(running_mean: Any, running_var: Any, mean: Any, var: Any, count: int,
                  f: float) -> tuple[Any, Any]:
    """The updated (running_mean, running_var) after a batch of ``count`` values per channel
    with ``mean`` and *biased* ``var`` (module docstring)."""
    return blend(running_mean, mean, f), blend(running_var, unbiased(var, count), f)

"""A small worker pool for the NumPy fast path.

NumPy releases the GIL inside its ufunc loops and BLAS calls, so tiles of one array can be
processed by several Python threads at once.  The pool is created lazily and recreated in a
child process after ``fork``.
"""

from concurrent.futures import ThreadPoolExecutor
import os
import threading

_lock = threading.Lock()
_pool = None
_num_threads = None


def _default_num_threads():
    env = os.environ.get("BNCOURSE_NUM_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def get_num_threads():
    """Threads the NumPy fast path uses (default: the CPUs this process may run on,
    or ``$BNCOURSE_NUM_THREADS``)."""
    global _num_threads
    if _num_threads is None:
        _num_threads = _default_num_threads()
    return _num_threads


def set_num_threads(n):
    """Set the number of threads of the NumPy fast path (1 disables threading)."""
    global _num_threads, _pool
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of threads must be a positive integer, got {n!r}")
    with _lock:
        _num_threads = n
        if _pool is not None:
            _pool.shutdown(wait=False)
            _pool = None


def _executor():
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(1, get_num_threads() - 1),
                                       thread_name_prefix="bncourse")
        return _pool


def _forget_pool_after_fork():  # a forked child must not reuse the parent's threads
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def run_chunks(func, items, threads):
    """Call ``func(chunk)`` on ``threads`` contiguous chunks of ``items`` in parallel.

    The calling thread works on the first chunk itself; exceptions propagate.
    """
    items = list(items)
    threads = max(1, min(threads, len(items)))
    if threads == 1:
        func(items)
        return
    bounds = [len(items) * k // threads for k in range(threads + 1)]
    chunks = [items[bounds[k]:bounds[k + 1]] for k in range(threads)]
    pool = _executor()
    futures = [pool.submit(func, chunk) for chunk in chunks[1:]]
    errors = []
    try:
        func(chunks[0])
    except BaseException as exc:  # wait for the workers before re-raising
        errors.append(exc)
    errors += [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]

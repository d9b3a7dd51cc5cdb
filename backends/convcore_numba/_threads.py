"""Who owns the cores: worker threads for the convolution driver and BLAS limits.

The convolution driver splits a call into independent work items (an image,
a band of output rows, a range of channels) and runs them on ``T`` threads:
the calling thread plus ``T - 1`` threads of a shared pool.  ``T`` is
``numba.get_num_threads()`` in the calling thread, so ``NUMBA_NUM_THREADS``
and ``numba.set_num_threads`` decide it.  Each item calls serial ``nogil``
Numba kernels and single-threaded BLAS, so while a call runs exactly ``T``
threads compute: OpenBLAS is limited to one thread for the duration of the
call (threadpoolctl), its own pool stays asleep and no spinning BLAS thread
slows a Numba kernel down (see PERF_NOTES).

Which thread runs an item never changes what the item computes, so results
are bitwise identical for any number of threads.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import numba

__all__ = ["blas_single_threaded", "num_threads", "run_items"]

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()
_controller = None
_controller_lock = threading.Lock()


def num_threads() -> int:
    """Threads a call may use: ``numba.get_num_threads()`` of the calling thread."""
    return max(1, int(numba.get_num_threads()))


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < workers:
            old = _pool
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="convcore-numba")
            _pool_size = workers
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def run_items(func, count: int, threads: int) -> None:
    """Call ``func(worker, item)`` for ``item in range(count)`` on up to ``threads`` threads.

    Items are handed out in order from a shared counter; ``worker`` (0 .. T-1)
    identifies the thread so that it can use its own buffers.  The first
    exception raised by an item is re-raised here after every thread stopped.
    """
    threads = max(1, min(threads, count))
    if threads == 1:
        for item in range(count):
            func(0, item)
        return
    counter = itertools.count()
    failed = threading.Event()

    def work(worker: int) -> None:
        while not failed.is_set():
            item = next(counter)
            if item >= count:
                return
            try:
                func(worker, item)
            except BaseException:
                failed.set()
                raise

    pool = _executor(threads - 1)
    futures = [pool.submit(work, w) for w in range(1, threads)]
    error = None
    try:
        work(0)
    except BaseException as exc:  # re-raised after the other workers stopped
        error = exc
    for fut in futures:
        try:
            fut.result()
        except BaseException as exc:
            error = error or exc
    if error is not None:
        raise error


def _blas_controller():
    global _controller
    if _controller is None:
        with _controller_lock:
            if _controller is None:
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController().select(user_api="blas")
    return _controller


@contextlib.contextmanager
def blas_single_threaded():
    """Limit BLAS to one thread for the block; yields whether that took effect.

    threadpoolctl lets only one Python thread at a time change OpenBLAS's
    (process-wide) limit.  When this thread cannot (another thread holds it),
    the block runs with BLAS as it is and yields False; callers then keep the
    work on one thread rather than oversubscribe the cores.
    """
    ctl = _blas_controller()
    if not ctl.lib_controllers:
        yield True
        return
    with ctl.limit(limits=1):
        yield all(lib.num_threads in (1, None) for lib in ctl.lib_controllers)

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

**Keeping the cores apart** (Linux).  After an idle pause the kernel often
wakes a pool thread (and, through the GIL hand-offs, the calling thread) on
the CPU the other one is running on; the two then take turns on one core
until the load balancer moves one of them, a scheduler tick (4 ms here)
later, while the other core idles.  Two Python threads running independent
single-threaded GEMMs after a 0.2 s pause (``benchmarks/bench_affinity.py``)
took a median of 10.4 ms per round instead of 6.2 ms.  So while
:func:`run_items` hands out items on more than one thread, the calling thread
is held on the CPU it is running on (``sched_getcpu``) and the pool threads
get the caller's other allowed CPUs (one ``sched_setaffinity`` per pool
thread, only when that set changed); the caller's own CPU set is given back
when the items are done.  Pool threads are not pinned to single CPUs when
there are more.  While one call holds its CPU, a call from another Python
thread leaves every thread free (two callers must never be held on the same
CPU).  ``CONVCORE_NUMBA_AFFINITY=0`` turns this off (the pool threads get the
CPU sets they started with back); elsewhere (no ``sched_setaffinity``) nothing
changes.  A forked child forgets the parent's pool and starts its own.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba

__all__ = ["blas_single_threaded", "num_threads", "run_items"]

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()
#: The current pool's threads: native id -> [the CPU set it started with (None
#: where unknown), the CPU set this module last gave it (None: its own)].
_pool_tids: dict[int, list] = {}
_controller = None
_fast = None  # list of _OpenBLAS, False (use threadpoolctl's limit) or None (not looked up)
_controller_lock = threading.Lock()


def num_threads() -> int:
    """Threads a call may use: ``numba.get_num_threads()`` of the calling thread."""
    return max(1, int(numba.get_num_threads()))


def _register_pool_thread(tids: dict) -> None:
    """Pool thread initializer: make the thread's id and starting CPU set known."""
    try:
        home = frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        home = None
    tids[threading.get_native_id()] = [home, None]


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size, _pool_tids
    with _pool_lock:
        if _pool is None or _pool_size < workers:
            old = _pool
            tids: dict[int, list] = {}
            pool = ThreadPoolExecutor(
                max_workers=workers,
                thread_name_prefix="convcore-numba",
                initializer=_register_pool_thread,
                initargs=(tids,),
            )
            # Start every thread now, from the caller as it is (a thread inherits
            # the CPU set of the thread that starts it), so that all of them are
            # known to _give_pool before the first call hands out items.
            started = threading.Barrier(workers + 1, timeout=60)
            try:
                waits = [pool.submit(started.wait) for _ in range(workers)]
                started.wait()
                for fut in waits:
                    fut.result()
            except BaseException as exc:
                started.abort()
                pool.shutdown(wait=False)
                raise RuntimeError(
                    f"the numba backend could not start {workers} worker threads: {exc!r}"
                ) from exc
            _pool, _pool_size, _pool_tids = pool, workers, tids
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def _forget_pool_after_fork() -> None:
    """In a forked child the parent's pool threads do not exist: start afresh."""
    global _pool, _pool_size, _pool_tids, _pool_lock, _pinned_lock, _pinned_calls
    _pool, _pool_size, _pool_tids = None, 0, {}
    _pool_lock = threading.Lock()
    _pinned_lock = threading.Lock()
    _pinned_calls = 0


def _sched_getcpu():
    """``sched_getcpu`` of the C library (the CPU the calling thread runs on), or None."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        import ctypes

        func = ctypes.CDLL(None, use_errno=True).sched_getcpu
    except (OSError, AttributeError):
        return None
    func.restype = ctypes.c_int
    func.argtypes = []
    return func


_getcpu = None
_getcpu_loaded = False


def _caller_cpu() -> int | None:
    global _getcpu, _getcpu_loaded
    if not _getcpu_loaded:
        _getcpu, _getcpu_loaded = _sched_getcpu(), True
    if _getcpu is None:
        return None
    cpu = _getcpu()
    return cpu if cpu >= 0 else None


def _split_cpus():
    """``(caller's CPU, its allowed CPUs, the others)`` for a call, or None (leave alone).

    None when ``CONVCORE_NUMBA_AFFINITY=0``, off Linux, or when the caller may
    run on one CPU only.
    """
    if os.environ.get("CONVCORE_NUMBA_AFFINITY", "").strip() == "0":
        return None
    cpu = _caller_cpu()
    if cpu is None:
        return None
    try:
        allowed = os.sched_getaffinity(0)
    except OSError:
        return None
    others = frozenset(allowed - {cpu})
    if not others or cpu not in allowed:
        return None
    return cpu, allowed, others


def _give_pool(cpus: frozenset) -> None:
    """Give the pool threads the CPU set ``cpus`` (only where it changed); errors ignored."""
    for tid, state in list(_pool_tids.items()):  # one dict: the pool may be replaced meanwhile
        if state[1] != cpus:
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:  # the thread has gone, or the set is not allowed any more
                continue
            state[1] = cpus


def _release_pool() -> None:
    """Give pool threads restricted by an earlier call the CPU set they started with."""
    for tid, state in list(_pool_tids.items()):
        home, current = state
        if current is None or home is None:
            continue
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, home)
        state[1] = None


_pinned_lock = threading.Lock()
_pinned_calls = 0


@contextlib.contextmanager
def _cores_apart():
    """For the block: the caller stays on its CPU, the pool threads keep off it.

    The caller's affinity is restored on exit.  Does nothing when
    :func:`_split_cpus` says to leave the threads alone, or while another
    thread's call holds its CPU (concurrent callers are never held on a CPU:
    two of them could be held on the same one).
    """
    global _pinned_calls
    held = pinned = False
    allowed = None
    try:
        with _pinned_lock:
            busy = _pinned_calls > 0
            split = None if busy else _split_cpus()
            if split is not None:
                _pinned_calls += 1
                held = True
        if not held:
            # Another thread's call holds the cores (two callers must not be held
            # on one CPU, so this one stays free), or the rule is off.
            if not busy:
                _release_pool()
            yield
            return
        cpu, allowed, others = split
        _give_pool(others)
        pinned = True  # before the call: an interruption right after it is undone too
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})
        yield
    finally:
        if pinned:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, allowed)
        if held:
            with _pinned_lock:
                _pinned_calls -= 1


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
    error = None
    with _cores_apart():
        futures = [pool.submit(work, w) for w in range(1, threads)]
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


class _OpenBLAS:
    """Direct ``openblas_get/set_num_threads`` of one OpenBLAS (pthreads layer).

    threadpoolctl's ``limit`` reads every library's full info on entry (about
    35 us a call here, a third of a small convolution); these two ctypes calls
    cost about a microsecond.  The controlling-thread protocol of threadpoolctl's
    ``OpenBLASController`` (its ``_SHARED_STATE``) is kept: only one Python
    thread at a time changes the process-wide limit.
    """

    __slots__ = ("get", "set", "state")

    def __init__(self, lib):
        self.get = lib._get_symbol("openblas_get_num_threads")
        self.set = lib._get_symbol("openblas_set_num_threads")
        self.state = type(lib)._SHARED_STATE
        if self.get is None or self.set is None:
            raise LookupError("no openblas_get/set_num_threads")


def _fast_blas():
    """The :class:`_OpenBLAS` of every BLAS threadpoolctl finds, or None when one of
    them is not a pthreads OpenBLAS (then threadpoolctl's own ``limit`` is used)."""
    global _fast
    if _fast is None:
        libs = _blas_controller().lib_controllers  # takes _controller_lock itself
        with _controller_lock:
            if _fast is None:
                try:
                    from threadpoolctl import OpenBLASController

                    ok = all(
                        isinstance(lib, OpenBLASController)
                        and getattr(lib, "threading_layer", None) != "openmp"
                        for lib in libs
                    )
                    _fast = [_OpenBLAS(lib) for lib in libs] if ok else False
                except Exception:  # an older threadpoolctl: its own limit() still works
                    _fast = False
    return _fast or None


@contextlib.contextmanager
def blas_single_threaded():
    """Limit BLAS to one thread for the block; yields whether that took effect.

    threadpoolctl lets only one Python thread at a time change OpenBLAS's
    (process-wide) limit.  When this thread cannot (another thread holds it),
    the block runs with BLAS as it is and yields False; callers then keep the
    work on one thread rather than oversubscribe the cores.  A BLAS already on
    one thread is left alone.
    """
    fast = _fast_blas()
    if fast is None:
        ctl = _blas_controller()
        if not ctl.lib_controllers:
            yield True
            return
        with ctl.limit(limits=1):
            yield all(lib.num_threads in (1, None) for lib in ctl.lib_controllers)
        return
    me = threading.current_thread()
    changed = []
    single = True
    try:
        for lib in fast:
            before = lib.get()
            if before == 1:
                continue
            state = lib.state
            with state.lock:
                owner = state.controlling_thread
                took = owner is None or not owner.is_alive()
                if took:
                    state.controlling_thread = me
                elif owner is not me:
                    single = False  # another thread controls OpenBLAS: leave it
                    continue
            lib.set(1)
            changed.append((lib, before, took))
        yield single
    finally:
        for lib, before, took in reversed(changed):
            lib.set(before)
            if took:
                with lib.state.lock:
                    if lib.state.controlling_thread is me:
                        lib.state.controlling_thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)

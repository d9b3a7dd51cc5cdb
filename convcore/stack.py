"""A convolution (and optional pooling) over an image stack on disk: ``convcore apply``.

The stack is read as a Dask array chunked along the batch axis, convolved by the
``dask`` backend (each chunk on the best local backend for it: numba for NumPy
chunks) and written chunk by chunk into a Zarr array, so the stack never has to
fit in memory: each task holds one chunk of input and its output, and the
kernels' scratch memory stays under ``CONVCORE_WORKSPACE_MB``.

* **Input**: a Zarr array of shape ``(N, C, H, W)``, or a directory of ``.npy``
  files read in sorted file-name order, each holding one image ``(C, H, W)``
  or a stack of images ``(n, C, H, W)``; every image has the same
  ``(C, H, W)`` and dtype.
* **Output**: a Zarr array ``(N, F, Ho, Wo)`` chunked like the work (``chunk``
  images per Zarr chunk, one task per chunk).
* **Resuming**: the job's fingerprint (input, weights, options) is stored in
  the output's attributes, and a marker file per finished chunk in its
  ``.convcore-progress`` folder, written after the chunk is in the Zarr array.
  Running the same job again computes only the chunks without a marker.
* **Scheduler**: the default threaded scheduler (nothing to start), or a
  ``dask.distributed`` cluster whose scheduler address is given
  (``--scheduler tcp://host:port`` or ``CONVCORE_DASK_SCHEDULER``).

The job's options are one :class:`ApplyOptions`; :func:`apply_stack` runs a
job, :func:`build_graph` gives its lazy result.  The ``convcore apply`` command
(``convcore/cli.py``) parses its arguments into an :class:`ApplyOptions` and
calls :func:`apply_stack`.  Importing this module imports neither Dask nor Zarr;
running a job does.  See ``docs/scaling.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import operator
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .geometry import normalize_padding, normalize_tuple

__all__ = [
    "ENV_SCHEDULER",
    "ApplyOptions",
    "ApplyReport",
    "NpyStack",
    "ZarrStack",
    "apply_stack",
    "build_graph",
    "open_stack",
]

#: Environment variable with the address of a ``dask.distributed`` scheduler.
ENV_SCHEDULER = "CONVCORE_DASK_SCHEDULER"
#: Folder inside the output array with one marker file per finished chunk.
PROGRESS_DIR = ".convcore-progress"
#: Attribute of the output array that holds the job's description and fingerprint.
ATTRS_KEY = "convcore_apply"
#: Dask configuration key read by the dask backend: the backend the chunks run on.
BLOCK_BACKEND_KEY = "convcore.block-backend"


def _need(module: str):
    """Import ``module`` (dask, dask.array, distributed, zarr) or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"convcore apply needs {module.split('.')[0]} ({exc}): pip install 'convcore[dask]'"
        ) from None


# ---------------------------------------------------------------------------
# sources: array-likes that Dask's from_array slices along the batch axis
# ---------------------------------------------------------------------------
def _batch_range(key, n: int) -> tuple[int, int, tuple]:
    """``(start, stop, rest)`` of an index ``key`` whose first entry is a unit-step slice."""
    key = key if isinstance(key, tuple) else (key,)
    first = key[0] if key else slice(None)
    if not isinstance(first, slice) or first.step not in (None, 1):
        raise IndexError(f"a stack is read by batch ranges (unit-step slices), got {first!r}")
    start, stop, _ = first.indices(n)
    return start, max(start, stop), key[1:]


class NpyStack:
    """A directory of ``.npy`` files read as one ``(N, C, H, W)`` stack.

    Files are taken in sorted name order; a 3-D file is one image ``(C, H, W)``,
    a 4-D file a stack ``(n, C, H, W)``.  Only the headers are read here; a
    slice reads (memory-maps) just the files it covers.
    """

    def __init__(self, directory):
        self.directory = str(Path(directory).resolve())
        files = sorted(Path(self.directory).glob("*.npy"))
        if not files:
            raise ValueError(f"INPUT directory {directory} holds no .npy files")
        self.files: list[str] = []
        self.counts: list[int] = []
        image = dtype = None
        for path in files:
            try:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ValueError(f"cannot read {path}: {exc}") from None
            if arr.ndim not in (3, 4):
                raise ValueError(
                    f"{path} holds an array of shape {arr.shape}; each .npy file must be one "
                    "image (C, H, W) or a stack of images (n, C, H, W)"
                )
            shape = arr.shape[-3:]
            if image is None:
                image, dtype = shape, arr.dtype
            elif shape != image or arr.dtype != dtype:
                raise ValueError(
                    f"{path} holds images of shape {shape} and dtype {arr.dtype}, but "
                    f"{self.files[0]} holds {image} and {dtype}; every image must match"
                )
            self.files.append(str(path))
            self.counts.append(1 if arr.ndim == 3 else arr.shape[0])
        self.shape = (sum(self.counts), *image)
        self.dtype = np.dtype(dtype)
        self.ndim = 4

    def __dask_tokenize__(self):
        stamps = [os.stat(f).st_mtime_ns for f in self.files]
        return ("convcore.NpyStack", self.files, self.counts, stamps)

    def __getitem__(self, key):
        start, stop, rest = _batch_range(key, self.shape[0])
        pieces, offset = [], 0
        for path, count in zip(self.files, self.counts):
            lo, hi = max(start, offset), min(stop, offset + count)
            if lo < hi:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
                arr = arr[None] if arr.ndim == 3 else arr
                pieces.append(np.array(arr[lo - offset : hi - offset]))
            offset += count
        if not pieces:
            out = np.empty((0, *self.shape[1:]), dtype=self.dtype)
        else:
            out = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        return out[(slice(None), *rest)] if rest else out


class ZarrStack:
    """A Zarr array ``(N, C, H, W)`` opened read-only (again in every process that reads)."""

    def __init__(self, path):
        zarr = _need("zarr")
        self.path = str(Path(path).resolve())
        arr = zarr.open_array(self.path, mode="r")
        self.shape = tuple(arr.shape)
        self.dtype = np.dtype(arr.dtype)
        self.ndim = len(self.shape)
        self._array = arr

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_array"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._array = None

    def __dask_tokenize__(self):
        meta = Path(self.path) / "zarr.json"
        if not meta.exists():
            meta = Path(self.path) / ".zarray"
        return ("convcore.ZarrStack", self.path, self.shape, str(self.dtype), _mtime(meta))

    def __getitem__(self, key):
        if self._array is None:
            import zarr

            self._array = zarr.open_array(self.path, mode="r")
        start, stop, rest = _batch_range(key, self.shape[0])
        out = np.asarray(self._array[start:stop])
        return out[(slice(None), *rest)] if rest else out


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _is_zarr(path: Path) -> bool:
    return (path / "zarr.json").is_file() or (path / ".zarray").is_file()


def open_stack(path) -> NpyStack | ZarrStack:
    """The stack at ``path``: a Zarr array, or a directory of ``.npy`` files."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"INPUT {path} does not exist")
    if not p.is_dir():
        raise ValueError(f"INPUT {path} is a file; give a Zarr array or a directory of .npy files")
    if _is_zarr(p):
        stack = ZarrStack(p)
    elif (p / ".zgroup").is_file():
        raise ValueError(f"INPUT {path} is a Zarr group; give the path of one array in it")
    else:
        stack = NpyStack(p)
    if stack.ndim != 4:
        raise ValueError(
            f"INPUT {path} must hold a 4-D stack (N, C, H, W), got shape {stack.shape}"
        )
    if stack.shape[0] < 1:
        raise ValueError(f"INPUT {path} holds no images (shape {stack.shape})")
    return stack


# ---------------------------------------------------------------------------
# the job's options
# ---------------------------------------------------------------------------
_POOLS = ("max", "avg")
_DTYPES = ("float32", "float64")


def _plain(value):
    """``value`` with lists made tuples and integer-likes made ints (already validated)."""
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, (list, tuple)) or getattr(value, "ndim", 0) > 0:
        return tuple(_plain(v) for v in value)
    return operator.index(value)


@dataclass(frozen=True)
class ApplyOptions:
    """The options of a job of :func:`apply_stack` (and ``convcore apply``).

    Every value is checked when the object is made: a bad one raises
    ``TypeError`` or ``ValueError`` naming the field, the value and what was
    expected.  Lists are stored as tuples.

    Parameters
    ----------
    stride, padding, dilation, groups
        As for :func:`convcore.conv2d` (2-D: one int, or one per axis; padding
        also ``(top, bottom, left, right)``, pairs, ``"same"`` or ``"valid"``).
    pool : {"max", "avg"} or None
        Pooling after the convolution, with ``pool_size`` and ``pool_stride``
        (default: the pool size).
    chunk : int
        Images per task and per output Zarr chunk: with the workspace limit, it
        bounds each worker's memory.
    dtype : "float32", "float64" or None
        Compute and output dtype (default: the input's when it is one of those,
        else float32).
    backend : str, optional
        Backend for the chunks (default ``auto``: numba for NumPy chunks).  It
        is not part of the job's fingerprint: a job may be resumed on another
        backend.

    Examples
    --------
    >>> ApplyOptions(padding=1, pool="max", chunk=16).chunk
    16
    >>> ApplyOptions(chunk=0)
    Traceback (most recent call last):
    ...
    ValueError: chunk must be a positive number of images, got 0
    """

    stride: int | tuple[int, ...] = 1
    padding: int | str | tuple = 0
    dilation: int | tuple[int, ...] = 1
    groups: int = 1
    pool: str | None = None
    pool_size: int | tuple[int, ...] = 2
    pool_stride: int | tuple[int, ...] | None = None
    chunk: int = 32
    dtype: str | None = None
    backend: str | None = None

    def __post_init__(self):
        # Field by field, in order.  The geometry's checks are the library's own (the
        # messages conv2d gives), under this object's field names.
        normalize_tuple(self.stride, 2, "stride")
        normalize_padding(self.padding, 2)
        normalize_tuple(self.dilation, 2, "dilation")
        _check_count(self.groups, "groups", "a positive integer")
        if self.pool is not None and (not isinstance(self.pool, str) or self.pool not in _POOLS):
            raise ValueError(f"pool must be None, 'max' or 'avg', got {self.pool!r}")
        normalize_tuple(self.pool_size, 2, "pool_size")
        if self.pool_stride is not None:
            normalize_tuple(self.pool_stride, 2, "pool_stride")
        _check_count(self.chunk, "chunk", "a positive number of images")
        object.__setattr__(self, "dtype", _dtype_name(self.dtype))
        if not (self.backend is None or isinstance(self.backend, str)):
            raise TypeError(f"backend must be a backend name or None, got {self.backend!r}")
        for name in ("stride", "padding", "dilation", "groups", "pool_size", "pool_stride",
                     "chunk"):  # fmt: skip
            object.__setattr__(self, name, _plain(getattr(self, name)))


def _check_count(value, name: str, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be {what}, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be {what}, got {value!r}")


def _dtype_name(dtype) -> str | None:
    """``None``, or the name of a float32 / float64 dtype given in any NumPy spelling."""
    if dtype is None:
        return None
    try:
        name = np.dtype(dtype).name
    except (TypeError, ValueError):
        name = None
    if name not in _DTYPES:
        raise ValueError(f"dtype must be None, 'float32' or 'float64', got {dtype!r}")
    return name


def _job_options(options: ApplyOptions, dtype: np.dtype) -> dict:
    """What the output's attributes record of the options, as JSON values.

    The fields of ``options`` in their order but ``backend`` (the chunks' backend
    does not change the job), with the dtype resolved against the input; the
    job's fingerprint hashes this too, so outputs written by earlier versions
    resume.
    """
    job = dataclasses.asdict(options)
    del job["backend"]
    job["dtype"] = str(dtype)
    return json.loads(json.dumps(job))


# ---------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------
@dataclass
class ApplyReport:
    """What :func:`apply_stack` did."""

    output: str
    shape: tuple[int, ...]
    dtype: str
    chunks: int
    skipped: int
    computed: int
    scheduler: str
    seconds: float
    #: Peak resident memory (MiB) of each process that computed: the workers of a
    #: distributed cluster, or this process for the threaded scheduler.
    peak_rss_mib: dict[str, float] = field(default_factory=dict)


def _peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss``; NaN off Unix)."""
    try:
        import resource
    except ImportError:  # Windows
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def _write_chunk(block, path: str, start: int) -> int:
    """Write one chunk of the result into the output array; return its first image."""
    import zarr

    zarr.open_array(path, mode="r+")[start : start + block.shape[0]] = np.asarray(block)
    return start


def _fingerprint(stack, weight, bias, options: dict) -> str:
    digest = hashlib.sha256()
    source = getattr(stack, "path", None) or getattr(stack, "directory", "")
    digest.update(json.dumps([source, list(stack.shape), str(stack.dtype), options]).encode())
    for arr in (weight, bias):
        if arr is not None:
            digest.update(str((arr.shape, arr.dtype.str)).encode())
            digest.update(np.ascontiguousarray(arr).tobytes())
    return digest.hexdigest()


def _progress_dir(output: Path) -> Path:
    return output / PROGRESS_DIR


def _finished(output: Path, total: int) -> set[int]:
    done = set()
    folder = _progress_dir(output)
    if folder.is_dir():
        for marker in folder.glob("chunk-*.done"):
            try:
                index = int(marker.name[len("chunk-") : -len(".done")])
            except ValueError:
                continue
            if 0 <= index < total:
                done.add(index)
    return done


def _mark(output: Path, index: int) -> None:
    (_progress_dir(output) / f"chunk-{index:06d}.done").touch()


def _open_output(output: Path, shape, chunk: int, dtype, job: dict):
    """Create the output array, or reopen it when it holds this job's (partial) result."""
    zarr = _need("zarr")
    if output.exists():
        if not _is_zarr(output):
            raise ValueError(f"OUTPUT {output} exists and is not a Zarr array; choose another")
        arr = zarr.open_array(str(output), mode="r+")
        found = dict(arr.attrs).get(ATTRS_KEY, {})
        if found.get("fingerprint") != job["fingerprint"]:
            raise ValueError(
                f"OUTPUT {output} exists and holds another job's result (different input, "
                "weights or options); remove it to start again, or choose another OUTPUT"
            )
        return arr
    chunks = (chunk, *shape[1:])
    arr = zarr.open_array(str(output), mode="w-", shape=shape, chunks=chunks, dtype=dtype)
    arr.attrs[ATTRS_KEY] = job
    _progress_dir(output).mkdir(exist_ok=True)
    return arr


def _compute_dtype(stack, options: ApplyOptions) -> np.dtype:
    if options.dtype is not None:
        return np.dtype(options.dtype)
    return stack.dtype if stack.dtype in (np.float32, np.float64) else np.dtype(np.float32)


def _check_options(options) -> ApplyOptions:
    if not isinstance(options, ApplyOptions):
        raise TypeError(
            f"options must be an ApplyOptions, got {options!r}; "
            "e.g. ApplyOptions(padding=1, pool='max', chunk=16)"
        )
    return options


def build_graph(stack, weight, bias=None, options: ApplyOptions = ApplyOptions()):
    """The lazy result ``(N, F, Ho, Wo)`` of the job as a Dask array (nothing computed).

    One block per ``options.chunk`` images; ``options.backend`` names the backend
    the chunks run on (default: ``auto``, the best one for NumPy chunks).
    """
    options = _check_options(options)
    dask = _need("dask")
    da = _need("dask.array")
    from ._api import conv2d
    from .pooling import avg_pool2d, max_pool2d

    dt = _compute_dtype(stack, options)
    meta = np.empty((0,) * 4, dtype=stack.dtype)
    x = da.from_array(
        stack, chunks=(options.chunk, -1, -1, -1), asarray=False, lock=False, meta=meta
    )
    if x.dtype != dt:
        x = x.astype(dt)
    w = da.from_array(np.asarray(weight, dtype=dt), chunks=-1)
    b = None if bias is None else da.from_array(np.asarray(bias, dtype=dt), chunks=-1)
    backend = options.backend
    settings = {} if backend in (None, "auto") else {BLOCK_BACKEND_KEY: backend}
    with dask.config.set(settings):
        y = conv2d(
            x, w, b, stride=options.stride, padding=options.padding, dilation=options.dilation,
            groups=options.groups, backend="dask",
        )  # fmt: skip
        if options.pool is not None:
            pool = max_pool2d if options.pool == "max" else avg_pool2d
            y = pool(y, options.pool_size, options.pool_stride, backend="dask")
    return y.rechunk({0: x.chunks[0], 1: -1, 2: -1, 3: -1})


def apply_stack(
    input_path,
    output_path,
    weight,
    bias=None,
    options: ApplyOptions = ApplyOptions(),
    *,
    scheduler: str | None = None,
    progress: Callable[[int], Any] | None = None,
    on_start: Callable[[int, int], Any] | None = None,
) -> ApplyReport:
    """Convolve (and pool) the stack at ``input_path`` into the Zarr array ``output_path``.

    Parameters
    ----------
    input_path : path
        A Zarr array ``(N, C, H, W)`` or a directory of ``.npy`` files (see the
        module docstring).
    output_path : path
        The Zarr array to write; created, or resumed when it holds an
        interrupted run of the same job.
    weight, bias : NumPy arrays
        ``(F, C/groups, KH, KW)`` and ``(F,)``.
    options : ApplyOptions
        The convolution, pooling, chunk, dtype and the chunks' backend (default:
        ``ApplyOptions()``).
    scheduler : str, optional
        Address of a ``dask.distributed`` scheduler (``tcp://host:port``); default
        ``$CONVCORE_DASK_SCHEDULER``, else Dask's threaded scheduler in this
        process.
    progress : callable, optional
        ``progress(index)`` after each chunk is written and recorded.
    on_start : callable, optional
        ``on_start(total, already_done)`` once the output is open.
    """
    options = _check_options(options)
    start_time = time.perf_counter()
    stack = open_stack(input_path)
    output = Path(output_path).resolve()
    recorded = _job_options(options, _compute_dtype(stack, options))
    y = build_graph(stack, weight, bias, options)
    total = len(y.chunks[0])
    job = {
        "fingerprint": _fingerprint(stack, weight, bias, recorded),
        "input": getattr(stack, "path", None) or stack.directory,
        "options": recorded,
        "chunks": total,
    }
    address = scheduler or os.environ.get(ENV_SCHEDULER) or None
    with contextlib.ExitStack() as resources:
        # Connect first: an unreachable scheduler fails before anything is written.
        client = None if address is None else resources.enter_context(_connect(address))
        _open_output(output, tuple(int(s) for s in y.shape), options.chunk, y.dtype, job)
        done = _finished(output, total)
        if on_start is not None:
            on_start(total, len(done))
        report = ApplyReport(
            output=str(output),
            shape=tuple(int(s) for s in y.shape),
            dtype=str(y.dtype),
            chunks=total,
            skipped=len(done),
            computed=0,
            scheduler=address or "threads",
            seconds=0.0,
        )
        pending = [i for i in range(total) if i not in done]
        if pending:
            dask = _need("dask")
            starts = np.cumsum((0, *y.chunks[0]))
            blocks = y.to_delayed(optimize_graph=True).reshape(-1)
            write = dask.delayed(_write_chunk, pure=True)
            writes = {i: write(blocks[i], str(output), int(starts[i])) for i in pending}

            def finished(index: int) -> None:
                _mark(output, index)  # after the chunk is in the Zarr array
                report.computed += 1
                if progress is not None:
                    progress(index)

            if client is None:
                _run_threaded(writes, finished)
                report.peak_rss_mib = {"this process": _peak_rss_mib()}
            else:
                report.peak_rss_mib = _run_distributed(client, writes, finished)
    report.seconds = time.perf_counter() - start_time
    return report


def _run_threaded(writes: dict, finished: Callable[[int], None]) -> None:
    """Dask's threaded scheduler in this process; ``finished`` runs in this thread."""
    dask = _need("dask")
    from dask.callbacks import Callback

    index_of = {w.key: i for i, w in writes.items()}

    def posttask(key, result, dsk, state, worker_id):
        if key in index_of:
            finished(index_of[key])

    with Callback(posttask=posttask):
        dask.compute(*writes.values(), scheduler="threads")


@contextlib.contextmanager
def _connect(address: str):
    """A ``dask.distributed.Client`` of the scheduler at ``address`` (not made the default)."""
    dask = _need("dask")
    distributed = _need("distributed")
    timeout = dask.config.get("distributed.comm.timeouts.connect", "30s")
    try:
        client = distributed.Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ValueError(
            f"cannot connect to the Dask scheduler at {address} (from --scheduler or "
            f"{ENV_SCHEDULER}): {exc}"
        ) from None
    try:
        yield client
    finally:
        client.close()


def _run_distributed(client, writes: dict, finished: Callable[[int], None]) -> dict:
    """Run on the cluster; ``finished`` runs here as chunks complete.  Peak RSS per worker."""
    distributed = _need("distributed")
    futures = client.compute(list(writes.values()))
    index_of = {f.key: i for f, i in zip(futures, writes)}
    try:
        for future in distributed.as_completed(futures, loop=client.loop):
            future.result()  # re-raises a task's error here
            finished(index_of[future.key])
    finally:
        client.cancel(futures)
    try:
        return dict(client.run(_peak_rss_mib))
    except Exception:  # a worker restarting after a crash: no figure, not an error
        return {}

"""Tools for learning and teaching convolution internals.

* :func:`gradcheck`: compares the backward pass of any convcore operator (or a
  function of your own with its backward) with centred finite differences of
  its forward pass, the check every CNN course asks students to write;
* :func:`draw_im2col`: draws which pixels land in which column of ``X_col``
  (the pictures of the documentation's concepts page); needs matplotlib
  (``pip install 'convcore[plot]'``);
* :mod:`convcore.naive`: the loop references convcore's tests and ``convcore
  check`` compare every backend with (plain Python loops over the output
  positions, written to be obviously right).

Examples
--------
>>> import numpy as np, convcore
>>> from convcore.teaching import gradcheck
>>> rng = np.random.default_rng(0)
>>> x, w = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3))
>>> result = gradcheck(convcore.conv2d, x, w, np.zeros(4), stride=2, padding=1)
>>> result.passed, sorted(result.max_error)
(True, ['bias', 'weight', 'x'])
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import array_api_compat
import numpy as np

from ._drawing import draw_im2col
from ._validation import Layout

__all__ = ["GradcheckError", "GradcheckResult", "draw_im2col", "gradcheck"]

Array = Any


class GradcheckError(AssertionError):
    """A backward pass disagrees with the finite differences of its forward pass."""


@dataclass(frozen=True)
class GradcheckResult:
    """What :func:`gradcheck` found.

    Attributes
    ----------
    passed : bool
        True when every analytic gradient entry is within tolerance.
    max_error : dict
        Largest ``|analytic - numeric|`` per checked input, by parameter name.
    worst : tuple or None
        ``(name, index, analytic, numeric)`` of the entry furthest outside the
        tolerance (None when everything passed).
    """

    passed: bool
    max_error: dict[str, float] = field(default_factory=dict)
    worst: tuple | None = None

    def __bool__(self) -> bool:
        return self.passed


# ---------------------------------------------------------------------------
# the backward passes of convcore's operators, as functions of the forward's arguments
# ---------------------------------------------------------------------------
def _spatial_size(x, layout: str) -> tuple[int, ...]:
    lay = Layout(layout, x.ndim - 2)
    return tuple(lay.shape_to_first(tuple(x.shape))[2:])


def _known_backwards() -> dict[Callable, Callable]:
    """``forward -> backward(grad_out, *args, **kwargs)`` returning one gradient per
    array argument of the forward call."""
    import convcore

    table: dict[Callable, Callable] = {}
    for suffix in ("", "1d", "2d", "3d"):
        for name in ("conv", "conv_transpose"):
            back = getattr(convcore, f"{name}{suffix}_backward")

            def weighted(g, x, weight, bias=None, *, _back=back, **kw):
                dx, dw, db = _back(g, x, weight, **kw)
                return (dx, dw) if bias is None else (dx, dw, db)

            table[getattr(convcore, f"{name}{suffix}")] = weighted
        max_back = getattr(convcore, f"max_pool{suffix}_backward")
        avg_back = getattr(convcore, f"avg_pool{suffix}_backward")

        def maxed(g, x, *rest, _back=max_back, **kw):
            if kw.get("return_indices") or (len(rest) >= 6 and rest[5]):
                raise ValueError("gradcheck needs return_indices=False (one output)")
            kw.pop("return_indices", None)
            return (_back(g, x, *rest[:5], **kw),)

        def averaged(g, x, *rest, _back=avg_back, **kw):
            return (_back(g, tuple(x.shape), *rest, **kw),)

        table[getattr(convcore, f"max_pool{suffix}")] = maxed
        table[getattr(convcore, f"avg_pool{suffix}")] = averaged

    def unfolded(g, x, kernel_size, **kw):
        size = _spatial_size(x, kw.get("layout", "channels_first"))
        return (convcore.col2im(g, size, kernel_size, **kw),)

    def folded(g, cols, input_size, kernel_size, **kw):
        return (convcore.col2im_backward(g, input_size, kernel_size, **kw),)

    table[convcore.im2col] = unfolded
    table[convcore.col2im] = folded
    return table


def _names(func, args) -> list[str]:
    """The parameter names of ``func``'s positional arguments (``arg0``... if unknown)."""
    try:
        params = [
            p.name
            for p in inspect.signature(func).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    return [params[i] if i < len(params) else f"arg{i}" for i in range(len(args))]


# ---------------------------------------------------------------------------
# gradcheck
# ---------------------------------------------------------------------------
def gradcheck(
    func: Callable,
    *args,
    backward: Callable | None = None,
    wrt: Sequence[int] | None = None,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
    seed: int = 0,
    raise_exception: bool = True,
    **kwargs,
) -> GradcheckResult:
    """Check a backward pass against centred finite differences of the forward pass.

    A random upstream gradient ``g`` (fixed by ``seed``) turns the forward pass
    into the scalar ``L = sum(func(*args, **kwargs) * g)``; every entry of every
    checked input is moved by ``±eps`` and ``(L+ - L-) / (2 eps)`` is compared
    with the analytic gradient ``backward(g, *args, **kwargs)``.  Everything is
    computed in float64 (float32 inputs are converted; the inputs themselves are
    never modified).

    Parameters
    ----------
    func : callable
        A convcore operator (``conv``, ``conv1d``/``2d``/``3d``,
        ``conv_transpose*``, ``max_pool*``, ``avg_pool*``, ``im2col``,
        ``col2im``), whose backward pass is known, or any function of NumPy
        arrays returning one array (then ``backward`` is required).
    *args, **kwargs
        The forward call's arguments.  Its floating-point NumPy array positional
        arguments are the inputs that can be checked.
    backward : callable, optional
        ``backward(g, *args, **kwargs)`` returning the gradient (or a tuple of
        gradients) of ``L`` with respect to each checked input, in order.
        Defaults to convcore's own backward pass of ``func``.
    wrt : sequence of int, optional
        Positions (in ``args``) of the inputs to check; default: every
        floating-point array argument.  ``backward`` returns gradients for all
        of those defaults, in order; ``wrt`` only narrows what is compared.
    eps, rtol, atol : float
        Step and tolerance: an entry passes when
        ``|analytic - numeric| <= atol + rtol * |numeric|``.
    seed : int
        Seed of the upstream gradient.
    raise_exception : bool
        Raise :class:`GradcheckError` on a mismatch (default) rather than return
        a failed :class:`GradcheckResult`.

    Returns
    -------
    GradcheckResult

    Notes
    -----
    Finite differences are wrong where the function has a kink within ``eps``
    of an input: max pooling with two entries of a window closer than ``eps``,
    ReLU at 0.  Use inputs with distinct values there.  The check costs two
    forward calls per checked entry: keep the arrays small.
    """
    if not callable(func):
        raise TypeError(f"func must be callable, got {type(func).__name__}")
    if backward is None:
        backward = _known_backwards().get(func)
        if backward is None:
            raise TypeError(
                f"gradcheck does not know the backward pass of {getattr(func, '__name__', func)!r};"
                " pass backward=callable(g, *args, **kwargs)"
            )
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    names = _names(func, args)
    args = list(args)
    candidates = []
    for i, a in enumerate(args):
        if array_api_compat.is_array_api_obj(a) and not array_api_compat.is_numpy_array(a):
            raise TypeError(
                f"{names[i]} must be a NumPy array for gradcheck (finite differences run on "
                f"the host in float64), got a {type(a).__module__}.{type(a).__name__}; "
                "convert it with numpy.asarray"
            )
        if isinstance(a, np.ndarray) and np.issubdtype(a.dtype, np.floating):
            args[i] = a.astype(np.float64)  # a copy: the caller's array is never touched
            candidates.append(i)
    if not candidates:
        raise TypeError("gradcheck needs at least one floating-point NumPy array argument")
    if wrt is None:
        wrt = candidates
    else:
        wrt = list(wrt)
        for i in wrt:
            if i not in candidates:
                raise ValueError(
                    f"wrt={wrt!r}: position {i} is not a floating-point array argument "
                    f"(those are {candidates})"
                )

    out = np.asarray(func(*args, **kwargs))
    g = np.random.default_rng(seed).standard_normal(out.shape)
    analytic = backward(g, *args, **kwargs)
    if not isinstance(analytic, (tuple, list)):
        analytic = (analytic,)
    if len(analytic) != len(candidates):
        raise ValueError(
            f"backward returned {len(analytic)} gradient(s) but func has {len(candidates)} "
            f"floating-point array argument(s) ({', '.join(names[i] for i in candidates)})"
        )
    by_position = dict(zip(candidates, analytic))

    def loss() -> float:
        return float(np.sum(np.asarray(func(*args, **kwargs)) * g))

    max_error: dict[str, float] = {}
    worst = None
    worst_excess = 0.0
    for i in wrt:
        a = args[i]
        grad = np.asarray(by_position[i], dtype=np.float64)
        if grad.shape != a.shape:
            raise ValueError(
                f"backward's gradient for {names[i]} has shape {grad.shape}, expected {a.shape}"
            )
        numeric = np.empty_like(a)
        for idx in np.ndindex(a.shape):
            kept = a[idx]
            a[idx] = kept + eps
            plus = loss()
            a[idx] = kept - eps
            minus = loss()
            a[idx] = kept
            numeric[idx] = (plus - minus) / (2 * eps)
        error = np.abs(grad - numeric)
        max_error[names[i]] = float(error.max()) if error.size else 0.0
        excess = error - (atol + rtol * np.abs(numeric))
        if excess.size and excess.max() > worst_excess:
            at = np.unravel_index(int(np.argmax(excess)), excess.shape)
            worst_excess = float(excess.max())
            worst = (names[i], tuple(int(k) for k in at), float(grad[at]), float(numeric[at]))
    result = GradcheckResult(passed=worst is None, max_error=max_error, worst=worst)
    if not result.passed and raise_exception:
        name, at, got, want = worst
        raise GradcheckError(
            f"gradient of {name} differs from the finite differences at index {at}: "
            f"analytic {got!r}, numeric {want!r} (rtol={rtol}, atol={atol}); "
            f"largest errors: {max_error}"
        )
    return result

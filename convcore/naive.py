"""The naive loop references: every operator of convcore as plain Python loops.

These are the references convcore's test suite and ``convcore check`` compare
every backend with, public so that a course can use them as the "obviously
right" version next to the fast one.  Explicit loops over the output positions
and kernel taps, bounds checks instead of a padded copy, float64 accumulation;
only the batch, channel and filter axes are vectorised.  They take NumPy arrays
in channels-first layout ``(N, C, *spatial)`` with any number ``nd`` of spatial
axes, and every geometry argument already resolved: ``kernel``, ``stride``,
``dilation`` and ``output_padding`` are tuples of ``nd`` ints, ``padding`` is a
tuple of ``2*nd`` ints ``(before0, after0, before1, after1, ...)``.  They
validate little: use them to learn from and to check against, not as an API.

This module imports nothing from convcore's kernels, so a bug there cannot hide
in the reference too.  :func:`seed_conv2d_loops` is the seed document's
per-pixel convolution (the loops ``convcore demo`` times).

Examples
--------
>>> import numpy as np, convcore
>>> from convcore import naive
>>> x, w = np.ones((1, 2, 4, 4)), np.ones((3, 2, 3, 3))
>>> y = naive.conv(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1)
>>> bool(np.allclose(y, convcore.conv2d(x, w, padding=1)))
True
"""

from __future__ import annotations

from . import _naive
from ._naive import *  # noqa: F403

__all__ = list(_naive.__all__)

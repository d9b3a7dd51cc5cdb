"""The tests' import point for the naive N-d loop oracle (``import naive``).

Everything lives in :mod:`convcore._naive`, which imports nothing from convcore;
``tests/test_naive.py`` checks it against PyTorch and hand-computed values.
"""

from __future__ import annotations

from convcore import _naive
from convcore._naive import *  # noqa: F403

__all__ = list(_naive.__all__)

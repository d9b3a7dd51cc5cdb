"""Transitional: ``conv2d_ref`` for the old ``tests/test_transpose.py`` only.

The oracle of the suite is :mod:`naive`; the case table is in ``tests/cases.py``.
The rewritten ``tests/test_transpose.py`` (branch ``trtests``) no longer imports
this module: delete it when that lands.
"""

from __future__ import annotations

from cases import expected_conv


def conv2d_ref(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """:func:`naive.conv` with the public options (``padding`` in any public form)."""
    return expected_conv(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)

"""What ``auto`` must pick, derived from the backends' own declarations.

``auto`` takes the highest-priority backend that is available and declares the
op, namespace, device and dtype.  Tests that check *which* backend ran compare
against this, so they stay right whichever optional backends (numba, cupy) are
installed.
"""

from __future__ import annotations

import convcore


def auto_for_numpy(op: str = "conv", dtype: str = "float64") -> str:
    """Name of the backend ``auto`` should use for ``op`` on NumPy ``dtype`` arrays."""
    for info in convcore.available_backends():  # best first
        if (
            info.available
            and op in info.ops
            and dtype in info.dtypes
            and (info.namespaces is None or "numpy" in info.namespaces)
            and (info.devices is None or "cpu" in info.devices)
        ):
            return info.name
    raise AssertionError(f"no available backend declares {op} on NumPy {dtype} arrays")

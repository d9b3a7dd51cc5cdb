"""A minimal third-party convcore backend, used by ``tests/test_plugins.py``.

It registers one backend, ``example``, that implements only the ``conv`` op for
float64 NumPy arrays.  Importing this module is cheap (NumPy is imported by the
kernel loader) and leaves a trace so tests can prove whether it was imported:
when ``CONVCORE_EXAMPLE_PLUGIN_LOG`` names a file, a line is appended to it.

``CALLS`` records one entry per kernel call, so tests can see that the kernel ran.
"""

from __future__ import annotations

import os

from convcore import BackendSpec
from convcore.hookspecs import hookimpl

__version__ = "0.1.0"

CALLS: list[dict] = []

_log = os.environ.get("CONVCORE_EXAMPLE_PLUGIN_LOG")
if _log:
    with open(_log, "a", encoding="utf-8") as fh:
        fh.write("convcore_example_plugin imported\n")


def _load():
    from ._kernels import conv

    def counting_conv(xp, x, weight, bias, geom, groups):
        CALLS.append({"op": "conv", "shape": tuple(x.shape), "groups": groups})
        return conv(xp, x, weight, bias, geom, groups)

    return {"conv": counting_conv}


@hookimpl
def convcore_register_backends(register):
    register(
        BackendSpec(
            name="example",
            load=_load,
            ops=frozenset({"conv"}),
            dtypes=frozenset({"float64"}),
            namespaces=frozenset({"numpy"}),
            devices=frozenset({"cpu"}),
            priority=-10,
            version=__version__,
            description="example third-party backend (conv, float64, NumPy)",
        )
    )

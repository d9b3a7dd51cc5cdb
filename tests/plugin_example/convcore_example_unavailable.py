"""A convcore plugin whose backend can never run: its availability check fails.

Used by ``tests/test_plugins.py`` to check that such a backend is listed with its
reason and that selecting it raises ``BackendUnavailableError``.
"""

from __future__ import annotations

from convcore import BackendSpec
from convcore.hookspecs import hookimpl

REASON = "the example accelerator library is not installed"
LOADED: list[bool] = []


def _load():
    LOADED.append(True)
    raise AssertionError("load() of an unavailable backend must never be called")


@hookimpl
def convcore_register_backends(register):
    register(
        BackendSpec(
            name="example_unavailable",
            load=_load,
            ops=frozenset({"im2col", "col2im", "conv", "conv_backward"}),
            priority=1000,
            version="0.1.0",
            description="example backend whose library is missing",
            check_available=lambda: REASON,
        )
    )

"""``import convcore`` stays light: no accelerator library is imported behind the user's back."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("numba", "cupy", "torch", "jax")


def _clean_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVCORE_")}
    env["CONVCORE_CONFIG_DIR"] = str(tmp_path / "no-user-config")
    return env


def _run(code, tmp_path, *args):
    return subprocess.run(
        [sys.executable, *args, "-c", textwrap.dedent(code)],
        env=_clean_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_and_conv_do_not_import_heavy_libraries(tmp_path):
    # Importing convcore and running the numpy and array_api backends import no
    # accelerator library.  Listing availability may import cupy (only the driver can
    # say whether a GPU is there) but nothing else; ``auto`` may import numba (the fast
    # CPU backend it picks for NumPy arrays) but never torch or jax.
    code = f"""
        import sys
        import numpy as np
        import convcore

        heavy = {HEAVY!r}
        after_import = sorted(m for m in heavy if m in sys.modules)
        infos = convcore.available_backends()
        assert {{"numpy", "array_api"}} <= {{b.name for b in infos}}, infos
        after_listing = sorted(m for m in heavy if m in sys.modules and m != "cupy")
        x = np.arange(2 * 3 * 5 * 5, dtype=np.float64).reshape(2, 3, 5, 5)
        w = np.ones((4, 3, 3, 3))
        for name in ("numpy", "array_api"):
            y = convcore.conv2d(x, w, padding=1, backend=name)
            assert y.shape == (2, 4, 5, 5), y.shape
            assert float(y[0, 0, 2, 2]) == float(x[0, :, 1:4, 1:4].sum())
            dx, dw, db = convcore.conv2d_backward(np.ones_like(y), x, w, padding=1, backend=name)
            cols = convcore.im2col(x, 3, backend=name)
            convcore.col2im(cols, (5, 5), 3, backend=name)
        after_use = sorted(m for m in heavy if m in sys.modules and m != "cupy")
        convcore.conv2d(x, w, padding=1)
        after_auto = sorted(m for m in heavy if m in sys.modules and m not in ("numba", "cupy"))
        assert after_import == [], after_import
        assert after_listing == [], after_listing
        assert after_use == [], after_use
        assert after_auto == [], after_auto
        """
    proc = _run(code, tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_heavy_libraries_are_importable_here(tmp_path):
    # Guard for the test above: with at least one heavy library installed, the check
    # would see it if convcore imported it.
    installed = [m for m in HEAVY if importlib.util.find_spec(m) is not None]
    if not installed:
        pytest.skip("none of numba, cupy, torch, jax is installed")
    code = f"""
        import sys
        import {installed[0]}
        assert {installed[0]!r} in sys.modules
        """
    proc = _run(code, tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_python_dash_m_convcore_help(tmp_path):
    if importlib.util.find_spec("convcore.__main__") is None:
        pytest.skip("convcore has no command-line interface (convcore/__main__.py) yet")
    proc = subprocess.run(
        [sys.executable, "-m", "convcore", "--help"],
        env=_clean_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage" in proc.stdout.lower()

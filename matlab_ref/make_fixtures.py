"""Write the MATLAB-reference fixtures by running the ``.m`` files in GNU Octave.

Usage (from the repository root; needs ``octave-cli`` and SciPy)::

    python matlab_ref/make_fixtures.py            # rewrites matlab_ref/fixtures/*.mat
    python matlab_ref/make_fixtures.py --out DIR  # somewhere else

Every case in :data:`CASES` gets deterministic inputs (fixed random streams,
or for the seed's examples small integer patterns), which are written to a
temporary folder; ``run_cases.m`` then runs ``im2col_ref``,
``im2col_back_ref``, ``reshape_row_major``, ``forward_propagation`` and
``backward_propagation`` (and, for the pooling cases, ``max_pool_ref``,
``avg_pool_ref`` and their backward passes) on each and saves inputs and results as compressed
MATLAB v7 files, one per case.  ``tests/test_matlab.py`` checks every
convcore backend against them, and imports this module to run fresh random
cases through Octave live.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"


@dataclass(frozen=True)
class Case:
    """One fixture: shapes in MATLAB layout plus MATLAB-style options.

    ``stride`` is an int or ``(SY, SX)``; ``pad`` an int, ``(PY, PX)`` or
    ``(T, B, L, R)``.  ``is_conv=False`` makes ``im2col_ref`` /
    ``im2col_back_ref`` use pooling's ceil sizes; the forward and backward
    passes are convolutions either way.  ``pattern`` names a deterministic
    integer input pattern (the seed's examples) instead of random numbers.
    """

    id: str
    N: int
    C: int
    H: int
    W: int
    F: int
    kernel: tuple[int, int]
    stride: int | tuple[int, ...] = 1
    pad: int | tuple[int, ...] = 0
    is_conv: bool = True
    bias: bool = True
    pattern: str | None = None

    @property
    def pads(self) -> tuple[int, int, int, int]:
        """``(T, B, L, R)``."""
        p = (self.pad,) if isinstance(self.pad, int) else tuple(self.pad)
        if len(p) == 1:
            return (p[0],) * 4
        if len(p) == 2:
            return (p[0], p[0], p[1], p[1])
        return tuple(p)

    @property
    def strides(self) -> tuple[int, int]:
        s = (self.stride,) if isinstance(self.stride, int) else tuple(self.stride)
        return (s[0], s[-1])

    def out_size(self, is_conv: bool = True) -> tuple[int, int]:
        """``(H', W')``: floor for convolution, ceil for pooling."""
        t, b, left, r = self.pads
        sy, sx = self.strides
        kh, kw = self.kernel
        rnd = (lambda a, s: a // s) if is_conv else (lambda a, s: -(-a // s))
        return (rnd(self.H + t + b - kh, sy) + 1, rnd(self.W + left + r - kw, sx) + 1)


#: The seed's three examples, then varied cases.
CASES = [
    # The seed: 227x227x3 input, 96 11x11 filters, stride 4, pad 0 -> X_col is 363x3025.
    Case("seed_alexnet", 1, 3, 227, 227, 96, (11, 11), stride=4, pattern="alexnet"),
    # The seed's forward-graph example: 4x4x3 image, K=2, S=1, P=0, F=1.
    Case("seed_4x4x3_k2_f1", 1, 3, 4, 4, 1, (2, 2), pattern="counting"),
    # The seed's smaller example: X 3x3 convolved with W 2x2 (no bias).
    Case("seed_3x3_by_2x2", 1, 1, 3, 3, 1, (2, 2), bias=False, pattern="counting"),
    Case("basic_3x3", 2, 3, 5, 6, 4, (3, 3)),
    Case("rect_kernel_pad1", 2, 2, 6, 7, 3, (2, 4), pad=1),
    Case("stride2_floor", 2, 2, 8, 9, 2, (3, 3), stride=2),
    Case("stride3_floor", 2, 2, 7, 8, 2, (2, 3), stride=3),
    Case("stride3_pad2_floor", 1, 1, 10, 11, 2, (2, 4), stride=3, pad=2),
    Case("stride_yx", 1, 2, 7, 9, 2, (3, 2), stride=(2, 1), pad=1),
    Case("pad_yx", 2, 1, 5, 4, 2, (3, 2), pad=(2, 0)),
    Case("pad_tblr", 2, 2, 5, 6, 3, (3, 3), pad=(0, 2, 1, 3)),
    Case("pad_tblr_stride_yx", 1, 3, 6, 5, 2, (2, 3), stride=(1, 2), pad=(2, 1, 0, 1)),
    Case("pointwise_1x1", 2, 3, 4, 5, 4, (1, 1)),
    Case("pointwise_strided_padded", 1, 2, 5, 6, 3, (1, 1), stride=2, pad=1),
    Case("single_row", 2, 2, 1, 7, 3, (1, 3)),
    Case("single_row_padded", 1, 1, 1, 6, 2, (3, 2), stride=(1, 2), pad=1),
    Case("single_column", 1, 2, 6, 1, 2, (2, 1), stride=2),
    Case("n3_c1_f1", 3, 1, 5, 4, 1, (2, 2)),
    Case("kernel_equals_input", 1, 2, 3, 4, 2, (3, 4), bias=False),
    Case("kernel_taller_than_input", 1, 1, 2, 3, 2, (4, 3), pad=(1, 1, 0, 0)),
    Case("pad_ge_kernel", 1, 2, 4, 5, 3, (2, 2), pad=2),
    Case("stride_gt_kernel", 1, 1, 5, 7, 1, (2, 2), stride=3, pad=2),
    Case("f1_c4_stride2", 2, 4, 6, 5, 1, (3, 2), stride=2, pad=1),
    Case("c8_f5", 1, 8, 4, 6, 5, (2, 3), pad=(1, 0, 0, 1)),
    Case("tall_kernel", 2, 1, 9, 3, 2, (4, 1), stride=(2, 1), pad=(1, 1, 0, 0)),
    # Pooling geometry (is_conv = 0): ceil sizes, windows hanging over the edge.
    Case("pool_ceil", 1, 2, 5, 5, 1, (2, 2), stride=2, is_conv=False),
    Case("pool_ceil_rect", 2, 1, 7, 6, 2, (3, 2), stride=(2, 3), is_conv=False),
    Case("pool_ceil_padded", 1, 3, 6, 7, 2, (3, 3), stride=2, pad=1, is_conv=False),
    Case("pool_exact", 1, 1, 6, 6, 1, (2, 2), stride=2, is_conv=False),
    Case("pool_kernel_lt_stride", 1, 1, 5, 4, 1, (1, 1), stride=3, is_conv=False),
    Case("pool_single_row", 1, 2, 1, 5, 1, (1, 2), stride=2, is_conv=False),
    # Ties and zeros: small integers, padding; all-negative windows whose maximum is a padding 0.
    Case("pool_ties", 2, 2, 6, 7, 1, (3, 3), stride=2, pad=1, is_conv=False, pattern="ties"),
]


def _pattern(shape, coeffs, modulus):
    """``mod(sum_k coeffs[k] * i_k, modulus) - modulus // 2`` over 1-based indices."""
    grids = np.meshgrid(*(np.arange(1, n + 1) for n in shape), indexing="ij")
    total = sum(c * g for c, g in zip(coeffs, grids))
    return (total % modulus - modulus // 2).astype(np.float64)


def case_inputs(case: Case, index: int = 0) -> dict:
    """The input variables ``run_cases.m`` reads, as NumPy arrays in MATLAB layout."""
    kh, kw = case.kernel
    H, W, C, N, F = case.H, case.W, case.C, case.N, case.F
    ho_p, wo_p = case.out_size(case.is_conv)  # im2col_ref's windows
    ho, wo = case.out_size(True)  # the convolution's output
    L, K = ho_p * wo_p, kh * kw * C
    if case.pattern == "alexnet":
        # Small integers with a short period: exact in float32 and tiny once compressed.
        x = _pattern((H, W, C, N), (3, 7, 11, 1), 13)
        w = _pattern((kh, kw, C, F), (2, 5, 3, 7), 11)
        b = np.arange(1, F + 1, dtype=np.float64) % 5 - 2
        dcols = _pattern((L, K, N), (1, 2, 1), 9)
        dout = _pattern((ho, wo, F, N), (1, 3, 2, 1), 7)
    elif case.pattern == "counting":
        # 1, 2, 3, ... in MATLAB's column-major order, as one types it in MATLAB.
        def count(shape, scale=1.0):
            return (
                np.arange(1, np.prod(shape) + 1, dtype=np.float64).reshape(shape, order="F") * scale
            )

        x = count((H, W, C, N))
        if case.id == "seed_3x3_by_2x2":
            x = np.array([[1.0, 2, 3], [4, 5, 6], [7, 8, 9]]).reshape(3, 3, 1, 1)
        w = count((kh, kw, C, F), 0.1)
        b = np.ones(F)
        dcols = count((L, K, N), 0.01)
        dout = count((ho, wo, F, N), 0.5)
    else:
        rng = np.random.default_rng([20260, zlib.crc32(case.id.encode())])
        x = rng.standard_normal((H, W, C, N))
        w = rng.standard_normal((kh, kw, C, F))
        b = rng.standard_normal(F)
        dcols = rng.standard_normal((L, K, N))
        dout = rng.standard_normal((ho, wo, F, N))
        if case.pattern == "ties":  # -2, -1, 0 and 1: many equal maxima per window
            x = np.clip(np.floor(x), -2, 1)
    shapes = [(N * C, W, H), (H * W, C * N), (W, N, H, C)]
    pooling = {}
    if not case.is_conv:
        # the pooling passes' gradient, drawn last so that the other inputs stay as they were
        if case.pattern is None or case.pattern == "ties":
            dpool = rng.standard_normal((ho_p, wo_p, C, N))
        else:
            dpool = _pattern((ho_p, wo_p, C, N), (1, 2, 3, 1), 5)
        pooling["dpool"] = dpool
    return {
        "case_id": case.id,
        "x": x,
        "w": w,
        "b": b.reshape(F, 1) if case.bias else np.zeros((0, 0)),
        "stride": np.atleast_1d(np.asarray(case.stride, dtype=np.float64)),
        "pad": np.atleast_1d(np.asarray(case.pad, dtype=np.float64)),
        "is_conv": float(case.is_conv),
        "dcols": dcols,
        "dout": dout,
        "size_x": np.array([H, W, C, N], dtype=np.float64),
        "size_w": np.array([kh, kw, C, F], dtype=np.float64),
        "rrm_shape": np.array(shapes[index % len(shapes)], dtype=np.float64),
        # the (1-based) size of rrm_shape that reshape_row_major infers from []
        "rrm_infer": float((index // len(shapes)) % len(shapes[index % len(shapes)]) + 1),
        **pooling,
    }


def run_octave(in_dir: Path, out_dir: Path, octave: str = "octave-cli", timeout: float = 600):
    """Run ``run_cases(in_dir, out_dir)`` in Octave with this folder on the path."""

    def quote(path) -> str:  # an Octave string literal
        return "'" + str(path).replace("'", "''") + "'"

    script = f"addpath({quote(HERE)}); run_cases({quote(in_dir)}, {quote(out_dir)});"
    proc = subprocess.run(
        [octave, "--no-gui", "--norc", "--quiet", "--no-history", "--eval", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{octave} failed with exit status {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def write_cases(cases, in_dir: Path) -> None:
    """Write each case's inputs to ``in_dir/<id>.mat`` (MATLAB v5, for Octave to read)."""
    from scipy.io import savemat

    for i, case in enumerate(cases):
        savemat(in_dir / f"{case.id}.mat", case_inputs(case, i), do_compression=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=FIXTURES, help="output folder")
    parser.add_argument("--octave", default="octave-cli", help="Octave executable")
    args = parser.parse_args(argv)
    if shutil.which(args.octave) is None:
        print(f"{args.octave} not found on PATH; install GNU Octave", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.mat"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        write_cases(CASES, Path(tmp))
        run_octave(Path(tmp), args.out.resolve(), args.octave)
    from scipy.io import loadmat

    total = 0
    for case in CASES:
        path = args.out / f"{case.id}.mat"
        data = loadmat(path)
        total += path.stat().st_size
        print(f"{path.name:32s} {path.stat().st_size:8d} bytes  cols {data['cols'].shape}")
    print(f"{len(CASES)} fixtures, {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

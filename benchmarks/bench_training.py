"""Whole training steps: a small CNN on convcore's layers against the same model in PyTorch.

Two nets, float32, SGD with momentum, softmax cross-entropy:

* ``digits``: scikit-learn's bundled digits (1347 training images of 1x8x8 after
  the 75/25 split of ``examples/train_digits.py``; no download), batch 32:
  conv 1->8 3x3 pad 1, ReLU, max-pool 2, conv 8->16 3x3 pad 1, ReLU, max-pool 2,
  fully connected 64->10 (the network of ``examples/train_digits.py``);
* ``cifar``: ``--images`` random 3x32x32 images (CIFAR-10's shape; random labels,
  the time of a step does not depend on the values), batch 64: conv 3->32 3x3
  pad 1, ReLU, max-pool 2, conv 32->64 3x3 pad 1, ReLU, max-pool 2, fully
  connected 4096->10.

One epoch is a pass over the training images: for every batch the forward pass,
the loss and its gradient, the backward pass (no input gradient for the first
convolution, in both libraries) and the SGD update.  The convcore model is the
example's: :mod:`convcore.layers` for the convolutions and poolings, NumPy for
ReLU, the fully connected layer, the loss and SGD (``examples/train_digits.py``);
the torch model is ``torch.nn`` with the same initial weights and
``torch.optim.SGD``.  Before timing, one step of each from the same weights is
checked against the other (loss and updated weights).

Threads: torch runs ``--threads`` intra-op threads, the numba backend
``--threads`` worker threads, and NumPy's OpenBLAS (the example's fully
connected layer) ``--blas-threads`` (default 1).  With 2 BLAS threads on 2
cores, OpenBLAS's workers keep spinning for a while after every NumPy GEMM and
take the cores from the next convolution's workers: the cifar net's second
convolution's backward took 15.8 ms in the training loop against 10.7 ms with
one BLAS thread (docs/training.md).

The implementations (``--impls``: convcore on ``auto`` and on named backends,
and torch) run interleaved, one epoch each in turn, with a pause between them so
that the previous library's threads have gone to sleep (PERF_NOTES), after
``--warm`` untimed epochs each.  Printed: per net the median epoch time of
``--repeat`` epochs, the median of the per-round ratios to torch, and (for the
convcore rows) where the time of a step goes: each layer kind's forward and
backward, summed over the epoch.

Usage::

    python benchmarks/bench_training.py [--nets digits,cifar] [--impls auto,numpy,torch]
        [--repeat 7] [--warm 1] [--threads 2] [--blas-threads 1] [--images 1024]
        [--pause 0.2] [--limit N]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "examples"))

from _common import median, positive_int  # noqa: E402
from train_digits import (  # noqa: E402
    SGD,
    Dense,
    Flatten,
    ReLU,
    load_digits_split,
    softmax_cross_entropy,
)

import convcore  # noqa: E402

DTYPE = np.float32

#: ``name: (input shape without batch, (filters of conv 1, of conv 2), batch size)``
NETS = {
    "digits": ((1, 8, 8), (8, 16), 32),
    "cifar": ((3, 32, 32), (32, 64), 64),
}


def _data(net: str, args):
    """``(x, y)`` training images and labels of ``net``."""
    if net == "digits":
        x, y, _, _ = load_digits_split(0, limit=args.limit)
        return x, y
    rng = np.random.default_rng(0)
    shape, _, _ = NETS[net]
    n = args.limit or args.images
    return rng.standard_normal((n, *shape), dtype=DTYPE), rng.integers(0, 10, n)


def build_convcore(net: str, backend: str | None, seed: int = 0) -> list:
    """The convcore model of ``net``: convcore layers plus the example's NumPy layers."""
    (c, h, _), (f1, f2), _ = NETS[net]
    rng = np.random.default_rng(seed)
    conv = {"padding": 1, "init": "he", "rng": rng, "dtype": DTYPE, "backend": backend}
    return [
        convcore.Conv2D.create(c, f1, 3, needs_input_grad=False, **conv),
        ReLU(),
        convcore.MaxPool2D(2, backend=backend),
        convcore.Conv2D.create(f1, f2, 3, **conv),
        ReLU(),
        convcore.MaxPool2D(2, backend=backend),
        Flatten(),
        Dense(f2 * (h // 4) ** 2, 10, rng),
    ]


def build_torch(torch, model: list):
    """The same network in ``torch.nn``, with the weights of the convcore ``model``."""
    nn = torch.nn
    conv1, conv2, dense = model[0], model[3], model[7]
    layers = [
        nn.Conv2d(conv1.weight.shape[1], conv1.weight.shape[0], 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(conv2.weight.shape[1], conv2.weight.shape[0], 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(*dense.weight.shape),
    ]
    with torch.no_grad():
        for mine, theirs in ((conv1, layers[0]), (conv2, layers[3])):
            theirs.weight.copy_(torch.from_numpy(mine.weight))
            theirs.bias.copy_(torch.from_numpy(mine.bias))
        layers[7].weight.copy_(torch.from_numpy(dense.weight.T.copy()))
        layers[7].bias.copy_(torch.from_numpy(dense.bias))
    return nn.Sequential(*layers)


class ConvcoreTrainer:
    """One convcore model and its optimizer; :meth:`step` trains on one batch."""

    def __init__(self, net: str, backend: str | None, lr: float, momentum: float):
        self.model = build_convcore(net, backend)
        self.opt = SGD(lr, momentum)
        self.spent: dict[str, float] = {}  # "<layer kind> fwd/bwd": seconds
        self.timed = False

    def _run(self, layer, method, arg):
        if not self.timed:
            return getattr(layer, method)(arg)
        start = time.perf_counter()
        out = getattr(layer, method)(arg)
        key = f"{type(layer).__name__} {'fwd' if method == 'forward' else 'bwd'}"
        self.spent[key] = self.spent.get(key, 0.0) + time.perf_counter() - start
        return out

    def step(self, x, y) -> float:
        for layer in self.model:
            x = self._run(layer, "forward", x)
        start = time.perf_counter()
        loss, grad = softmax_cross_entropy(x, y)
        loss_time = time.perf_counter() - start
        for layer in reversed(self.model):
            out = self._run(layer, "backward", grad)
            grad = out[0] if isinstance(out, tuple) else out
            if grad is None:
                break
        start = time.perf_counter()
        self.opt.step(self.model)
        if self.timed:
            self.spent["loss"] = self.spent.get("loss", 0.0) + loss_time
            self.spent["SGD"] = self.spent.get("SGD", 0.0) + time.perf_counter() - start
        return loss


class TorchTrainer:
    """The torch model of a convcore model, with ``torch.optim.SGD``."""

    def __init__(self, torch, model: list, lr: float, momentum: float):
        self.torch = torch
        self.model = build_torch(torch, model)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=momentum)

    def step(self, x, y) -> float:
        torch = self.torch
        self.opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(self.model(x), y)
        loss.backward()
        self.opt.step()
        return float(loss.detach())


def _epoch(trainer, batches) -> float:
    start = time.perf_counter()
    for xb, yb in batches:
        trainer.step(xb, yb)
    return time.perf_counter() - start


def _check(torch, net: str, x, y, lr: float, momentum: float) -> None:
    """One step from the same weights: convcore's loss and weights match torch's."""
    mine = ConvcoreTrainer(net, None, lr, momentum)
    theirs = TorchTrainer(torch, mine.model, lr, momentum)
    loss_a = mine.step(x, y)
    loss_b = theirs.step(torch.from_numpy(x), torch.from_numpy(y))
    if abs(loss_a - loss_b) > 1e-4 * max(1.0, abs(loss_b)):
        sys.exit(f"{net}: convcore's loss {loss_a} differs from torch's {loss_b}")
    conv = theirs.model[0].weight.detach().numpy()
    err = float(np.abs(mine.model[0].weight - conv).max()) / max(1e-6, float(np.abs(conv).max()))
    if err > 1e-4:
        sys.exit(f"{net}: the first convolution's updated weights differ from torch's by {err:.1e}")


def run_net(torch, net: str, args, out=print) -> dict[str, list[float]]:
    """Interleaved epochs of every implementation of ``net``; returns seconds per epoch."""
    x, y = _data(net, args)
    batch = NETS[net][2]
    lr, momentum = 0.05, 0.9
    if torch is not None:
        _check(torch, net, x[:batch], y[:batch], lr, momentum)
    trainers, batches = {}, {}
    np_batches = [(x[i : i + batch], y[i : i + batch]) for i in range(0, len(y), batch)]
    for impl in args.impls:
        if impl == "torch":
            # The reference model's weights come from a convcore model of the same seed.
            trainers[impl] = TorchTrainer(torch, build_convcore(net, None), lr, momentum)
            batches[impl] = [(torch.from_numpy(a), torch.from_numpy(b)) for a, b in np_batches]
        else:
            trainers[impl] = ConvcoreTrainer(net, None if impl == "auto" else impl, lr, momentum)
            batches[impl] = np_batches
    for impl, trainer in trainers.items():
        for _ in range(args.warm):
            _epoch(trainer, batches[impl])
    times: dict[str, list[float]] = {impl: [] for impl in trainers}
    for _ in range(args.repeat):
        for impl, trainer in trainers.items():
            time.sleep(args.pause)
            times[impl].append(_epoch(trainer, batches[impl]))
    # Where the time goes: one more epoch per convcore model with every layer timed.
    for impl, trainer in trainers.items():
        if isinstance(trainer, ConvcoreTrainer):
            time.sleep(args.pause)
            trainer.timed = True
            _epoch(trainer, batches[impl])
            trainer.timed = False

    steps = len(np_batches)
    shape = "x".join(map(str, NETS[net][0]))
    out(f"\n{net}: {len(y)} images of {shape}, batch {batch}, {steps} steps per epoch")
    ref = times.get("torch")
    out(f"{'implementation':16s} {'epoch ms':>9s} {'step ms':>8s} {'/ torch':>8s}")
    for impl, mine in times.items():
        ratio = "" if ref is None else f"{median([a / b for a, b in zip(mine, ref)]):8.2f}"
        name = impl if impl == "torch" else f"convcore {impl}"
        out(f"{name:16s} {1e3 * median(mine):9.1f} {1e3 * median(mine) / steps:8.3f} {ratio}")
    for impl, trainer in trainers.items():
        if isinstance(trainer, ConvcoreTrainer):
            total = sum(trainer.spent.values())
            parts = sorted(trainer.spent.items(), key=lambda kv: -kv[1])
            shown = ", ".join(f"{k} {1e3 * v:.1f}" for k, v in parts)
            out(f"  convcore {impl}, ms per epoch (timed epoch, {1e3 * total:.1f} in all): {shown}")
    return times


def _impls(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    known = {"auto", "torch", *(b.name for b in convcore.available_backends())}
    for name in names:
        if name not in known:
            raise argparse.ArgumentTypeError(
                f"unknown implementation {name!r}; expected 'auto', 'torch' or a backend "
                f"({', '.join(sorted(known - {'auto', 'torch'}))})"
            )
    if not names:
        raise argparse.ArgumentTypeError("expected at least one implementation")
    return names


def _nets(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    bad = [n for n in names if n not in NETS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown net {bad[0] if bad else text!r}; expected some of {', '.join(NETS)}"
        )
    return names


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", type=_nets, default=list(NETS))
    parser.add_argument("--impls", type=_impls, default=["auto", "numpy", "torch"])
    parser.add_argument("--repeat", type=positive_int, default=7)
    parser.add_argument("--warm", type=int, default=1)
    parser.add_argument("--threads", type=positive_int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--blas-threads", type=positive_int, default=1, help="NumPy's BLAS threads (not torch's)"
    )
    parser.add_argument("--images", type=positive_int, default=1024, help="cifar net's images")
    parser.add_argument("--limit", type=positive_int, default=None, help="use only N images")
    parser.add_argument("--pause", type=float, default=0.2)
    args = parser.parse_args(argv)
    torch = None
    if "torch" in args.impls:
        try:
            import torch
        except ImportError:
            parser.error("--impls torch needs PyTorch (pip install torch); leave torch out")
        torch.set_num_threads(args.threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.blas_threads, user_api="blas")  # NumPy's OpenBLAS, not torch's
    try:
        import numba

        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        numba_info = f"numba {numba.__version__} ({numba.get_num_threads()} threads)"
    except ImportError:
        numba_info = "no numba"
    probe = np.zeros((1, 1, 3, 3), dtype=DTYPE)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    torch_info = "" if torch is None else f"torch {torch.__version__} ({args.threads} threads), "
    numba_info += f", NumPy's BLAS {args.blas_threads} thread(s)"
    print(f"date: {datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, load average before: {load}")
    print(f"versions: convcore {convcore.__version__}, {torch_info}{numba_info}")
    print(f"command: python benchmarks/bench_training.py {' '.join(argv or sys.argv[1:])}")
    print(
        f"auto runs conv on {convcore.resolve_backend('conv', probe)} and max-pooling on "
        f"{convcore.resolve_backend('max_pool', probe)}; median of {args.repeat} interleaved "
        f"epochs after {args.warm} warm-up epoch(s); ratios are medians of per-round ratios"
    )
    for net in args.nets:
        run_net(torch, net, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

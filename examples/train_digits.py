"""Train a small CNN on scikit-learn's digits with convcore's layers and plain NumPy.

The network: conv 8 3x3 pad 1 -> ReLU -> max-pool 2 -> conv 16 3x3 pad 1 -> ReLU
-> max-pool 2 -> fully connected 64 -> 10 -> softmax cross-entropy.  The
convolutions and poolings are :mod:`convcore.layers`; ReLU, the fully connected
layer, the loss and SGD with momentum are written here in NumPy.  Every layer has
``forward``, ``backward``, ``parameters()`` and ``gradients()``, so the SGD step is
one loop over the layers.

The data is ``sklearn.datasets.load_digits`` (1797 8x8 images of 0-9, shipped
with scikit-learn: no download), split 75/25 (stratified) into training and
test sets, pixels scaled to [0, 1], float32 throughout.

Run::

    python examples/train_digits.py --epochs 10 --plot docs/img/train_digits.png

Importable: :func:`main` takes ``argv``; :func:`load_digits_split`,
:func:`build_model`, :func:`train` and :func:`plot_history` are the pieces.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

import convcore

DTYPE = np.float32


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------
def load_digits_split(seed: int = 0, test_size: float = 0.25, limit: int | None = None):
    """``(x_train, y_train, x_test, y_test)``: images ``(N, 1, 8, 8)`` float32 in [0, 1].

    ``limit`` keeps only the first ``limit`` images (after a seeded shuffle) before
    the split, for quick runs.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(DTYPE)[:, None]  # N, C=1, H, W
    y = digits.target.astype(np.int64)
    if limit is not None:
        keep = np.random.default_rng(seed).permutation(len(y))[:limit]
        x, y = x[keep], y[keep]
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    return x_tr, y_tr, x_te, y_te


# ---------------------------------------------------------------------------
# the layers written in NumPy
# ---------------------------------------------------------------------------
class ReLU:
    """``max(x, 0)``; backward passes the gradient where the input was positive."""

    def __init__(self):
        self.mask = None

    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, grad_out):
        return grad_out * self.mask

    def parameters(self):
        return {}

    def gradients(self):
        return {}


class Flatten:
    """``(N, ...)`` -> ``(N, prod(...))``."""

    def __init__(self):
        self.shape = None

    def forward(self, x):
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out):
        return grad_out.reshape(self.shape)

    def parameters(self):
        return {}

    def gradients(self):
        return {}


class Dense:
    """Fully connected ``x @ weight + bias``; PyTorch's uniform initialisation."""

    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator):
        bound = 1 / np.sqrt(n_in)
        self.weight = rng.uniform(-bound, bound, (n_in, n_out)).astype(DTYPE)
        self.bias = rng.uniform(-bound, bound, n_out).astype(DTYPE)
        self.input = None
        self.grad_weight = self.grad_bias = None

    def forward(self, x):
        self.input = x
        return x @ self.weight + self.bias

    def backward(self, grad_out):
        self.grad_weight = self.input.T @ grad_out
        self.grad_bias = grad_out.sum(axis=0)
        return grad_out @ self.weight.T

    def parameters(self):
        return {"weight": self.weight, "bias": self.bias}

    def gradients(self):
        return {"weight": self.grad_weight, "bias": self.grad_bias}


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of ``softmax(logits)`` and its gradient with respect to ``logits``."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = logits.shape[0]
    loss = -log_p[np.arange(n), labels].mean()
    grad = np.exp(log_p)
    grad[np.arange(n), labels] -= 1
    return float(loss), (grad / n).astype(logits.dtype)


# ---------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------
def build_model(seed: int = 0, backend: str | None = None) -> list:
    """The layers, in order; convolutions He-initialised from ``seed``."""
    rng = np.random.default_rng(seed)
    conv = {"padding": 1, "init": "he", "rng": rng, "dtype": DTYPE, "backend": backend}
    return [
        # The first layer's input is data: no dx (no col2im) in its backward pass.
        convcore.Conv2D.create(1, 8, 3, needs_input_grad=False, **conv),
        ReLU(),
        convcore.MaxPool2D(2, backend=backend),
        convcore.Conv2D.create(8, 16, 3, **conv),
        ReLU(),
        convcore.MaxPool2D(2, backend=backend),
        Flatten(),
        Dense(16 * 2 * 2, 10, rng),
    ]


def forward(model, x):
    for layer in model:
        x = layer.forward(x)
    return x


def backward(model, grad):
    """Back through every layer; the convolutions return ``(dx, dw, db)``, the others ``dx``."""
    for layer in reversed(model):
        out = layer.backward(grad)
        grad = out[0] if isinstance(out, tuple) else out
        if grad is None:  # a first layer without input gradient
            break


def predict(model, x, batch_size: int = 256):
    return np.concatenate(
        [forward(model, x[i : i + batch_size]).argmax(axis=1) for i in range(0, len(x), batch_size)]
    )


def accuracy(model, x, y) -> float:
    return float((predict(model, x) == y).mean())


@dataclass
class SGD:
    """SGD with (heavy-ball) momentum: ``v = momentum * v - lr * g; p += v``, in place."""

    lr: float = 0.05
    momentum: float = 0.9
    velocity: dict = field(default_factory=dict)

    def step(self, model):
        for i, layer in enumerate(model):
            grads = layer.gradients()
            for name, p in layer.parameters().items():
                step = -self.lr * grads[name]
                v = self.velocity.get((i, name))
                v = step if v is None else self.momentum * v + step
                self.velocity[(i, name)] = v
                p += v


@dataclass
class History:
    loss: list = field(default_factory=list)  # mean training loss per epoch
    batch_loss: list = field(default_factory=list)  # every batch
    train_accuracy: list = field(default_factory=list)
    test_accuracy: list = field(default_factory=list)
    seconds: list = field(default_factory=list)  # training time per epoch


def train(
    data,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 0.05,
    momentum: float = 0.9,
    seed: int = 0,
    backend: str | None = None,
    log: Callable[[str], None] | None = print,
):
    """Train :func:`build_model` on ``data`` (from :func:`load_digits_split`).

    Returns ``(model, history)``.  The batches are drawn from ``seed`` too, so a
    run is reproducible (on one backend; backends may round differently).
    """
    model = build_model(seed, backend)
    opt = SGD(lr, momentum)
    rng = np.random.default_rng([seed, 1])
    hist = History()
    # The numba backend runs the convolutions and poolings on its own threads; the
    # NumPy layers' small GEMMs need no BLAS threads, whose spinning after each call
    # would take the cores from the next convolution (docs/training.md).
    with threadpool_limits(1, user_api="blas"):
        _epochs(model, opt, rng, hist, data, epochs, batch_size, log)
    return model, hist


def _epochs(model, opt, rng, hist, data, epochs, batch_size, log) -> None:
    x_tr, y_tr, x_te, y_te = data
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        order = rng.permutation(len(y_tr))
        losses = []
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            loss, grad = softmax_cross_entropy(forward(model, x_tr[idx]), y_tr[idx])
            backward(model, grad)
            opt.step(model)
            losses.append(loss)
        hist.seconds.append(time.perf_counter() - start)
        hist.batch_loss += losses
        hist.loss.append(float(np.mean(losses)))
        hist.train_accuracy.append(accuracy(model, x_tr, y_tr))
        hist.test_accuracy.append(accuracy(model, x_te, y_te))
        if log is not None:
            log(
                f"epoch {epoch:2d}  loss {hist.loss[-1]:.4f}  "
                f"train acc {hist.train_accuracy[-1]:.4f}  test acc {hist.test_accuracy[-1]:.4f}  "
                f"time {hist.seconds[-1]:.2f} s"
            )


def plot_history(hist: History, path: str, title: str = "") -> None:
    """Write the loss curve (every batch and the epoch means) and the test accuracy as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    per_epoch = len(hist.batch_loss) / len(hist.loss)
    steps = np.arange(1, len(hist.batch_loss) + 1) / per_epoch
    ax.plot(steps, hist.batch_loss, lw=0.6, alpha=0.5, label="training loss (batch)")
    epochs = np.arange(1, len(hist.loss) + 1)
    ax.plot(epochs, hist.loss, "o-", label="training loss (epoch mean)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.set_yscale("log")
    acc = ax.twinx()
    acc.plot(epochs, hist.test_accuracy, "s--", color="C2", label="test accuracy")
    acc.set_ylabel("test accuracy")
    acc.set_ylim(0.5, 1.0)
    lines = ax.get_legend_handles_labels()
    more = acc.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="lower left")
    if title:
        ax.set_title(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default=None, help="convcore backend (default: auto)")
    parser.add_argument("--limit", type=int, default=None, help="use only this many images")
    parser.add_argument("--plot", metavar="PATH", help="write the loss curve as a PNG")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or not args.lr > 0:
        parser.error("--epochs and --batch-size must be positive integers, --lr positive")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib (pip install matplotlib)")

    data = load_digits_split(args.seed, limit=args.limit)
    backend = args.backend or convcore.resolve_backend("conv_backward", data[0][:1])
    print(
        f"digits: {len(data[1])} training and {len(data[3])} test images; backend {backend}; "
        f"{args.epochs} epochs, batch {args.batch_size}, lr {args.lr}, "
        f"momentum {args.momentum}, seed {args.seed}"
    )
    _, hist = train(
        data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        seed=args.seed,
        backend=args.backend,
    )
    print(
        f"final test accuracy {hist.test_accuracy[-1]:.4f}; "
        f"median epoch time {np.median(hist.seconds):.2f} s"
    )
    if args.plot:
        plot_history(hist, args.plot, title=f"digits CNN on convcore ({backend})")
        print(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the layer classes (Conv2D, ConvTranspose2D, MaxPool2D, AvgPool2D) share."""

from __future__ import annotations

from typing import Any


class _Layer:
    """A layer that keeps its keyword options as attributes and caches what
    :meth:`backward` needs from the last :meth:`forward` call.

    Subclasses name the attributes passed as keywords to their functions in
    ``_option_names``.
    """

    _option_names: tuple[str, ...] = ()

    def _options(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._option_names}

    def _cached(self, value, what: str):
        """``value`` cached by :meth:`forward`, or a RuntimeError naming what is missing."""
        if value is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward() called before forward(): no {what} is cached"
            )
        return value

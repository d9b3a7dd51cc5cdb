"""convcore: convolution as matrix multiplication (im2col + GEMM + col2im) on any array library.

The public functions validate their arguments, infer the array namespace of
their inputs and hand the work to a backend chosen by the ``backend=`` keyword,
:func:`use_backend`, :func:`set_backend`, ``CONVCORE_BACKEND``, a configuration
file, or ``auto``.  Importing convcore imports no backend library (no numba,
cupy or torch).
"""

from ._api import (
    col2im,
    conv,
    conv1d,
    conv1d_backward,
    conv2d,
    conv2d_backward,
    conv3d,
    conv3d_backward,
    conv_backward,
    im2col,
    reshape_gemm_output,
)
from ._config import get_backend, set_backend, use_backend
from ._dispatch import resolve_backend
from ._registry import BackendInfo, BackendSpec, available_backends, register_backend
from ._version import __version__
from .errors import (
    BackendCapabilityError,
    BackendUnavailableError,
    ConvcoreError,
    UnknownBackendError,
)
from .geometry import ConvGeometry, conv_geometry, conv_output_size
from .layers import Conv2D
from .pooling import (
    AvgPool2D,
    MaxPool2D,
    avg_pool2d,
    avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
    pool_output_size,
)
from .transpose import (
    ConvTranspose2D,
    conv_transpose2d,
    conv_transpose2d_backward,
    conv_transpose_output_size,
)

__all__ = [
    "AvgPool2D",
    "BackendCapabilityError",
    "BackendInfo",
    "BackendSpec",
    "BackendUnavailableError",
    "Conv2D",
    "ConvTranspose2D",
    "ConvGeometry",
    "ConvcoreError",
    "MaxPool2D",
    "UnknownBackendError",
    "__version__",
    "available_backends",
    "avg_pool2d",
    "avg_pool2d_backward",
    "col2im",
    "conv",
    "conv1d",
    "conv1d_backward",
    "conv2d",
    "conv2d_backward",
    "conv3d",
    "conv3d_backward",
    "conv_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "conv_transpose_output_size",
    "conv_geometry",
    "conv_output_size",
    "get_backend",
    "im2col",
    "max_pool2d",
    "max_pool2d_backward",
    "pool_output_size",
    "register_backend",
    "reshape_gemm_output",
    "resolve_backend",
    "set_backend",
    "use_backend",
]

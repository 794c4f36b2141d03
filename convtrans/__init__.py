"""convtrans: Keras's ``Conv1DTranspose`` for JAX, exact and fast.

The pure function, the config and the Keras objects load with the package; the flax modules,
the optax transformation and the interop, streaming and nnx modules load on first use, so
``import convtrans`` imports neither flax nor optax.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from convtrans import activations, constraints, initializers, regularizers
from convtrans._src.api import (
    IMPLEMENTATIONS,
    conv1d,
    conv1d_transpose,
    default_implementation,
    explain,
    output_length,
    plan,
    transpose_pads,
)
from convtrans._src.autotune import autotune, autotune_enabled
from convtrans._src.config import Conv1DConfig, Conv1DTransposeConfig
from convtrans._src.plan import Plan
from convtrans._src.version import __version__ as __version__

# name -> module that defines it, imported when the name is first used (PEP 562).
_LAZY_ATTRIBUTES = {
    "Conv1D": "convtrans.linen",
    "Conv1DTranspose": "convtrans.linen",
    "Pad1D": "convtrans.linen",
    "Parallel": "convtrans.linen",
    "Residual": "convtrans.linen",
    "Constrained": "convtrans.optim",
    "apply_constraints": "convtrans.optim",
    "keras_constraints": "convtrans.optim",
    "with_constraint": "convtrans.optim",
}
_LAZY_MODULES = ("interop", "linen", "nnx", "optim", "streaming", "tune")

if TYPE_CHECKING:  # pragma: no cover
    from convtrans import interop, linen, nnx, optim, streaming, tune
    from convtrans.linen import Conv1D, Conv1DTranspose, Pad1D, Parallel, Residual
    from convtrans.optim import Constrained, apply_constraints, keras_constraints, with_constraint


def __getattr__(name: str) -> Any:
    if name in _LAZY_ATTRIBUTES:
        value = getattr(importlib.import_module(_LAZY_ATTRIBUTES[name]), name)
    elif name in _LAZY_MODULES:
        value = importlib.import_module(f"convtrans.{name}")
    else:
        raise AttributeError(f"module 'convtrans' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "IMPLEMENTATIONS",
    "Constrained",
    "Conv1D",
    "Conv1DConfig",
    "Conv1DTranspose",
    "Conv1DTransposeConfig",
    "Pad1D",
    "Parallel",
    "Plan",
    "Residual",
    "activations",
    "apply_constraints",
    "autotune",
    "autotune_enabled",
    "constraints",
    "conv1d",
    "conv1d_transpose",
    "default_implementation",
    "explain",
    "initializers",
    "interop",
    "keras_constraints",
    "linen",
    "nnx",
    "optim",
    "output_length",
    "plan",
    "regularizers",
    "streaming",
    "transpose_pads",
    "tune",
    "with_constraint",
]

"""convtrans: Keras's ``Conv1DTranspose`` for JAX, exact and fast."""

from convtrans import activations, constraints, initializers, regularizers
from convtrans import interop, nnx, streaming
from convtrans.config import Conv1DTransposeConfig
from convtrans.geometry import output_length, transpose_pads
from convtrans.linen import Conv1DTranspose
from convtrans.ops import IMPLEMENTATIONS, conv1d_transpose, default_implementation
from convtrans.optim import Constrained, apply_constraints, keras_constraints, with_constraint

__version__ = "0.1.0"

__all__ = [
    "Constrained",
    "Conv1DTranspose",
    "Conv1DTransposeConfig",
    "IMPLEMENTATIONS",
    "activations",
    "apply_constraints",
    "constraints",
    "conv1d_transpose",
    "default_implementation",
    "initializers",
    "interop",
    "keras_constraints",
    "nnx",
    "output_length",
    "regularizers",
    "streaming",
    "transpose_pads",
    "with_constraint",
]

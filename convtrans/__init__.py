"""convtrans: Keras's ``Conv1DTranspose`` for JAX, exact and fast."""

from convtrans import activations, constraints, initializers, regularizers
from convtrans.config import Conv1DTransposeConfig
from convtrans.geometry import output_length, transpose_pads
from convtrans.ops import IMPLEMENTATIONS, conv1d_transpose, default_implementation

__version__ = "0.1.0"

__all__ = [
    "Conv1DTransposeConfig",
    "IMPLEMENTATIONS",
    "activations",
    "constraints",
    "conv1d_transpose",
    "default_implementation",
    "initializers",
    "output_length",
    "regularizers",
    "transpose_pads",
]

"""Keras weight constraints: projections applied to a weight right after each optimizer update.

With ``norm = sqrt(sum(w ** 2, axis, keepdims=True))`` and ``eps = 1e-7`` (Keras's epsilon):

- ``MaxNorm(max_value=2, axis=0)``: ``w * (clip(norm, 0, max_value) / (eps + norm))``
- ``UnitNorm(axis=0)``: ``w / (eps + norm)``
- ``MinMaxNorm(min_value=0, max_value=1, rate=1, axis=0)``:
  ``w * ((rate * clip(norm, min_value, max_value) + (1 - rate) * norm) / (eps + norm))``
- ``NonNeg()``: ``max(w, 0)``

For the ``(kernel_size, filters, in_channels)`` kernel, ``axis=0`` normalizes each
(filter, input channel) pair over its taps. The arithmetic follows Keras's order of operations so
that results agree to the last bit.
"""

from convtrans._src.keras.constraints import (
    EPSILON,
    Constraint,
    MaxNorm,
    MinMaxNorm,
    NonNeg,
    UnitNorm,
    get,
)

__all__ = [
    "EPSILON",
    "Constraint",
    "MaxNorm",
    "MinMaxNorm",
    "NonNeg",
    "UnitNorm",
    "get",
]

"""Weight normalization (Salimans and Kingma, 2016) as PyTorch's ``weight_norm`` computes it.

A kernel ``v`` of Keras layout ``(k, a, c)`` and a scale ``g`` of shape ``(c,)`` give the kernel
``w = g * v / ||v||``, the norm taken over the first two axes for each index of the last. For
Keras's ``Conv1D`` kernel ``(k, in // groups, filters)`` that is one scale per filter; for
``Conv1DTranspose``'s ``(k, filters // groups, in_channels)`` one per input channel. Both are
PyTorch's default (``dim=0`` of its weights ``(out, in // groups, k)`` and ``(in, out // groups,
k)``), so a torch checkpoint's ``weight_g`` is the scale as it is.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

AXES = (0, 1)


def direction_norm(v: jax.Array) -> jax.Array:
    """``||v||`` over the kernel's first two axes: shape ``(c,)``."""
    return jnp.sqrt(jnp.sum(jnp.square(v), axis=AXES))


def kernel(v: jax.Array, g: jax.Array) -> jax.Array:
    """``g * v / ||v||`` (no epsilon, as PyTorch: a zero direction gives NaN)."""
    return v * (g / direction_norm(v))

"""The reference formulation of the transposed convolution: a convolution of the dilated input.

It is what Keras 3's JAX backend, flax and equinox compute, and what every other form in
convtrans is checked against. Its forward pass multiplies ``s - 1`` of every ``s`` inputs that
are inserted zeros, and XLA:CPU runs its weight gradient as a slow window-reversed convolution;
its input gradient, however, is ONE strided convolution over the cotangent, which is why
:mod:`convtrans._src.kernels.polyphase` may take that part from here.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from convtrans._src.config import Conv1DTransposeConfig
from convtrans._src.geometry import transpose_pads
from convtrans._src.kernels.layout import conv_kernel_to_wio, dimension_numbers


def lhs_dilation_conv(
    x: jax.Array, kernel: jax.Array, config: Conv1DTransposeConfig, precision: Any = None
) -> jax.Array:
    """The reference: a stride-1 convolution of the s-dilated input with the flipped kernel.

    ``conv_general_dilated(x, flip(kernel), padding=[(left, right)], lhs_dilation=s,
    rhs_dilation=d)`` with Keras's pads (see :func:`convtrans._src.geometry.transpose_pads`); this is
    bit-for-bit what Keras 3's JAX backend computes. Negative pads (PyTorch-style padding) are
    applied as a crop after the convolution.
    """
    left, right = transpose_pads(config)
    rhs = jnp.flip(conv_kernel_to_wio(kernel, config.groups), axis=0)
    y = lax.conv_general_dilated(
        x,
        rhs,
        window_strides=(1,),
        padding=[(max(left, 0), max(right, 0))],
        lhs_dilation=(config.strides,),
        rhs_dilation=(config.dilation_rate,),
        dimension_numbers=dimension_numbers(config),
        feature_group_count=config.groups,
        precision=precision,
    )
    steps = y.shape[config.time_axis]
    return lax.slice_in_dim(y, max(-left, 0), steps - max(-right, 0), axis=config.time_axis % 3)

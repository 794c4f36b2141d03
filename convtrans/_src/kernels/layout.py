"""Array layouts shared by the kernel functions: dimension numbers, the grouped kernel, and taps
placed on the block grid of the polyphase and GEMM forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from convtrans._src.config import Conv1DTransposeConfig, LayerConfig
from convtrans._src.geometry import kernel_blocks


def dimension_numbers(config: LayerConfig) -> tuple[str, str, str]:
    """``lax.conv_general_dilated`` dimension numbers for ``config``'s data format (WIO kernels)."""
    layout = "NWC" if config.data_format == "channels_last" else "NCW"
    return (layout, "WIO", layout)


def grouped_kernel(kernel: jax.Array, groups: int) -> jax.Array:
    """Keras's ``(k, filters // groups, in_channels)`` kernel as ``(k, in/groups, groups, filters/groups)``.

    Input channel ``c`` of group ``g = c // (in/groups)`` feeds output channels
    ``g * (filters/groups) + o``, which is how ``feature_group_count`` lays out its groups.
    """
    k, filters_per_group, in_channels = kernel.shape
    grouped = kernel.reshape(k, filters_per_group, groups, in_channels // groups)
    return grouped.transpose(0, 3, 2, 1)


def conv_kernel_to_wio(kernel: jax.Array, groups: int) -> jax.Array:
    """The ``(k, in/groups, filters)`` (WIO) kernel of the equivalent grouped convolution, taps
    not flipped (see :func:`grouped_kernel` for the channel order)."""
    grouped = grouped_kernel(kernel, groups)
    k, in_per_group, _, filters_per_group = grouped.shape
    return grouped.reshape(k, in_per_group, groups * filters_per_group)


def taps_on_block_grid(a: jax.Array, axis: int, config: Conv1DTransposeConfig) -> jax.Array:
    """``a`` with its ``k``-long tap axis spread over ``kernel_blocks(config) * s`` rows.

    Tap ``j`` lands on row ``j * d``, zeros everywhere else, so that splitting the axis into
    ``(kernel_blocks, s)`` gives each tap's block ``j * d // s`` and phase ``j * d % s``.
    """
    pads = [(0, 0, 0)] * a.ndim
    pads[axis] = (0, kernel_blocks(config) * config.strides - config.effective_kernel_size, config.dilation_rate - 1)
    return lax.pad(a, jnp.zeros((), a.dtype), pads)


def pad_time(a: jax.Array, config: Conv1DTransposeConfig, left: int, right: int) -> jax.Array:
    """``a`` (rank 3, ``config``'s layout) padded with zeros (negative: cropped) along time."""
    pads = [(0, 0, 0)] * 3
    pads[config.time_axis % 3] = (left, right, 0)
    return lax.pad(a, jnp.zeros((), a.dtype), pads)

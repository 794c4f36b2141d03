"""The transposed convolution as ONE matrix product followed by an overlap-add.

Why: in the scatter view of a transposed convolution every input step ``i`` multiplies every tap
``j`` and the product lands at position ``i * s + j * d`` of the full result. Computing all the
products first is a single GEMM, ``Z[b, i, j, :] = x[b, i, :] @ W[j]^T`` (``(batch * n, in)``
by ``(in, k * filters)``), and what is left is placing and summing them, which moves data but does
no multiplications. Differentiated, this is three GEMMs over the longest dimension
(``batch * n``). Where the dispatch plan uses it (:mod:`convtrans._src.dispatch`) is decided
there.

Placing (``n`` input steps, ``k`` taps, stride ``s``, dilation ``d``, ``ke = (k - 1) * d + 1``,
``c = full_result_offset(config)``, output step ``t`` is full position ``t + c``):

* ``s = 1``: tap ``j`` of row ``i`` is at ``i + j * d``; the result is the sum over ``j`` of
  ``Z[:, :, j]`` shifted by ``j * d`` rows.
* ``s > 1``: the taps of one input row, zero-padded to ``M * s`` with ``M = ceil(ke / s)`` and
  gaps of ``d - 1`` between them, cover ``M`` consecutive blocks of ``s`` output steps, so the
  result in blocks is the sum over ``m < M`` of block ``m`` shifted by ``m`` rows, which a reshape
  turns into steps.

The zeros are inserted after the multiplication, so a NaN or Inf input reaches exactly the outputs
that depend on it. The cost is a temporary ``Z`` of ``k / s`` times the output's size.

16-bit inputs are multiplied with float32 accumulation and ``Z`` and the overlap-add stay in
float32 (:func:`accumulation_dtype`): the output is rounded to the input's dtype once, as a
convolution's would be; a bfloat16 x bfloat16 -> float32 product also runs on a CPU's bfloat16
dot-product instructions where it has them.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from convtrans._src.config import Conv1DTransposeConfig
from convtrans._src.geometry import full_result_offset, kernel_blocks, output_blocks, output_length
from convtrans._src.kernels.layout import taps_on_block_grid
from convtrans._src.numerics import accumulation_dtype


def tap_products(x: jax.Array, kernel: jax.Array, config: Conv1DTransposeConfig, precision: Any = None) -> jax.Array:
    """``Z[b, i, j, :] = x[b, i, :] @ W[j]^T`` as ``(batch, n, k, filters)``, groups respected.

    ``Z`` is in :func:`accumulation_dtype` of ``x.dtype``.

    ``kernel`` is Keras's ``(k, filters // groups, in)``; input channels of group ``g`` feed
    filters ``g * filters // groups + o``.
    """
    g = config.groups
    k, f_g, in_channels = kernel.shape
    if g == 1:
        # The kernel as a two-dimensional (k * filters, in), contracted along its last axis where
        # it lies: given a kernel of more axes, or a size-1 batch axis, XLA:CPU first copies the
        # whole kernel into (in, k * filters), which costs more than the product when the input is
        # short. The input keeps its batch axis (merging it with time would gather a sharded one).
        channel_axis = 2 if config.data_format == "channels_last" else 1
        z = lax.dot_general(
            x,
            kernel.reshape(k * f_g, in_channels),
            (((channel_axis,), (1,)), ((), ())),
            precision=precision,
            preferred_element_type=accumulation_dtype(x.dtype),
        )
        return z.reshape(*z.shape[:2], k, f_g)  # z: x's free axes (batch, n), then the kernel's (k * filters)
    w = kernel.reshape(k, f_g, g, in_channels // g)
    if config.data_format == "channels_last":
        batch, n, _ = x.shape
        lhs, group_axis, channel_axis = x.reshape(batch, n, g, in_channels // g), 2, 3
    else:
        batch, _, n = x.shape
        lhs, group_axis, channel_axis = x.reshape(batch, g, in_channels // g, n), 1, 2
    # (g, batch, n, k, f_g): batch dimensions come first in a dot_general's result.
    z = lax.dot_general(
        lhs,
        w,
        (((channel_axis,), (3,)), ((group_axis,), (2,))),
        precision=precision,
        preferred_element_type=accumulation_dtype(x.dtype),
    )
    return z.transpose(1, 2, 3, 0, 4).reshape(batch, n, k, g * f_g)


def _shift_add(z: jax.Array, row_step: int, first: int, stop: int) -> jax.Array:
    """Rows ``[first, stop)`` of ``sum_t shift(z[:, :, t], t * row_step)``; z is ``(B, n, T, C)``.

    The taps are separated with ONE ``lax.split`` rather than ``T`` slices: reverse mode
    transposes a split into a single concatenate that writes the cotangent of ``z`` once, whereas
    each slice would transpose into its own full-size zero-padded copy of it.
    """
    n = z.shape[1]
    zero = jnp.zeros((), z.dtype)
    total = None
    for t, tap in enumerate(lax.split(z, [1] * z.shape[2], axis=2)):
        shift = t * row_step
        if shift >= stop or shift + n <= first:
            continue  # entirely outside the requested rows (and lax.pad would crop past the array)
        placed = lax.pad(tap[:, :, 0], zero, [(0, 0, 0), (shift - first, stop - n - shift, 0), (0, 0, 0)])
        total = placed if total is None else total + placed
    if total is None:
        return jnp.zeros((z.shape[0], stop - first, z.shape[3]), z.dtype)
    return total


def _place_taps(z: jax.Array, config: Conv1DTransposeConfig, first: int, stop: int) -> jax.Array:
    """Block rows ``[first, stop)`` of the full result, ``(B, rows, s, C)``, placing each tap's
    products ``z[:, :, j]`` at block row ``i + j * d // s``, column ``j * d % s``.

    For a dilation far larger than the stride, where most block rows of a tap span are empty:
    the Python work and the passes over the output grow with the taps, not with ``ke / s``.
    """
    batch, n, taps, channels = z.shape
    s, d = config.strides, config.dilation_rate
    zero = jnp.zeros((), z.dtype)
    total = jnp.zeros((batch, stop - first, s, channels), z.dtype)
    for j, tap in enumerate(lax.split(z, [1] * taps, axis=2)):
        row, column = divmod(j * d, s)
        if row >= stop or row + n <= first:
            continue
        pads = [(0, 0, 0), (row - first, stop - n - row, 0), (column, s - 1 - column, 0), (0, 0, 0)]
        total = total + lax.pad(tap, zero, pads)
    return total


def gemm_conv(x: jax.Array, kernel: jax.Array, config: Conv1DTransposeConfig, precision: Any = None) -> jax.Array:
    """The transposed convolution of ``x`` by ``kernel`` (no bias) as a GEMM and an overlap-add.

    Same contract as :func:`convtrans._src.kernels.polyphase.convolve`: ``x`` is ``(batch, n, in)`` or
    ``(batch, in, n)``, ``kernel`` Keras's ``(k, filters // groups, in)``, the result
    ``(batch, out, filters)`` or ``(batch, filters, out)`` with ``out = output_length(config, n)``.
    """
    n = x.shape[config.time_axis % 3]
    steps = output_length(config, n)
    s = config.strides
    z = tap_products(x, kernel, config, precision)
    batch, _, _, filters = z.shape
    if s == 1:
        c = full_result_offset(config)
        y = _shift_add(z, config.dilation_rate, c, c + steps)
    else:
        q0, q1, start = output_blocks(config, steps)
        blocks_per_row = kernel_blocks(config)
        if blocks_per_row > config.kernel_size:
            y = _place_taps(z, config, q0, q1)
        else:
            z = taps_on_block_grid(z, 2, config)
            # Reshapes only merge or only split axes: what explicitly sharded arrays allow.
            z = z.reshape(batch, n, blocks_per_row * s * filters).reshape(batch, n, blocks_per_row, s * filters)
            y = _shift_add(z, 1, q0, q1).reshape(batch, q1 - q0, s, filters)
        y = y.reshape(batch, (q1 - q0) * s, filters)
        y = lax.slice_in_dim(y, start, start + steps, axis=1)
    y = y.astype(x.dtype)
    return y if config.data_format == "channels_last" else y.transpose(0, 2, 1)

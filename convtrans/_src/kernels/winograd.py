"""Two- and three-tap correlations with fewer multiplications: Winograd's minimal filtering F(2, r).

Why: the polyphase form reduces a vocoder's transposed convolution (``kernel_size = 2 * strides``,
HiFi-GAN's and MelGAN's choice) to a stride-1 correlation with two taps, and a stride-1 layer
with ``kernel_size = 3`` to one with three. Both are bound by their matrix products. Computing the
outputs in pairs shares work between neighbours: ``r + 1`` products of half the length replace
``2 * r`` (3/4 of the multiplications for two taps, 2/3 for three), in the forward pass and, since
reverse mode transposes the same products, in both gradients.

Math (``step`` apart taps ``g_i``; ``d_i`` the input rows the pair of outputs reads)::

    two taps:    y0 = d0 g0 + d1 g1                 y1 = d1 g0 + d2 g1
                 m0 = d1 (g0 + g1)   m1 = (d0 - d1) g0   m2 = (d2 - d1) g1
                 y0 = m0 + m1                       y1 = m0 + m2

    three taps:  y0 = d0 g0 + d1 g1 + d2 g2         y1 = d1 g0 + d2 g1 + d3 g2
                 m0 = (d0 - d2) g0   m1 = (d1 + d2) (g0 + g1 + g2) / 2
                 m2 = (d2 - d1) (g0 - g1 + g2) / 2   m3 = (d1 - d3) g2
                 y0 = m0 + m1 + m2                  y1 = m1 - m2 - m3

The halves are exact in binary floating point. Rounding differs from the direct sum by the
rounding of the input and kernel sums and differences, a few ulps of the operands' magnitude.
16-bit inputs are therefore transformed and multiplied in float32 and the result rounded once
(:func:`convtrans.gemm.accumulation_dtype`): a bfloat16 difference would keep 8 bits.

Every product multiplies inputs that both outputs it feeds depend on, so a NaN in the input
still reaches only the outputs that depend on it. An infinite input, however, makes those
outputs NaN where the direct sum gives an infinity (``inf - inf`` in the differences), and a
difference of two values near the float maximum can overflow where the direct sum does not.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from convtrans._src.config import Conv1DTransposeConfig
from convtrans._src.numerics import accumulation_dtype

TAPS = (2, 3)


def applies(dtype: Any, taps: int) -> bool:
    """Whether :func:`correlate` computes a ``taps``-tap correlation of ``dtype`` inputs."""
    return taps in TAPS and jnp.issubdtype(dtype, jnp.floating)


def _kernel_transform(rhs: jax.Array) -> list[jax.Array]:
    if rhs.shape[0] == 2:
        g0, g1 = rhs[0], rhs[1]
        return [g0 + g1, g0, g1]
    g0, g1, g2 = rhs[0], rhs[1], rhs[2]
    return [g0, (g0 + g1 + g2) * 0.5, (g0 - g1 + g2) * 0.5, g2]


def _input_transform(d: list[jax.Array]) -> list[jax.Array]:
    if len(d) == 3:
        return [d[1], d[0] - d[1], d[2] - d[1]]
    return [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]


def _output_transform(m: list[jax.Array]) -> tuple[jax.Array, jax.Array]:
    if len(m) == 3:
        return m[0] + m[1], m[0] + m[2]
    return m[0] + m[1] + m[2], m[1] - m[2] - m[3]


def correlate(
    xp: jax.Array, rhs: jax.Array, step: int, config: Conv1DTransposeConfig, precision: Any = None
) -> jax.Array:
    """``z[b, q, o] = sum_{i, c} xp[b, q + i * step, c] rhs[i, o, c]``, in ``xp``'s layout.

    The stride-1 convolution it replaces, for ``groups = 1``, with each tap's matrix transposed:
    ``rhs`` is ``(taps, out, in)`` with ``taps`` in :data:`TAPS` (Keras's kernel layout, so that
    no kernel is transposed on the way), and the result has ``xp_steps - (taps - 1) * step``
    steps.

    Output steps are taken in blocks of ``2 * step``: step ``r`` of a block's first half and
    step ``r`` of its second half are the pair ``(y0, y1)`` of the module docstring, whose input
    rows ``d_i`` are ``step`` apart.
    """
    taps, out_channels, in_channels = rhs.shape
    if config.groups != 1:
        raise ValueError(f"winograd.correlate takes groups=1 layers, got groups={config.groups}.")
    dtype = xp.dtype
    xp, rhs = xp.astype(accumulation_dtype(dtype)), rhs.astype(accumulation_dtype(dtype))
    channels_last = config.data_format == "channels_last"
    time_axis = 1 if channels_last else 2
    steps = xp.shape[time_axis] - (taps - 1) * step
    blocks = -(-steps // (2 * step))
    # Block p reads rows [2 * step * p, 2 * step * p + (taps + 1) * step); pad to whole blocks.
    padded = 2 * step * (blocks + 1)
    pads = [(0, 0, 0)] * 3
    pads[time_axis] = (0, padded - xp.shape[time_axis], 0)
    xp = lax.pad(xp, jnp.zeros((), xp.dtype), pads)
    batch = xp.shape[0]
    # channels_first moves its batch axis next to time (an inexpensive transpose of whole rows)
    # so that every product is one matrix times another, (rows, in) @ (out, in)^T or
    # (out, in) @ (in, rows): products with more axes differentiate into transposed copies.
    d = []  # d[i]: the input rows of every pair, (batch, blocks, step, in) or (in, batch, blocks, step)
    for first in (0, 2 * step):
        rows = lax.slice_in_dim(xp, first, first + 2 * step * blocks, axis=time_axis)
        if channels_last:
            rows = rows.reshape(batch, blocks, 2, step, in_channels)
            d += [rows[:, :, 0], rows[:, :, 1]]
        else:
            rows = rows.reshape(batch, in_channels, blocks, 2, step).transpose(1, 0, 2, 3, 4)
            d += [rows[:, :, :, 0], rows[:, :, :, 1]]
    pairs = batch * blocks * step
    lhs = _input_transform(d[: taps + 1])
    if channels_last:
        m = [
            lax.dot_general(a.reshape(pairs, in_channels), w, (((1,), (1,)), ((), ())), precision=precision)
            for a, w in zip(lhs, _kernel_transform(rhs))
        ]
        pair = [y.reshape(batch, blocks, 1, step, out_channels) for y in _output_transform(m)]
        y = jnp.concatenate(pair, axis=2).reshape(batch, 2 * step * blocks, out_channels)
    else:
        m = [
            lax.dot(w, a.reshape(in_channels, pairs), precision=precision) for a, w in zip(lhs, _kernel_transform(rhs))
        ]
        pair = [y.reshape(out_channels, batch, blocks, 1, step) for y in _output_transform(m)]
        y = jnp.concatenate(pair, axis=3).transpose(1, 0, 2, 3, 4)
        y = y.reshape(batch, out_channels, 2 * step * blocks)
    return lax.slice_in_dim(y, 0, steps, axis=time_axis).astype(dtype)

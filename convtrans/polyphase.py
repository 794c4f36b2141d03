"""The fast path: a transposed convolution as ONE stride-1 convolution over the undilated input.

Why: the reference formulation (a convolution of the ``s``-dilated input, see
:func:`convtrans.ops.lhs_dilation_conv`) wastes ``s - 1`` of every ``s`` multiplications on
inserted zeros, and its weight gradient becomes a window-reversed convolution that XLA:CPU runs as
an unoptimized loop (10-25x slower than PyTorch for forward + backward). The polyphase
("sub-pixel") form below does no work on zeros and differentiates into ordinary convolutions.

Math (scatter view; ``n`` input steps, ``k`` taps, stride ``s``, dilation ``d``,
``ke = (k - 1) * d + 1``): input step ``i`` times tap ``j`` lands at position ``i * s + j * d``
of the *full* result, and output step ``t`` is full position ``t + c`` with
``c = full_result_offset(config)``. Write a full position as ``q * s + r`` (phase ``r < s``)
and a tap offset as ``j * d = m_j * s + r_j``. Then

    full[q * s + r] = sum_{j : r_j = r} x[q - m_j] @ W[j],

so every phase is a stride-1 convolution of ``x`` with ``M = ceil(ke / s)`` taps, and all ``s``
phases together are one convolution with ``s * filters`` output channels and the phase kernel
``G[m, :, (r, o)] = W[j, o, :]`` where ``(m_j, r_j) = (m, r)`` (zero elsewhere). Its output for
block rows ``q0 <= q < q1`` (``q0 = floor(c / s)``, ``q1 = ceil((c + out) / s)``) is reshaped
depth-to-space to ``(q1 - q0) * s`` steps and cropped to the ``out`` requested ones.

For ``s = 1`` this is a plain convolution with the flipped kernel and ``rhs_dilation = d``.

The input is padded with an explicit :func:`jax.lax.pad` (negative pads crop), never through the
convolution's ``padding=`` argument: with the latter XLA's passes turn the gradient back into a
window-reversed convolution. ``tests/test_polyphase.py`` checks the compiled gradient for that.

Cost: ``(q1 - q0) * s * M`` multiply-adds per channel pair and batch row against the minimum
``n * k``; about 1x when ``d == 1`` and ``k % s == 0``. With both ``s > 1`` and ``d > 1``
(PyTorch-style padding) the phase kernel holds the zeros between dilated taps, so the cost grows
towards ``d`` times the minimum; that combination is rare and stays exact.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from convtrans.config import Conv1DTransposeConfig
from convtrans.geometry import full_result_offset, output_length, transpose_pads
from convtrans.layout import conv_kernel_to_wio, dimension_numbers, grouped_kernel


def phase_kernel(
    kernel: jax.Array, strides: int, dilation_rate: int, groups: int, data_format: str
) -> jax.Array:
    """The flipped phase kernel ``(M, in/groups, groups * s * filters/groups)`` of the polyphase form.

    Tap ``j`` of Keras's ``(k, filters/groups, in)`` kernel goes to phase tap
    ``m = (j * d) // s`` and phase ``r = (j * d) % s``; the taps are then flipped along ``m``
    because ``lax`` convolutions correlate. Output channels are grouped first (what
    ``feature_group_count`` requires), then ordered ``(r, o)`` for channels_last and ``(o, r)``
    for channels_first, which keeps the depth-to-space of each layout cheap.
    """
    s, d = strides, dilation_rate
    k = kernel.shape[0]
    ke = (k - 1) * d + 1
    taps = math.ceil(ke / s)
    w = grouped_kernel(kernel, groups)  # (k, in/g, g, f/g)
    zero = jnp.zeros((), w.dtype)
    # Dilate the taps (zeros between them) and pad to taps * s, so position m * s + r holds the
    # tap of phase r at phase tap m: a reshape then separates the phases.
    w = lax.pad(w, zero, [(0, taps * s - ke, d - 1), (0, 0, 0), (0, 0, 0), (0, 0, 0)])
    _, cin_g, g, f_g = w.shape
    w = w.reshape(taps, s, cin_g, g, f_g)
    order = (0, 2, 3, 1, 4) if data_format == "channels_last" else (0, 2, 3, 4, 1)
    w = w.transpose(order).reshape(taps, cin_g, g * s * f_g)
    return jnp.flip(w, axis=0)


def _pad_time(x: jax.Array, config: Conv1DTransposeConfig, left: int, right: int) -> jax.Array:
    """``x`` padded with zeros (negative: cropped) by ``(left, right)`` along the time axis."""
    config_pads = [(0, 0, 0)] * 3
    config_pads[config.time_axis % 3] = (left, right, 0)
    return lax.pad(x, jnp.zeros((), x.dtype), config_pads)


def _empty_output(x: jax.Array, config: Conv1DTransposeConfig, steps: int) -> jax.Array:
    batch = x.shape[0]
    shape = (batch, steps, config.filters) if config.data_format == "channels_last" else (
        batch, config.filters, steps)
    # Multiplying by x keeps the result on x's sharding and in the differentiation graph.
    return jnp.zeros(shape, x.dtype) + 0 * jnp.sum(x, dtype=x.dtype)


def _stride_one(x: jax.Array, kernel: jax.Array, config: Conv1DTransposeConfig, precision: Any,
                steps: int) -> jax.Array:
    left, right = transpose_pads(config)
    rhs = jnp.flip(conv_kernel_to_wio(kernel, config.groups), axis=0)
    return lax.conv_general_dilated(
        _pad_time(x, config, left, right),
        rhs,
        window_strides=(1,),
        padding=[(0, 0)],
        rhs_dilation=(config.dilation_rate,),
        dimension_numbers=dimension_numbers(config),
        feature_group_count=config.groups,
        precision=precision,
    )


def polyphase_conv(
    x: jax.Array, kernel: jax.Array, config: Conv1DTransposeConfig, precision: Any = None
) -> jax.Array:
    """The transposed convolution of ``x`` by ``kernel`` (no bias), the polyphase way.

    Args:
      x: ``(batch, n, in)`` (channels_last) or ``(batch, in, n)`` (channels_first).
      kernel: Keras layout ``(k, filters // groups, in)``, in ``x``'s dtype.
      config: the layer configuration; only the convolution's fields are used.
      precision: ``lax.Precision`` of the convolution.

    Returns:
      ``(batch, out, filters)`` or ``(batch, filters, out)`` with
      ``out = output_length(config, n)``; equal to :func:`convtrans.ops.lhs_dilation_conv`.
    """
    time_axis = config.time_axis % 3
    n = x.shape[time_axis]
    steps = output_length(config, n)
    if steps == 0 or x.shape[0] == 0:
        return _empty_output(x, config, steps)
    s = config.strides
    if s == 1:
        return _stride_one(x, kernel, config, precision, steps)
    if config.kernel_size == math.ceil(config.effective_kernel_size / s) * s:
        return _phases(x, kernel, config, precision, steps)  # every phase has all its taps
    return _nonfinite_exact(x, kernel, config, precision, steps)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _nonfinite_exact(x: jax.Array, kernel: jax.Array, config: Conv1DTransposeConfig, precision: Any,
                     steps: int) -> jax.Array:
    """:func:`_phases`, with NaN and Inf reaching only the outputs that depend on them.

    When ``k < M * s`` the phase kernel holds zeros (phases with fewer taps, dilation gaps), and
    a NaN or Inf input times such a zero is NaN in outputs that do not depend on it. Only when
    ``x`` has non-finite values, the output is recomputed from its finite part, except where a
    non-finite input reaches through a real tap (the structural reach: the same convolution of
    the non-finite indicator by an all-ones kernel). Three convolutions then, one otherwise.
    """
    def plain(x):
        return _phases(x, kernel, config, precision, steps)

    def exact(x):
        bad = ~jnp.isfinite(x)
        finite_part = plain(jnp.where(bad, jnp.zeros((), x.dtype), x))
        reach = _phases(bad.astype(x.dtype), jnp.ones_like(kernel), config, precision, steps)
        return jnp.where(reach > 0, plain(x), finite_part)

    return lax.cond(jnp.all(jnp.isfinite(x)), plain, exact, x)


def _nonfinite_exact_jvp(config, precision, steps, primals, tangents):
    # Differentiating through the lax.cond above makes XLA:CPU run the weight gradient inside a
    # conditional, ~60x slower (measured: B16 L4096 16->16 k9 s2, 1.1 s against 19 ms). The
    # tangent of the convolution is the same on both branches wherever it is finite, so it is
    # taken from the plain polyphase convolution: ordinary convolutions after transposition.
    x, kernel = primals
    dx, dkernel = tangents
    y = _nonfinite_exact(x, kernel, config, precision, steps)
    dy = _phases(dx, kernel, config, precision, steps) + _phases(x, dkernel, config, precision, steps)
    return y, dy


_nonfinite_exact.defjvp(_nonfinite_exact_jvp)


def _phases(x: jax.Array, kernel: jax.Array, config: Conv1DTransposeConfig, precision: Any,
            steps: int) -> jax.Array:
    """The polyphase convolution proper (``strides > 1``, non-empty output)."""
    time_axis = config.time_axis % 3
    n = x.shape[time_axis]
    s = config.strides
    ke = config.effective_kernel_size
    taps = math.ceil(ke / s)
    c = full_result_offset(config)
    q0 = c // s
    q1 = -(-(c + steps) // s)
    blocks = q1 - q0
    rhs = phase_kernel(kernel, s, config.dilation_rate, config.groups, config.data_format)
    z = lax.conv_general_dilated(
        _pad_time(x, config, taps - 1 - q0, q1 - n),
        rhs,
        window_strides=(1,),
        padding=[(0, 0)],
        dimension_numbers=dimension_numbers(config),
        feature_group_count=config.groups,
        precision=precision,
    )
    batch, g, f_g = x.shape[0], config.groups, config.filters // config.groups
    start = c - q0 * s
    if config.data_format == "channels_last":
        # z: (batch, blocks, g * s * f_g) with channels (g, r, o); interleave the phases in time.
        y = z.reshape(batch, blocks, g, s, f_g)
        if g > 1:
            y = y.transpose(0, 1, 3, 2, 4)
        y = y.reshape(batch, blocks * s, config.filters)
        return lax.slice_in_dim(y, start, start + steps, axis=1)
    # z: (batch, g * f_g * s, blocks) with channels (g, o, r).
    y = z.reshape(batch, config.filters, s, blocks).transpose(0, 1, 3, 2)
    y = y.reshape(batch, config.filters, blocks * s)
    return lax.slice_in_dim(y, start, start + steps, axis=2)

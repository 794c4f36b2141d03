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

so every phase is a stride-1 convolution of ``x`` over its own taps. Phases whose taps follow the
same pattern (see :func:`phase_groups`; with ``d = 1`` the phases ``r < k mod s`` have one tap
more than the others) share ONE convolution with ``P * filters`` output channels; when
``k % s == 0`` that is a single convolution for all ``s`` phases. Seen as rows of ``s`` steps,
the output has one phase per column (output step ``t`` is phase ``(t + c) mod s``), and each
column starts at block ``floor(c / s)`` or the next (:func:`convtrans.geometry.phase_column`).
A single group's blocks interleave depth-to-space into steps, of which the output is one
contiguous slice; with several groups, each computes just the blocks its columns need and the
columns interleave by a reshape, cropped at the end only when ``s`` does not divide ``out``.

Grouping by pattern rather than padding short phases with zero taps matters for two reasons: a
zero tap multiplies real inputs, so a NaN or Inf would leak into outputs that do not depend on it,
and no multiplication is spent on zeros (the cost is exactly ``n * k`` multiply-adds per channel
pair and batch row, up to the edges), also when ``s > 1`` and ``d > 1`` (PyTorch-style padding),
where a group's taps are ``d / gcd(s, d)`` phase taps apart (``rhs_dilation``). One exception,
for speed: narrow layers take the kernel's tangent from zero-padded taps (see
:func:`_phases_as_one`), whose transpose is one weight gradient instead of one per group.

For ``s = 1`` this is a plain convolution with the flipped kernel and ``rhs_dilation = d``.

The input is padded with an explicit :func:`jax.lax.pad` (negative pads crop), never through the
convolution's ``padding=`` argument: with the latter XLA's passes turn the gradient back into a
window-reversed convolution. ``tests/test_polyphase.py`` checks the compiled gradient for that.

On CPU, layers with 64 or more input channels (:data:`WINOGRAD_MIN_CHANNELS`), ``groups = 1``
and phases of two or three taps (``kernel_size`` 2 or 3 times ``strides``, as in every HiFi-GAN
and MelGAN upsampler, or a stride-1 kernel of 3) compute those phases by Winograd's minimal
filtering F(2, r) (:mod:`convtrans.winograd`): 3/4 (2/3) of the multiplications, as matrix
products that take Keras's kernel layout without transposing it. float32 and float64 layers do so
forward and in the gradients; 16-bit layers in the gradients only, in float32 (their forward
pass has faster bfloat16 products, below). Its rounding differs from the direct sum's by a few
ulps, and an infinite input comes out NaN (still only where the direct sum is not finite).
Inputs whose temporaries would exceed :data:`WINOGRAD_MAX_BYTES` keep the convolutions.

Otherwise, with many input channels (:data:`GEMM_MIN_CHANNELS`), and for grouped layers, where its
temporaries stay small (:data:`GEMM_MAX_BYTES`), the derivatives are not the convolutions' own but
those of :func:`convtrans.gemm.gemm_conv` (the same bilinear map as one GEMM and an overlap-add),
whose gradients are GEMMs; with many input channels that form computes the output too. Each
choice is the one measured faster on XLA:CPU (grouped layers: the one without an input-dilated
weight gradient); ``polyphase_conv``'s ``forward`` and ``gradients`` arguments override them.

bfloat16 inputs with :data:`DOT_CORRELATION_MIN_CHANNELS` or more input channels per group run
each stride-1 convolution on CPU as one matrix product of stacked shifted windows, accumulated in
float32 (see :func:`_correlate`): XLA:CPU computes bfloat16 convolutions at float32 speed but
bfloat16 products on the CPU's bfloat16 dot-product instructions. The derivatives are still the
convolutions' (or the GEMM form's, or Winograd's), computed in float32 and rounded once (see
:func:`_in_accumulation_dtype`), at float32 speed: reverse mode would transpose a
float32-accumulated product into one whose cotangent is float32. Only a ``custom_vjp`` could keep
the backward products in bfloat16, and JAX cannot forward-differentiate a ``custom_vjp`` function,
so ``jax.jvp`` and ``jax.hessian`` would stop working for bfloat16 inputs; this module keeps them.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from convtrans import winograd as winograd_correlation
from convtrans.config import Conv1DTransposeConfig
from convtrans.gemm import accumulation_dtype, gemm_conv
from convtrans.geometry import (OutputBlocks, kernel_blocks, output_blocks, output_length,
                                phase_column, transpose_pads)
from convtrans.layout import conv_kernel_to_wio, dimension_numbers, grouped_kernel, taps_on_block_grid
from convtrans.reference import lhs_dilation_conv

# The GEMM form (convtrans/gemm.py) materializes the tap products, ``batch * n * k * filters``
# elements, ``k / s`` times the output; its gradients hold about three copies of them, the
# convolutions' gradients about 3.5 outputs. Above this many bytes the convolutions are used,
# which bounds the memory of long inputs.
GEMM_MAX_BYTES = 64 * 2**20
# From this many input channels per group the GEMM form is the faster one on XLA:CPU, forward
# (1.15-1.5x at 512; 0.8-0.95x at 64) and forward+backward (1.3-1.4x at 512). With fewer the
# convolutions' own gradients are faster (MelGAN, 256 channels: 0.65x for the GEMM gradients;
# 16 channels: 0.25x): the backward of the GEMM form copies the tap-product cotangent into the
# transposed layout the weight-gradient product wants, ``k / s`` outputs' worth of memory traffic.
# (All measured with the cotangent a runtime argument; a constant one is folded at compile time,
# which hides that copy and once made the GEMM gradients look faster everywhere.)
GEMM_MIN_CHANNELS = 512
FORMS = ("gemm", "convolution", "winograd")
# From this many input channels, layers with two- or three-tap phases (kernel_size = 2 or 3 times
# strides: every HiFi-GAN and MelGAN upsampler) compute those correlations by Winograd's F(2, r)
# (convtrans/winograd.py): 3/4 (2/3) of the multiplications. float32 forward+backward measured
# 1.2-1.6x faster than the other forms from 64 channels; bfloat16 gradients (in float32) 1.1-1.2x
# faster than the convolutions'. With 16 channels its extra passes over the data cost more than
# the products save (0.5x forward).
WINOGRAD_MIN_CHANNELS = 64
# Its temporaries, the transformed inputs and the products, are (r + 1) / 2 times the input plus
# the output (1.6-2.5 outputs for upsampling layers, against 1 for the convolutions); above this
# many bytes the convolutions are used, which bounds the memory of long inputs.
WINOGRAD_MAX_BYTES = 64 * 2**20
# Up to this many input channels per group, layers with several phase groups take the kernel's
# tangent from one convolution over every phase (see _kernel_tangent_as_one).
ONE_WEIGHT_GRADIENT_MAX_CHANNELS = 32
# From this many input channels per group, bfloat16 convolutions run as matrix products on
# XLA:CPU (see _correlates_as_dot).
DOT_CORRELATION_MIN_CHANNELS = 64


class PhaseGroup(NamedTuple):
    """Output phases whose taps follow the same pattern, computed by one convolution.

    Phase ``r`` (output steps ``t`` with full position ``= r mod s``) uses the taps ``j`` with
    ``j * d = m * s + r``; their phase taps ``m`` are ``first + i * step`` for ``i < taps``.
    """

    phases: tuple[int, ...]
    first: int
    taps: int
    step: int


def phase_groups(kernel_size: int, strides: int, dilation_rate: int) -> tuple[PhaseGroup, ...]:
    """The phases of a stride-``strides`` transposed convolution, grouped by tap pattern.

    The taps of phase ``r`` are every ``s / gcd(s, d)``-th tap ``j`` from the first with
    ``j * d = r (mod s)``, so their phase taps step by ``d / gcd(s, d)``. With ``d = 1`` there are
    at most two groups: phases ``r < k mod s`` with one tap more than the rest. A phase with no
    taps at all (``s > ke``) has ``taps = 0``: its outputs are zero.
    """
    s, d = strides, dilation_rate
    step = d // math.gcd(s, d)
    by_pattern: dict[tuple[int, int], list[int]] = {}
    for r in range(s):
        taps = [j * d // s for j in range(kernel_size) if j * d % s == r]
        by_pattern.setdefault((taps[0] if taps else 0, len(taps)), []).append(r)
    return tuple(PhaseGroup(tuple(phases), first, taps, step)
                 for (first, taps), phases in sorted(by_pattern.items(), key=lambda kv: kv[1][0]))


def phase_kernels(kernel: jax.Array, config: Conv1DTransposeConfig,
                  transposed: bool = False) -> list[jax.Array]:
    """For each of :func:`phase_groups`, its flipped kernel ``(taps, in/groups, groups * P * f/groups)``.

    ``P`` is the group's number of phases; output channels are ordered ``(group, phase, filter)``
    for channels_last and ``(group, filter, phase)`` for channels_first, which keeps the
    depth-to-space of each layout a reshape and one transpose. Groups with no taps get ``None``.
    ``transposed`` gives each tap's matrix the other way round, ``(taps, groups * P * f/groups,
    in/groups)``, which for ``groups = 1`` is Keras's own layout and costs no transpose of the
    kernel (XLA:CPU moves a 512x256 kernel's 8 MB at 2-4 GB/s, milliseconds per step).
    """
    s, d = config.strides, config.dilation_rate
    g = config.groups
    f_g, cin_g = kernel.shape[1], kernel.shape[2] // g
    if transposed:  # (k, g, f/g, in/g)
        w = kernel.reshape(kernel.shape[0], f_g, g, cin_g).transpose(0, 2, 1, 3)
        order = (0, 2, 1, 3, 4) if config.data_format == "channels_last" else (0, 2, 3, 1, 4)
    else:  # (k, in/g, g, f/g)
        w = grouped_kernel(kernel, g)
        order = (0, 2, 3, 1, 4) if config.data_format == "channels_last" else (0, 2, 3, 4, 1)
    # Row m * s + r of the block grid holds the tap of phase r at phase tap m; a reshape separates
    # the phases. Every group below picks only real taps out of it, so none of the grid's zeros
    # is ever multiplied.
    w = taps_on_block_grid(w, 0, config)
    w = w.reshape(kernel_blocks(config), s, *w.shape[1:])
    kernels = []
    for group in phase_groups(config.kernel_size, s, d):
        if group.taps == 0:
            kernels.append(None)
            continue
        rows = lax.slice_in_dim(w, group.first, group.first + (group.taps - 1) * group.step + 1,
                                stride=group.step, axis=0)
        rows = _take_phases(rows, group.phases, axis=1).transpose(order)
        outs = g * len(group.phases) * f_g
        rows = rows.reshape((group.taps, outs, cin_g) if transposed else (group.taps, cin_g, outs))
        kernels.append(jnp.flip(rows, axis=0))
    return kernels


def _take_phases(a: jax.Array, phases: tuple[int, ...], axis: int) -> jax.Array:
    first, last = phases[0], phases[-1]
    if phases == tuple(range(first, last + 1)):
        return lax.slice_in_dim(a, first, last + 1, axis=axis)
    return jnp.take(a, np.asarray(phases), axis=axis)


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


def polyphase_conv(
    x: jax.Array, kernel: jax.Array, config: Conv1DTransposeConfig, precision: Any = None,
    gradients: Optional[str] = None, forward: Optional[str] = None,
) -> jax.Array:
    """The transposed convolution of ``x`` by ``kernel`` (no bias), the polyphase way.

    Args:
      x: ``(batch, n, in)`` (channels_last) or ``(batch, in, n)`` (channels_first).
      kernel: Keras layout ``(k, filters // groups, in)``, in ``x``'s dtype.
      config: the layer configuration; only the convolution's fields are used.
      precision: ``lax.Precision`` of the convolution.
      gradients: how derivatives are computed: ``"gemm"`` (those of
        :func:`convtrans.gemm.gemm_conv`, the same bilinear map), ``"convolution"`` (the
        convolutions' own), ``"winograd"`` (those of the ``"winograd"`` forward) or None:
        ``"winograd"`` where the module docstring says, else ``"gemm"`` when there are at
        least :data:`GEMM_MIN_CHANNELS` input channels per group or ``groups > 1``, and the
        tap products fit in :data:`GEMM_MAX_BYTES`; else ``"convolution"``.
      forward: how the output is computed: ``"convolution"`` (the polyphase convolution),
        ``"winograd"`` (the same, with the two- and three-tap phases of a ``groups = 1`` layer
        by :func:`convtrans.winograd.correlate`, 16-bit inputs in float32), ``"gemm"``
        (:func:`convtrans.gemm.gemm_conv`) or None: ``"winograd"`` where the module docstring
        says, else ``"gemm"`` when there are at least :data:`GEMM_MIN_CHANNELS` input
        channels per group and the tap products fit in :data:`GEMM_MAX_BYTES`, else
        ``"convolution"``.

    Returns:
      ``(batch, out, filters)`` or ``(batch, filters, out)`` with
      ``out = output_length(config, n)``; equal to :func:`convtrans.ops.lhs_dilation_conv`.
    """
    in_per_group = x.shape[config.channel_axis % 3] // config.groups
    winograd_taps = [group.taps for group in phase_groups(config.kernel_size, config.strides, config.dilation_rate)
                     if _correlates_by_winograd(x.dtype, group.taps, config)]
    # Measured on XLA:CPU only; elsewhere the convolutions are the backend's own kernels.
    if (winograd_taps and in_per_group >= WINOGRAD_MIN_CHANNELS and jax.default_backend() == "cpu"
            and _winograd_bytes(config, x, max(winograd_taps)) <= WINOGRAD_MAX_BYTES):
        gradients = "winograd" if gradients is None else gradients
        # 16-bit inputs are multiplied in float32 there, slower than the bfloat16 products the
        # forward pass has (see _correlates_as_dot); their gradients run at float32 speed anyway.
        if accumulation_dtype(x.dtype) == x.dtype:
            forward = "winograd" if forward is None else forward
    gemm_fits = _tap_products_bytes(config, x) <= GEMM_MAX_BYTES
    wide = in_per_group >= GEMM_MIN_CHANNELS
    if gradients is None:
        # Grouped layers take the GEMM gradients whatever their width: XLA lowers a grouped
        # convolution's weight gradient to an input-dilated convolution, the slow path.
        gradients = "gemm" if gemm_fits and (wide or config.groups > 1) else "convolution"
    if forward is None:
        forward = "gemm" if gemm_fits and wide else "convolution"
    for name, value in (("gradients", gradients), ("forward", forward)):
        if value not in FORMS:
            raise ValueError(f"{name}={value!r} is unknown; expected one of {FORMS} or None.")
    n = x.shape[config.time_axis % 3]
    steps = output_length(config, n)
    if steps == 0 or x.shape[0] == 0:
        return _empty_output(x, config, steps)
    return _convolve(x, kernel, config, precision, forward, gradients)


def _winograd_bytes(config: Conv1DTransposeConfig, x: jax.Array, taps: int) -> int:
    # r + 1 transformed half-inputs and as many half-outputs of products.
    n = x.shape[config.time_axis % 3]
    itemsize = accumulation_dtype(x.dtype).itemsize
    return (taps + 1) * (x.shape[0] * output_length(config, n) * config.filters + x.size) * itemsize // 2


def _tap_products_bytes(config: Conv1DTransposeConfig, x: jax.Array) -> int:
    batch, n = x.shape[0], x.shape[config.time_axis % 3]
    return batch * n * config.kernel_size * config.filters * accumulation_dtype(x.dtype).itemsize


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5))
def _convolve(x: jax.Array, kernel: jax.Array, config: Conv1DTransposeConfig,
              precision: Any, forward: str, gradients: str) -> jax.Array:
    if forward == "gemm":
        return gemm_conv(x, kernel, config, precision)
    return _convolve_plain(x, kernel, config, precision, winograd=forward == "winograd")


def _convolve_plain(x: jax.Array, kernel: jax.Array, config: Conv1DTransposeConfig,
                    precision: Any, winograd: bool) -> jax.Array:
    """The polyphase convolution; ``winograd``: its two- and three-tap phases by
    :func:`convtrans.winograd.correlate` where :func:`_correlates_by_winograd`."""
    if config.strides == 1:
        return _stride_one(x, kernel, config, precision, winograd)
    return _phases(x, kernel, config, precision, winograd)


@functools.partial(_convolve.defjvp, symbolic_zeros=True)
def _convolve_jvp(config, precision, forward, gradients, primals, tangents):
    # The map is bilinear, so its tangent is the same map applied to (dx, kernel) and (x, dkernel).
    # Taking that from the GEMM form makes reverse mode, which transposes the tangent, run the
    # gradients as GEMMs over batch * steps (see GEMM_MIN_CHANNELS for where that pays).
    x, kernel = primals
    dx, dkernel = tangents
    y = _convolve(x, kernel, config, precision, forward, gradients)
    # The convolution forms' tangent runs in the accumulation dtype, so for bfloat16 it never
    # takes the bfloat16 matrix products of _correlate either: differentiated, they ran at float32
    # speed plus copies of the stacked windows, 1.2-2x slower than the convolutions' gradients.
    if gradients == "gemm":
        tangent_map = input_tangent_map = gemm_conv
    else:
        tangent_map = input_tangent_map = functools.partial(
            _in_accumulation_dtype, functools.partial(_convolve_plain, winograd=gradients == "winograd"))
    if gradients == "convolution" and config.strides > 1:
        # The input term from the reference's dilated-input convolution: reverse mode transposes
        # it into ONE strided convolution that reads the cotangent where it lies, instead of one
        # convolution per phase group over phase slices copied out of the cotangent: 1.1-1.4x
        # faster forward+backward with 16 and 32 channels (k16 s8, k4 s2, k5 s3, k7 s3; k9 s2
        # unchanged), measured. Its forward pass multiplies inserted zeros (s times the work,
        # and a NaN kernel tap reaches every output's tangent), which only forward-mode
        # differentiation (jax.jvp) runs.
        input_tangent_map = functools.partial(_in_accumulation_dtype, lhs_dilation_conv)
        # Likewise the kernel term of a narrow layer with several phase groups: one convolution
        # whose zero taps, in forward mode only, carry a NaN input into the tangent of outputs
        # that do not depend on it.
        if _kernel_tangent_as_one(config, x.shape[config.channel_axis % 3]):
            tangent_map = functools.partial(_in_accumulation_dtype, _phases_as_one)
    # Symbolic zeros (an argument not being differentiated, such as the input data of a first
    # layer) are skipped rather than multiplied: that would cost a whole extra forward pass.
    dy = None
    if not isinstance(dx, SymbolicZero):
        dy = input_tangent_map(dx, kernel, config, precision)
    if not isinstance(dkernel, SymbolicZero):
        term = tangent_map(x, dkernel, config, precision)
        dy = term if dy is None else dy + term
    return y, jnp.zeros_like(y) if dy is None else dy


def _kernel_tangent_as_one(config: Conv1DTransposeConfig, in_channels: int) -> bool:
    # With several phase groups, XLA:CPU's weight gradient of each group's convolution costs
    # about as much as one over all phases (it is bound by rearranging the input and the
    # cotangent, not by the products), so narrow layers compute the kernel's tangent as one
    # convolution with zero taps: 1.05-1.5x faster forward+backward at 16 and 32 channels, for
    # 9-33% more multiply-adds (k3-k13, strides 2-4); at 64-256 channels 0.9-1.1x, measured.
    # Only d = 1: with d > 1 the groups' taps are spaced differently.
    return (config.dilation_rate == 1 and config.kernel_size % config.strides != 0
            and in_channels // config.groups <= ONE_WEIGHT_GRADIENT_MAX_CHANNELS)


def _in_accumulation_dtype(fn, a: jax.Array, b: jax.Array, config: Conv1DTransposeConfig,
                           precision: Any) -> jax.Array:
    """``fn(a, b, config, precision)`` computed in :func:`accumulation_dtype`, rounded once.

    For 16-bit inputs, the tangent's phase groups are then summed in float32 when reverse mode
    transposes it: the input gradient adds one term per phase group, and rounding each term to
    bfloat16 first cost up to 100 bfloat16 ulps where they cancel (measured). XLA:CPU computes
    bfloat16 convolutions at float32 speed, so nothing is lost.
    """
    dtype = a.dtype
    wide = accumulation_dtype(dtype)
    return fn(a.astype(wide), b.astype(wide), config, precision).astype(dtype)


def _stride_one(x: jax.Array, kernel: jax.Array, config: Conv1DTransposeConfig,
                precision: Any, winograd: bool) -> jax.Array:
    left, right = transpose_pads(config)
    xp = _pad_time(x, config, left, right)
    if winograd and _correlates_by_winograd(x.dtype, config.kernel_size, config):
        return winograd_correlation.correlate(xp, jnp.flip(kernel, axis=0), config.dilation_rate,
                                              config, precision)
    rhs = jnp.flip(conv_kernel_to_wio(kernel, config.groups), axis=0)
    return _correlate(xp, rhs, config.dilation_rate, config, precision)


def _correlates_by_winograd(dtype: Any, taps: int, config: Conv1DTransposeConfig) -> bool:
    return config.groups == 1 and winograd_correlation.applies(dtype, taps)


def _correlate(xp: jax.Array, rhs: jax.Array, step: int, config: Conv1DTransposeConfig,
               precision: Any) -> jax.Array:
    """``z[b, q, o] = sum_{i, c} xp[b, q + i * step, c] rhs[i, c, o]`` per group, in ``xp``'s layout.

    ``rhs`` is ``(taps, in/groups, groups * out/groups)`` (WIO); the result has
    ``xp_steps - (taps - 1) * step`` steps. A stride-1 convolution, except where
    :func:`_correlates_as_dot`: then the ``taps`` shifted windows of ``xp`` are stacked (``taps``
    times the input) and multiplied in ONE ``dot_general`` accumulated in float32, rounded to the
    input's dtype once, like the convolution.
    """
    taps, in_per_group, out_channels = rhs.shape
    if not _correlates_as_dot(xp.dtype, in_per_group):
        return lax.conv_general_dilated(
            xp, rhs, window_strides=(1,), padding=[(0, 0)], rhs_dilation=(step,),
            dimension_numbers=dimension_numbers(config), feature_group_count=config.groups,
            precision=precision)
    g = config.groups
    time_axis = config.time_axis % 3
    steps = xp.shape[time_axis] - (taps - 1) * step
    windows = jnp.stack([lax.slice_in_dim(xp, i * step, i * step + steps, axis=time_axis)
                         for i in range(taps)], axis=time_axis + 1)
    w = rhs.reshape(taps, in_per_group, g, out_channels // g)
    batch = xp.shape[0]
    if config.data_format == "channels_last":  # windows: (batch, steps, taps, in)
        lhs = windows.reshape(batch, steps, taps, g, in_per_group)
        dims = (((2, 4), (0, 1)), ((3,), (2,)))
    else:  # windows: (batch, in, steps, taps)
        lhs = windows.reshape(batch, g, in_per_group, steps, taps)
        dims = (((4, 2), (0, 1)), ((1,), (2,)))
    z = lax.dot_general(lhs, w, dims, precision=precision,
                        preferred_element_type=accumulation_dtype(xp.dtype))
    z = z.astype(xp.dtype)  # (g, batch, steps, out/g)
    if config.data_format == "channels_last":
        return z.transpose(1, 2, 0, 3).reshape(batch, steps, out_channels)
    return z.transpose(1, 0, 3, 2).reshape(batch, out_channels, steps)


def _correlates_as_dot(dtype: Any, in_per_group: int) -> bool:
    # XLA:CPU runs bfloat16 convolutions at float32 speed, but a bfloat16 matrix product
    # accumulated in float32 on the CPU's bfloat16 dot-product instructions: 1.5-1.8x faster
    # from 64 input channels per group, 0.65x at 16 (measured, benchmarks/run.py shapes). float16
    # has no such instructions here and was slower as a product. Other backends' convolutions
    # run 16-bit inputs natively.
    return (jnp.dtype(dtype) == jnp.bfloat16 and in_per_group >= DOT_CORRELATION_MIN_CHANNELS
            and jax.default_backend() == "cpu")


def _phases(x: jax.Array, kernel: jax.Array, config: Conv1DTransposeConfig,
            precision: Any, winograd: bool) -> jax.Array:
    """The polyphase convolution proper (``strides > 1``, non-empty output).

    Seen as ``ceil(steps / s)`` rows of ``s`` steps, the output has one phase per column (see
    :func:`convtrans.geometry.phase_column`). With every phase in one group (``k % s == 0`` and
    ``d = 1``, every vocoder upsampler) the group computes the fewest whole blocks covering the
    output (:func:`convtrans.geometry.output_blocks`), which interleave into steps, and the output
    is one contiguous slice of them, which XLA fuses into whatever reads it. With several groups,
    each computes just the blocks its columns need and the columns interleave with no crop in
    front, so the gradient slices each phase's cotangent straight out of the output's: padding
    the whole cotangent first put a 16-channel layer's training step past glibc's 32 MB mmap
    threshold, and XLA:CPU allocates its temporaries per call (every call then page-faulted).
    """
    time_axis = config.time_axis % 3
    steps = output_length(config, x.shape[time_axis])
    s = config.strides
    # Both layouts are traced; XLA drops the one no correlation uses.
    groups = list(zip(phase_groups(config.kernel_size, s, config.dilation_rate),
                      phase_kernels(kernel, config), phase_kernels(kernel, config, transposed=True)))
    if len(groups) == 1:
        (group, rhs, rhs_transposed), = groups
        return _one_group(x, group, rhs, rhs_transposed, config, output_blocks(config, steps), steps,
                          precision, winograd)
    rows = -(-steps // s)
    channels_last = config.data_format == "channels_last"
    columns = []  # (column, piece): piece holds the phases of columns column, column + 1, ...
    for group, rhs, rhs_transposed in groups:
        placed = [phase_column(config, r) for r in group.phases]
        lo = min(p.first for p in placed)
        blocks = max(p.first for p in placed) + rows - lo
        z = _group_blocks(x, group, rhs, rhs_transposed, lo, blocks, config, precision, winograd)
        # Phases whose first output step lies in the same block share rows; each such run of
        # consecutive columns is one piece.
        runs: list[list[int]] = []
        for i in sorted(range(len(placed)), key=lambda i: placed[i].column):
            if runs and placed[i].first == placed[runs[-1][-1]].first and (
                    placed[i].column == placed[runs[-1][-1]].column + 1):
                runs[-1].append(i)
            else:
                runs.append([i])
        for run in runs:
            skip = placed[run[0]].first - lo
            piece = lax.slice_in_dim(z, skip, skip + rows, axis=1 if channels_last else 4)
            columns.append((placed[run[0]].column, _take_phases(piece, tuple(run), axis=3)))
    columns.sort(key=lambda column: column[0])
    y = _interleave(jnp.concatenate([piece for _, piece in columns], axis=3), config)
    return lax.slice_in_dim(y, 0, steps, axis=time_axis)


def _one_group(x: jax.Array, group: PhaseGroup, rhs: jax.Array, rhs_transposed: Optional[jax.Array],
               config: Conv1DTransposeConfig, placed: OutputBlocks, steps: int, precision: Any,
               winograd: bool) -> jax.Array:
    """``steps`` output steps from a group holding every phase: the blocks ``placed`` names,
    interleaved into steps, and one contiguous slice of them."""
    first, stop, start = placed
    z = _group_blocks(x, group, rhs, rhs_transposed, first, stop - first, config, precision, winograd)
    return lax.slice_in_dim(_interleave(z, config), start, start + steps, axis=config.time_axis % 3)


def _phases_as_one(x: jax.Array, kernel: jax.Array, config: Conv1DTransposeConfig,
                   precision: Any) -> jax.Array:
    """:func:`_phases` of a ``d = 1`` layer as ONE convolution: the kernel padded with zero taps
    to a multiple of ``s``, so that every phase has the same taps (for the kernel's tangent).

    Zero taps appended at the end leave every real tap's full-result positions where they were,
    so the output is the same blocks of the full result as ``config``'s. Reverse mode transposes
    this into one weight-gradient convolution (the zero taps' rows are computed, then dropped)
    instead of one per phase group.
    """
    s, k = config.strides, config.kernel_size
    whole = -(-k // s) * s
    padded = config.replace(kernel_size=whole)
    kernel = jnp.pad(kernel, ((0, whole - k), (0, 0), (0, 0)))
    (group,), (rhs,) = phase_groups(whole, s, 1), phase_kernels(kernel, padded)
    steps = output_length(config, x.shape[config.time_axis % 3])
    return _one_group(x, group, rhs, None, padded, output_blocks(config, steps), steps, precision,
                      winograd=False)


def _group_blocks(x: jax.Array, group: PhaseGroup, rhs: Optional[jax.Array],
                  rhs_transposed: Optional[jax.Array], lo: int, blocks: int,
                  config: Conv1DTransposeConfig, precision: Any, winograd: bool) -> jax.Array:
    """Blocks ``lo <= q < lo + blocks`` of ``group``'s phases.

    Shaped ``(batch, blocks, groups, P, filters/groups)`` for channels_last and ``(batch, groups,
    filters/groups, P, blocks)`` for channels_first, ``P = len(group.phases)``.
    """
    batch, g, f_g = x.shape[0], config.groups, config.filters // config.groups
    p = len(group.phases)
    channels_last = config.data_format == "channels_last"
    shape = (batch, blocks, g, p, f_g) if channels_last else (batch, g, f_g, p, blocks)
    if rhs is None:
        return jnp.zeros(shape, x.dtype)
    # Block q of phase r sums x[q - first - i * step] @ tap i: a correlation with the flipped
    # taps over x padded so that block lo comes out first.
    n = x.shape[config.time_axis % 3]
    last = group.first + (group.taps - 1) * group.step
    xp = _pad_time(x, config, last - lo, lo + blocks - n - group.first)
    if winograd and _correlates_by_winograd(x.dtype, group.taps, config):
        z = winograd_correlation.correlate(xp, rhs_transposed, group.step, config, precision)
    else:
        z = _correlate(xp, rhs, group.step, config, precision)
    return z.reshape(shape)


def _interleave(z: jax.Array, config: Conv1DTransposeConfig) -> jax.Array:
    """Blocks of ``s`` phases, shaped as :func:`_group_blocks` gives them, as steps."""
    if config.data_format == "channels_last":
        # (batch, blocks, g, s, f_g) -> (batch, blocks, s, g, f_g): the phases interleave in time.
        batch, blocks, _, s, _ = z.shape
        return z.transpose(0, 1, 3, 2, 4).reshape(batch, blocks * s, config.filters)
    # (batch, g, f_g, s, blocks) -> (batch, g, f_g, blocks, s).
    batch, _, _, s, blocks = z.shape
    return z.transpose(0, 1, 2, 4, 3).reshape(batch, config.filters, blocks * s)

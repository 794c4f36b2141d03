"""The polyphase form: a transposed convolution as stride-1 convolutions over the undilated input.

Math (scatter view; ``n`` input steps, ``k`` taps, stride ``s``, dilation ``d``,
``ke = (k - 1) * d + 1``): input step ``i`` times tap ``j`` lands at position ``i * s + j * d``
of the *full* result, and output step ``t`` is full position ``t + c`` with
``c = full_result_offset(config)``. Write a full position as ``q * s + r`` (phase ``r < s``)
and a tap offset as ``j * d = m_j * s + r_j``. Then

    full[q * s + r] = sum_{j : r_j = r} x[q - m_j] @ W[j],

so every phase is a stride-1 convolution of ``x`` over its own taps. Phases whose taps follow the
same pattern (:func:`convtrans._src.geometry.phase_groups`) share ONE convolution with
``P * filters`` output channels. Seen as rows of ``s`` steps, the output has one phase per column
(:func:`convtrans._src.geometry.phase_column`); a single group's blocks interleave
depth-to-space into steps, several groups' columns interleave by a reshape. No multiplication is
spent on zeros, and a NaN or Inf input reaches exactly the outputs that depend on it. For
``s = 1`` this is a plain convolution with the flipped kernel and ``rhs_dilation = d``.

:func:`convolve` runs a :class:`convtrans._src.plan.Plan`: the forward pass by its
``forward`` form, and, through a ``custom_jvp``, the input and kernel tangents by its gradient
forms (reverse mode transposes them; forward mode, ``jax.jvp`` and ``jax.hessian`` keep working).
Tangents of 16-bit inputs are computed in float32 and rounded once. The input is padded with an
explicit :func:`jax.lax.pad`, never through the convolution's ``padding=``, which XLA would turn
back into a window-reversed weight gradient. docs/design.md derives each form.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from convtrans._src.config import Conv1DTransposeConfig
from convtrans._src.geometry import (
    PHASE_LOOP_MAX_STRIDES,
    OutputBlocks,
    PhaseGroup,
    kernel_blocks,
    output_blocks,
    output_length,
    phase_column,
    phase_groups,
    phases_share_taps,
    transpose_pads,
)
from convtrans._src.kernels import winograd as winograd_correlation
from convtrans._src.kernels.gemm import gemm_conv
from convtrans._src.kernels.layout import (
    conv_kernel_to_wio,
    dimension_numbers,
    grouped_kernel,
    pad_time,
    taps_on_block_grid,
)
from convtrans._src.kernels.reference import lhs_dilation_conv
from convtrans._src.numerics import accumulation_dtype
from convtrans._src.plan import Plan


def phase_kernels(kernel: jax.Array, config: Conv1DTransposeConfig, transposed: bool = False) -> list[jax.Array]:
    """For each of :func:`phase_groups`, its flipped kernel ``(taps, in/groups, groups * P * f/groups)``.

    ``P`` is the group's number of phases; output channels are ordered ``(group, phase, filter)``
    for channels_last and ``(group, filter, phase)`` for channels_first, which keeps the
    depth-to-space of each layout a reshape and one transpose. Groups with no taps get ``None``.
    ``transposed`` gives each tap's matrix the other way round, ``(taps, groups * P * f/groups,
    in/groups)``, which for ``groups = 1`` is Keras's own layout and costs no transpose of the
    kernel.
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
        rows = lax.slice_in_dim(
            w, group.first, group.first + (group.taps - 1) * group.step + 1, stride=group.step, axis=0
        )
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


def _empty_output(x: jax.Array, config: Conv1DTransposeConfig, steps: int) -> jax.Array:
    batch = x.shape[0]
    shape = (batch, steps, config.filters) if config.data_format == "channels_last" else (batch, config.filters, steps)
    # Multiplying by x keeps the result on x's sharding and in the differentiation graph.
    return jnp.zeros(shape, x.dtype) + 0 * jnp.sum(x, dtype=x.dtype)


def convolve(x: jax.Array, kernel: jax.Array, config: Conv1DTransposeConfig, precision: Any, plan: Plan) -> jax.Array:
    """The transposed convolution of ``x`` by ``kernel`` (no bias), computed as ``plan`` says.

    Args:
      x: ``(batch, n, in)`` (channels_last) or ``(batch, in, n)`` (channels_first); ``batch`` and
        ``n`` may be symbolic.
      kernel: Keras layout ``(k, filters // groups, in)``, in ``x``'s dtype.
      config: the layer configuration; only the convolution's fields are used.
      precision: ``lax.Precision`` of the convolution.
      plan: a :class:`convtrans._src.plan.Plan` that applies to the layer (see
        :func:`convtrans._src.dispatch.check_plan`).

    Returns:
      ``(batch, out, filters)`` or ``(batch, filters, out)`` with
      ``out = output_length(config, n)``; equal to :func:`convtrans._src.kernels.reference.lhs_dilation_conv`.
    """
    if plan.is_uniform and plan.forward in ("lhs_dilation", "gemm"):
        # Uniform plans of the reference and the GEMM form are those functions and their own
        # derivatives (the reference then is bit for bit Keras's).
        return _FORMS[plan.forward](x, kernel, config, precision)
    steps = output_length(config, x.shape[config.time_axis % 3])
    if steps == 0 or x.shape[0] == 0:
        return _empty_output(x, config, steps)
    return _convolve(x, kernel, config, precision, plan)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _convolve(x: jax.Array, kernel: jax.Array, config: Conv1DTransposeConfig, precision: Any, plan: Plan) -> jax.Array:
    if plan.forward in ("polyphase", "winograd"):
        return _convolve_plain(
            x,
            kernel,
            config,
            precision,
            winograd=plan.forward == "winograd",
            stacked=plan.correlation == "stacked_product",
        )
    return _FORMS[plan.forward](x, kernel, config, precision)


def _convolve_plain(
    x: jax.Array,
    kernel: jax.Array,
    config: Conv1DTransposeConfig,
    precision: Any,
    winograd: bool,
    stacked: bool = False,
) -> jax.Array:
    """The polyphase convolution; ``winograd``: its two- and three-tap phases by
    :func:`convtrans._src.kernels.winograd.correlate`; ``stacked``: its other correlations as
    stacked-window products (:func:`_correlate`)."""
    if config.strides == 1:
        return _stride_one(x, kernel, config, precision, winograd, stacked)
    if not phases_share_taps(config) or config.strides > PHASE_LOOP_MAX_STRIDES:
        return _without_phase_loop(x, kernel, config, precision)
    return _phases(x, kernel, config, precision, winograd, stacked)


def _without_phase_loop(x: jax.Array, kernel: jax.Array, config: Conv1DTransposeConfig, precision: Any) -> jax.Array:
    """The layers the phase forms should not trace: with ``s >= ke`` every full-result position
    receives at most one product, which the GEMM form places with no phase at all; a stride past
    :data:`PHASE_LOOP_MAX_STRIDES` (and so a span ``ke`` larger still) goes to the reference,
    whose single convolution does not grow in Python with the stride either."""
    if not phases_share_taps(config):
        return gemm_conv(x, kernel, config, precision)
    return lhs_dilation_conv(x, kernel, config, precision)


@functools.partial(_convolve.defjvp, symbolic_zeros=True)
def _convolve_jvp(config, precision, plan, primals, tangents):
    # The map is bilinear, so its tangent is the map applied to (dx, kernel) plus the map applied
    # to (x, dkernel); each term may be computed by another form of the same map.
    x, kernel = primals
    dx, dkernel = tangents
    y = _convolve(x, kernel, config, precision, plan)
    # Symbolic zeros (an argument not being differentiated, such as the input data of a first
    # layer) are skipped rather than multiplied: that would cost a whole extra forward pass.
    dy = None
    if not isinstance(dx, SymbolicZero):
        dy = _tangent_map(plan.input_gradient)(dx, kernel, config, precision)
    if not isinstance(dkernel, SymbolicZero):
        term = _tangent_map(plan.kernel_gradient)(x, dkernel, config, precision)
        dy = term if dy is None else dy + term
    return y, jnp.zeros_like(y) if dy is None else dy


def _tangent_map(form: str) -> Callable[..., jax.Array]:
    """The map that computes a tangent term by ``form``, in the accumulation dtype.

    The GEMM form accumulates in float32 by itself. The others run on float32 copies of 16-bit
    operands and round once, so that reverse mode sums the phase groups' input-gradient terms
    before rounding (rounding each term first loses bits where they cancel).
    """
    if form == "gemm":
        return gemm_conv
    if form == "zero_padded":
        fn = _phases_as_one
    elif form == "lhs_dilation":
        fn = lhs_dilation_conv
    else:
        fn = functools.partial(_convolve_plain, winograd=form == "winograd")
    return functools.partial(_in_accumulation_dtype, fn)


def _in_accumulation_dtype(fn, a: jax.Array, b: jax.Array, config: Conv1DTransposeConfig, precision: Any) -> jax.Array:
    """``fn(a, b, config, precision)`` computed in :func:`accumulation_dtype`, rounded once.

    For 16-bit inputs, the tangent's phase groups are then summed in float32 when reverse mode
    transposes it: the input gradient adds one term per phase group, and rounding each term to
    bfloat16 first loses bits where they cancel.
    """
    dtype = a.dtype
    wide = accumulation_dtype(dtype)
    return fn(a.astype(wide), b.astype(wide), config, precision).astype(dtype)


def _stride_one(
    x: jax.Array, kernel: jax.Array, config: Conv1DTransposeConfig, precision: Any, winograd: bool, stacked: bool
) -> jax.Array:
    pads = transpose_pads(config)
    if winograd and _correlates_by_winograd(x.dtype, config.kernel_size, config):
        xp = pad_time(x, config, *pads)
        return winograd_correlation.correlate(xp, jnp.flip(kernel, axis=0), config.dilation_rate, config, precision)
    rhs = jnp.flip(conv_kernel_to_wio(kernel, config.groups), axis=0)
    # Zero padding handed to the convolution itself, as flax's ConvTranspose does, costs no padded
    # copy of the input. Crops stay outside (XLA:CPU's gradients of a convolution with negative
    # padding ran several times slower), and the stacked product slices the padded input.
    if stacked or min(pads) < 0:
        x, pads = pad_time(x, config, *pads), (0, 0)
    return _correlate(x, rhs, config.dilation_rate, config, precision, stacked, pads)


def _correlates_by_winograd(dtype: Any, taps: int, config: Conv1DTransposeConfig) -> bool:
    return config.groups == 1 and winograd_correlation.applies(dtype, taps)


def _correlate(
    xp: jax.Array,
    rhs: jax.Array,
    step: int,
    config: Conv1DTransposeConfig,
    precision: Any,
    stacked: bool = False,
    pads: tuple[int, int] = (0, 0),
) -> jax.Array:
    """``z[b, q, o] = sum_{i, c} xp[b, q + i * step, c] rhs[i, c, o]`` per group, in ``xp``'s layout.

    ``pads = (left, right) >= 0`` zero steps are added to ``xp`` along time by the convolution
    itself (not with ``stacked``, whose caller pads).

    ``rhs`` is ``(taps, in/groups, groups * out/groups)`` (WIO); the result has
    ``left + xp_steps + right - (taps - 1) * step`` steps. A stride-1 convolution, or, with
    ``stacked``, the ``taps`` shifted windows of ``xp`` stacked (``taps`` times the input) and
    multiplied in ONE ``dot_general`` accumulated in :func:`accumulation_dtype`, rounded to the
    input's dtype once, like the convolution.
    """
    taps, in_per_group, out_channels = rhs.shape
    if not stacked:
        return lax.conv_general_dilated(
            xp,
            rhs,
            window_strides=(1,),
            padding=[pads],
            rhs_dilation=(step,),
            dimension_numbers=dimension_numbers(config),
            feature_group_count=config.groups,
            precision=precision,
        )
    assert pads == (0, 0), "the stacked product's caller pads"
    g = config.groups
    time_axis = config.time_axis % 3
    steps = xp.shape[time_axis] - (taps - 1) * step
    windows = jnp.stack(
        [lax.slice_in_dim(xp, i * step, i * step + steps, axis=time_axis) for i in range(taps)], axis=time_axis + 1
    )
    w = rhs.reshape(taps, in_per_group, g, out_channels // g)
    batch = xp.shape[0]
    if config.data_format == "channels_last":  # windows: (batch, steps, taps, in)
        lhs = windows.reshape(batch, steps, taps, g, in_per_group)
        dims = (((2, 4), (0, 1)), ((3,), (2,)))
    else:  # windows: (batch, in, steps, taps)
        lhs = windows.reshape(batch, g, in_per_group, steps, taps)
        dims = (((4, 2), (0, 1)), ((1,), (2,)))
    z = lax.dot_general(lhs, w, dims, precision=precision, preferred_element_type=accumulation_dtype(xp.dtype))
    z = z.astype(xp.dtype)  # (g, batch, steps, out/g)
    if config.data_format == "channels_last":
        return z.transpose(1, 2, 0, 3).reshape(batch, steps, out_channels)
    return z.transpose(1, 0, 3, 2).reshape(batch, out_channels, steps)


def _phases(
    x: jax.Array, kernel: jax.Array, config: Conv1DTransposeConfig, precision: Any, winograd: bool, stacked: bool
) -> jax.Array:
    """The polyphase convolution proper (``strides > 1``, non-empty output).

    Seen as ``ceil(steps / s)`` rows of ``s`` steps, the output has one phase per column (see
    :func:`convtrans._src.geometry.phase_column`). With every phase in one group (``k % s == 0`` and
    ``d = 1``, every vocoder upsampler) the group computes the fewest whole blocks covering the
    output (:func:`convtrans._src.geometry.output_blocks`), which interleave into steps, and the output
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
    groups = list(
        zip(
            phase_groups(config.kernel_size, s, config.dilation_rate),
            phase_kernels(kernel, config),
            phase_kernels(kernel, config, transposed=True),
        )
    )
    if len(groups) == 1:
        ((group, rhs, rhs_transposed),) = groups
        return _one_group(
            x, group, rhs, rhs_transposed, config, output_blocks(config, steps), steps, precision, winograd, stacked
        )
    rows = -(-steps // s)
    channels_last = config.data_format == "channels_last"
    columns = []  # (column, piece): piece holds the phases of columns column, column + 1, ...
    for group, rhs, rhs_transposed in groups:
        placed = [phase_column(config, r) for r in group.phases]
        lo = min(p.first for p in placed)
        blocks = max(p.first for p in placed) + rows - lo
        z = _group_blocks(x, group, rhs, rhs_transposed, lo, blocks, config, precision, winograd, stacked)
        # Phases whose first output step lies in the same block share rows; each such run of
        # consecutive columns is one piece.
        runs: list[list[int]] = []
        for i in sorted(range(len(placed)), key=lambda i: placed[i].column):
            if (
                runs
                and placed[i].first == placed[runs[-1][-1]].first
                and (placed[i].column == placed[runs[-1][-1]].column + 1)
            ):
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


def _one_group(
    x: jax.Array,
    group: PhaseGroup,
    rhs: jax.Array,
    rhs_transposed: jax.Array | None,
    config: Conv1DTransposeConfig,
    placed: OutputBlocks,
    steps: int,
    precision: Any,
    winograd: bool,
    stacked: bool,
) -> jax.Array:
    """``steps`` output steps from a group holding every phase: the blocks ``placed`` names,
    interleaved into steps, and one contiguous slice of them."""
    first, stop, start = placed
    z = _group_blocks(x, group, rhs, rhs_transposed, first, stop - first, config, precision, winograd, stacked)
    return lax.slice_in_dim(_interleave(z, config), start, start + steps, axis=config.time_axis % 3)


def _phases_as_one(x: jax.Array, kernel: jax.Array, config: Conv1DTransposeConfig, precision: Any) -> jax.Array:
    """:func:`_phases` of a ``d = 1`` layer as ONE convolution: the kernel padded with zero taps
    to a multiple of ``s``, so that every phase has the same taps (for the kernel's tangent).

    Zero taps appended at the end leave every real tap's full-result positions where they were,
    so the output is the same blocks of the full result as ``config``'s. Reverse mode transposes
    this into one weight-gradient convolution (the zero taps' rows are computed, then dropped)
    instead of one per phase group.
    """
    s, k = config.strides, config.kernel_size
    if not phases_share_taps(config) or s > PHASE_LOOP_MAX_STRIDES:
        return _without_phase_loop(x, kernel, config, precision)
    whole = -(-k // s) * s
    padded = config.replace(kernel_size=whole)
    kernel = jnp.pad(kernel, ((0, whole - k), (0, 0), (0, 0)))
    (group,), (rhs,) = phase_groups(whole, s, 1), phase_kernels(kernel, padded)
    steps = output_length(config, x.shape[config.time_axis % 3])
    return _one_group(
        x, group, rhs, None, padded, output_blocks(config, steps), steps, precision, winograd=False, stacked=False
    )


def _group_blocks(
    x: jax.Array,
    group: PhaseGroup,
    rhs: jax.Array | None,
    rhs_transposed: jax.Array | None,
    lo: int,
    blocks: int,
    config: Conv1DTransposeConfig,
    precision: Any,
    winograd: bool,
    stacked: bool,
) -> jax.Array:
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
    xp = pad_time(x, config, last - lo, lo + blocks - n - group.first)
    if winograd and _correlates_by_winograd(x.dtype, group.taps, config):
        assert rhs_transposed is not None  # every caller that allows winograd passes the transposed taps
        z = winograd_correlation.correlate(xp, rhs_transposed, group.step, config, precision)
    else:
        z = _correlate(xp, rhs, group.step, config, precision, stacked)
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


_FORMS = {"lhs_dilation": lhs_dilation_conv, "gemm": gemm_conv}

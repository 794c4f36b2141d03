"""Exact streaming of one transposed convolution, chunk by chunk with a carried state.

A signal of any length goes through in chunks; each :func:`step` returns ``chunk_size * strides``
output samples and :func:`finish` returns a short fixed-length tail. Together they reproduce
:func:`convtrans.conv1d_transpose` on the whole signal (bias and activation included), for every
padding mode, stride, dilation, group count and data format, in memory that does not grow with the
signal. Everything is a pure function of arrays, so a step works under ``jax.jit`` and as the body
of ``jax.lax.scan``::

    state = streaming.init(config, batch_size=1)
    for chunk in chunks:                                # (batch, m, in_channels), any m >= 1
        state, y = streaming.step(params, state, chunk, config)   # (batch, m * strides, filters)
        play(y)
    play(streaming.finish(params, state, config))       # (batch, tail_length(config), filters)

The played stream is ``latency(config)`` zeros followed by exactly the whole-signal output.

Math (``n`` input steps so far, ``s`` stride, ``ke`` effective kernel size, ``(left, right)`` the
pads of :func:`convtrans._src.geometry.transpose_pads`, ``c = full_result_offset(config)``): input step
``i`` times tap ``j`` lands at position ``i * s + j * d`` of the *full* result, and output step
``t`` is full position ``t + c``. Once ``n`` steps are in, full positions ``< n * s`` are final;
the positions ``[n * s, n * s + ke - s)`` still wait for contributions of later steps. The output
ends at full position ``n * s + right + 1 - s``, so when ``right < s - 1`` the last
``hold = s - 1 - right`` final positions may still be cropped by the end of the signal, and a step
holds them back. The state therefore carries the ``carry_length = hold + max(ke - s, 0)`` partial
sums at full positions ``[n * s - hold, ...)``. A step computes its chunk's full result with a
registered kernel function (``padding=(0, 0)``: no crop), overlap-adds it onto the carry, emits the
first ``m * s`` samples (full positions ``[n * s - hold, (n + m) * s - hold)``) after bias and
activation, and keeps the rest as the new carry. The emitted stream thus starts at full position
``-hold``, i.e. ``latency = c + hold`` samples before output step 0; those samples are emitted as
zeros. At the end, :func:`finish` emits full positions up to the end of the output:
``tail_length = max(right + 1 - s, 0)`` samples, independent of the signal length.

Numerics: each sample is the same sum of products as in the whole-signal evaluation, grouped
differently where chunks overlap, so results agree to rounding (exactly, when every partial sum is
representable, e.g. small integers in float32).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import DTypeLike

from convtrans._src.api import (
    Aux,
    Implementation,
    Params,
    as_batch,
    bias_and_activation,
    check_input,
    check_params,
    regularization_terms,
    transposed_convolution,
)
from convtrans._src.checks import (
    check_allocation,
    check_count,
    check_floating_weight,
    check_params_mapping,
    floating_dtype,
)
from convtrans._src.config import Conv1DTransposeConfig, check_config
from convtrans._src.geometry import effective_kernel_size, full_result_offset, output_length, transpose_pads
from convtrans._src.kernels.layout import pad_time

# Keras applies these to the last axis whatever the data format; for channels_first that is the
# time axis, where a chunk cannot see the rest of the signal.
_TIME_MIXING_ACTIVATIONS = frozenset({"softmax", "log_softmax", "sparsemax", "glu"})


@functools.partial(jax.tree_util.register_dataclass, data_fields=["carry", "preroll"], meta_fields=["config"])
@dataclasses.dataclass(frozen=True)
class StreamState:
    """What a stream carries between chunks: a pytree of two arrays, tagged with its layer.

    Attributes:
      carry: partial sums (no bias) of the next ``carry_length(config)`` full-result positions,
        ``(*batch, carry_length, filters)`` for channels_last or ``(*batch, filters, carry_length)``
        for channels_first, in the stream's dtype.
      preroll: int32 scalar, how many leading zero samples of ``latency(config)`` are still to
        be emitted.
      config: the layer the stream was made for (static pytree metadata, not a leaf): a state of
        another layer is refused even when its carry has the same shape.
    """

    carry: jax.Array
    preroll: jax.Array
    config: Conv1DTransposeConfig | None = None


def _hold(config: Conv1DTransposeConfig) -> int:
    """Final samples a step keeps back because the end of the signal may still crop them."""
    return max(config.strides - 1 - transpose_pads(config).right, 0)


def carry_length(config: Conv1DTransposeConfig) -> int:
    """Time steps of the carried partial sums: ``hold + max(ke - s, 0)``, with
    ``hold = max(s - 1 - right, 0)``, ``ke`` the dilated kernel's span and ``right`` the right pad
    of :func:`convtrans.transpose_pads`."""
    _check_config(config)
    ke = effective_kernel_size(config.kernel_size, config.dilation_rate)
    return _hold(config) + max(ke - config.strides, 0)


def latency(config: Conv1DTransposeConfig) -> int:
    """Zero samples the stream emits before output step 0: ``c + hold``, with ``c = ke - 1 - left``
    the full-result position of output step 0 and ``hold = max(s - 1 - right, 0)`` (``(left,
    right)`` from :func:`convtrans.transpose_pads`)."""
    _check_config(config)
    return full_result_offset(config) + _hold(config)


def tail_length(config: Conv1DTransposeConfig) -> int:
    """Samples :func:`finish` returns: ``max(right + 1 - s, 0)`` with ``right`` the right pad.

    With the stream's latency this closes the books: ``n * s`` step samples plus the tail equal
    ``latency(config) + output_length(config, n)`` for every ``n``.
    """
    _check_config(config)
    return max(transpose_pads(config).right + 1 - config.strides, 0)


def _check_config(config: Any) -> None:
    if isinstance(getattr(config, "config", None), Conv1DTransposeConfig):
        raise TypeError(
            f"config must be a Conv1DTransposeConfig, got the module {type(config).__name__}: pass "
            "its .config, or stream a whole model with convtrans.streaming.Streamer(model, variables)."
        )
    check_config(config)
    if config.data_format == "channels_first" and config.activation in _TIME_MIXING_ACTIVATIONS:
        raise ValueError(
            f"activation={config.activation!r} with data_format='channels_first' acts on the last "
            "axis, which is time: every output sample depends on the whole signal, so it cannot "
            "be streamed. Stream with activation=None and apply it to the whole output, or use "
            "channels_last."
        )
    # Keras's modes never start the output before the full result; the stream relies on it.
    assert full_result_offset(config) >= 0


def _full_config(config: Conv1DTransposeConfig) -> Conv1DTransposeConfig:
    """The same convolution with no crop: its output is the full result, ``(m - 1) * s + ke``."""
    return config.replace(padding=(0, 0), output_padding=None)


def _split_time(a: jax.Array, config: Conv1DTransposeConfig, at: int) -> tuple[jax.Array, jax.Array]:
    axis = config.time_axis % 3
    return lax.slice_in_dim(a, 0, at, axis=axis), lax.slice_in_dim(a, at, a.shape[axis], axis=axis)


def _emit(
    params: Params, z: jax.Array, preroll: jax.Array, config: Conv1DTransposeConfig
) -> tuple[jax.Array, jax.Array]:
    """Bias and activation on the raw samples ``z``; the first ``preroll`` of them become zeros."""
    y = bias_and_activation(params, z, config)
    steps = z.shape[config.time_axis]
    index = jnp.arange(steps, dtype=jnp.int32)
    index = index[None, :, None] if config.data_format == "channels_last" else index[None, None, :]
    y = jnp.where(index < preroll, jnp.zeros((), y.dtype), y)
    return y, jnp.maximum(preroll - steps, 0).astype(jnp.int32)


def _unboxed(params: Any) -> Any:
    """``params`` with flax metadata boxes (e.g. ``convtrans.optim.Constrained``) opened, as
    ``module.apply`` opens them."""
    if isinstance(params, Mapping):
        return {
            name: value.unbox() if callable(getattr(value, "unbox", None)) else value for name, value in params.items()
        }
    return params


def _check_bias(params: Any, config: Conv1DTransposeConfig) -> None:
    """What :func:`finish` reads of ``params``: the bias, when the config has one."""
    check_params_mapping(params)
    if config.use_bias:
        bias = params.get("bias")
        if not hasattr(bias, "shape") or tuple(bias.shape) != (config.filters,):
            got = tuple(bias.shape) if hasattr(bias, "shape") else type(bias).__name__
            raise ValueError(f"params['bias'] must have shape ({config.filters},), got {got}.")
        check_floating_weight(bias, "params['bias']")


def state_shape(config: Conv1DTransposeConfig, batch_shape: tuple[int, ...]) -> tuple[int, ...]:
    steps = carry_length(config)
    if config.data_format == "channels_last":
        return (*batch_shape, steps, config.filters)
    return (*batch_shape, config.filters, steps)


def zero_state(shape: tuple[int, ...], dtype: Any, what: str, cause: str) -> np.ndarray:
    """Zeros of ``shape`` for a stream state (``what``), checked to be allocatable first (``cause``
    names the arguments the shape comes from). NumPy: initial states stay concrete while a
    streamer traces its set-up pass abstractly."""
    check_allocation({what: shape}, dtype, cause)
    return np.zeros(shape, dtype)


def state_cause(config: Conv1DTransposeConfig, batch_shape: tuple[int, ...]) -> str:
    """The arguments a carry's shape comes from, in words."""
    return (
        f"it comes from batch_size={batch_shape if len(batch_shape) != 1 else batch_shape[0]}, "
        f"filters={config.filters} and carry_length={carry_length(config)} (from kernel_size="
        f"{config.kernel_size}, strides={config.strides}, dilation_rate={config.dilation_rate})"
    )


def batch_shape_of(batch_size: Any) -> tuple[int, ...]:
    """``batch_size`` as the batch axes of the chunks: an int, or a tuple of ints (``()``: unbatched)."""
    if isinstance(batch_size, (tuple, list)):
        return tuple(check_count(size, f"batch_size[{i}]", minimum=0) for i, size in enumerate(batch_size))
    return (check_count(batch_size, "batch_size", minimum=0),)


def init(
    config: Conv1DTransposeConfig, batch_size: int | tuple[int, ...], dtype: DTypeLike = jnp.float32
) -> StreamState:
    """The state of a stream of ``config`` that has seen nothing yet.

    Args:
      config: the layer's configuration.
      batch_size: number of independent signals streamed together, or the tuple of the chunks'
        batch axes: ``()`` for unbatched ``(m, in_channels)`` chunks, ``(a, b)`` for
        ``(a, b, m, in_channels)`` ones.
      dtype: the floating dtype of the chunks (and of the outputs).

    Returns:
      A :class:`StreamState` with a zero carry of shape ``(*batch, carry_length(config),
      filters)`` (channels_first: ``(*batch, filters, carry_length)``).
    """
    _check_config(config)
    batch_shape = batch_shape_of(batch_size)
    dtype = floating_dtype(dtype)
    return StreamState(
        carry=jnp.asarray(
            zero_state(
                state_shape(config, batch_shape), dtype, "the stream state's carry", state_cause(config, batch_shape)
            )
        ),
        preroll=jnp.asarray(latency(config), jnp.int32),
        config=config,
    )


def _check_state(
    state: Any, config: Conv1DTransposeConfig, batch_shape: tuple[int, ...] | None = None, dtype: Any = None
) -> None:
    """``state`` must be a stream of ``config`` over ``batch_shape`` (default: the carry's own
    batch axes) in ``dtype`` (default: any)."""
    if not isinstance(state, StreamState):
        raise TypeError(f"state must be a StreamState from convtrans.streaming.init, got {type(state).__name__}.")
    if not hasattr(state.carry, "shape") or not hasattr(state.carry, "dtype") or len(state.carry.shape) < 2:
        raise TypeError(f"state.carry must be an array of rank >= 2, got {type(state.carry).__name__}.")
    preroll = state.preroll
    if not (hasattr(preroll, "shape") and hasattr(preroll, "dtype")) or (preroll.dtype, preroll.shape) != (
        jnp.int32,
        (),
    ):
        described = f"{preroll.dtype} of shape {tuple(preroll.shape)}" if hasattr(preroll, "shape") else repr(preroll)
        raise TypeError(f"state.preroll must be an int32 scalar array (from init()), got {described}.")
    if state.config is not None and state.config != config:
        raise ValueError(
            f"state was made for another layer: {_differences(state.config, config)}; "
            "start the stream with init() for this config."
        )
    if batch_shape is None:
        batch_shape = tuple(state.carry.shape[:-2])
    expected = state_shape(config, batch_shape)
    if tuple(state.carry.shape) != expected:
        raise ValueError(
            f"state.carry has shape {tuple(state.carry.shape)}, but this config and batch axes "
            f"{batch_shape} need {expected}; was the state made by init() with the same config "
            "and batch size?"
        )
    if dtype is not None and state.carry.dtype != dtype:
        raise TypeError(
            f"x has dtype {dtype} but the stream was initialized for {state.carry.dtype}; pass "
            f"dtype={dtype} to init() or cast the chunks."
        )


def _differences(made_for: Conv1DTransposeConfig, given: Conv1DTransposeConfig) -> str:
    fields = [
        field.name for field in dataclasses.fields(given) if getattr(made_for, field.name) != getattr(given, field.name)
    ]
    return ", ".join(
        f"{name}={getattr(made_for, name)!r} in the state's config, {getattr(given, name)!r} in config"
        for name in fields
    )


def step(
    params: Params,
    state: StreamState,
    x: jax.Array,
    config: Conv1DTransposeConfig,
    *,
    precision: lax.PrecisionLike = None,
    implementation: Implementation = None,
) -> tuple[StreamState, jax.Array]:
    """Feed one chunk; return the new state and the ``m * strides`` samples that are now final.

    Args:
      params: as for :func:`convtrans.conv1d_transpose`.
      state: from :func:`init` or the previous step.
      x: the next ``m >= 1`` input steps, ``(*batch, m, in_channels)`` (channels_last) or
        ``(*batch, in_channels, m)`` with the batch axes given to :func:`init`, in its dtype. The
        chunk size may change from call to call (each size compiles once under jit).
      config: the layer's configuration (static under jit).
      precision: as for :func:`convtrans.conv1d_transpose`.
      implementation: as for :func:`convtrans.conv1d_transpose`.

    Returns:
      ``(state, y)`` with ``y`` of shape ``(*batch, m * strides, filters)`` (channels_first:
      ``(*batch, filters, m * strides)``): the next samples of the stream, i.e. of
      ``latency(config)`` zeros followed by the whole-signal output.
    """
    _check_config(config)
    params = _unboxed(params)
    full = _full_config(config)
    in_channels = check_input(x, full)
    check_params(params, full, in_channels)
    _check_state(state, config, tuple(x.shape[:-2]), x.dtype)
    x, lead = as_batch(x)
    previous, _ = as_batch(state.carry)

    m = x.shape[config.time_axis]
    emitted = m * config.strides
    size = emitted + carry_length(config)
    contribution = transposed_convolution(x, params["kernel"].astype(x.dtype), full, precision, implementation)
    hold = _hold(config)
    # Both pads are >= 0: the contribution spans (m - 1) * s + ke <= size - hold (module doc).
    window = pad_time(contribution, config, hold, size - hold - contribution.shape[config.time_axis])
    window = window + pad_time(previous, config, 0, size - previous.shape[config.time_axis])
    z, carry = _split_time(window, config, emitted)
    y, preroll = _emit(params, z, state.preroll, config)
    carry = carry.reshape(lead + carry.shape[1:])
    return StreamState(carry=carry, preroll=preroll, config=config), y.reshape(lead + y.shape[1:])


def finish(params: Params, state: StreamState, config: Conv1DTransposeConfig) -> jax.Array:
    """The end of the stream: the last ``tail_length(config)`` samples, after the final chunk.

    Call it once, after at least one :func:`step` (like the whole-signal op, a stream needs one
    input step; a padding that crops more than a short signal's full result leaves only part of
    the latency's zeros, where the whole-signal op raises).

    Returns:
      ``(*batch, tail_length(config), filters)`` (channels_first: ``(*batch, filters, tail)``) in
      the stream's dtype: full-result positions past the last step's samples (zero-padded where
      ``output_padding`` reaches beyond the full result), with bias and activation.
    """
    _check_config(config)
    params = _unboxed(params)
    _check_state(state, config)
    _check_bias(params, config)
    carry, lead = as_batch(state.carry)
    steps = tail_length(config)
    held = carry.shape[config.time_axis]
    z = pad_time(carry, config, 0, steps - held)  # a negative pad crops
    y, _ = _emit(params, z, state.preroll, config)
    return y.reshape(lead + y.shape[1:])


def chunked_conv1d_transpose(
    params: Params,
    x: jax.Array,
    config: Conv1DTransposeConfig,
    chunk_size: int,
    *,
    precision: lax.PrecisionLike = None,
    implementation: Implementation = None,
) -> tuple[jax.Array, Aux]:
    """:func:`convtrans.conv1d_transpose` computed by streaming ``x`` in chunks under ``lax.scan``.

    Same arguments and result as the whole-signal op, plus ``chunk_size``: the steps per scan
    iteration (a shorter last chunk is one more step). Intermediate memory is that of one chunk,
    not of the signal; the output itself is of course materialized.
    """
    _check_config(config)
    params = _unboxed(params)
    check_params(params, config, check_input(x, config))
    chunk_size = check_count(chunk_size, "chunk_size", minimum=1)
    x, lead = as_batch(x)
    time = config.time_axis % 3
    n = x.shape[time]
    chunks, rest = divmod(n, chunk_size)

    def body(state: StreamState, chunk: jax.Array) -> tuple[StreamState, jax.Array]:
        return step(params, state, chunk, config, precision=precision, implementation=implementation)

    state = init(config, x.shape[0], x.dtype)
    pieces = []
    if chunks:
        head = lax.slice_in_dim(x, 0, chunks * chunk_size, axis=time)
        # (batch, ..., chunks * m, ...) -> (chunks, batch, ..., m, ...): scan runs over axis 0.
        split = head.shape[:time] + (chunks, chunk_size) + head.shape[time + 1 :]
        state, ys = lax.scan(body, state, jnp.moveaxis(head.reshape(split), time, 0))
        ys = jnp.moveaxis(ys, 0, time)
        # An explicit length (not -1): an empty batch leaves nothing to infer it from.
        pieces.append(ys.reshape(ys.shape[:time] + (ys.shape[time] * ys.shape[time + 1],) + ys.shape[time + 2 :]))
    if rest:
        state, y = body(state, lax.slice_in_dim(x, chunks * chunk_size, n, axis=time))
        pieces.append(y)
    pieces.append(finish(params, state, config))
    start = latency(config)
    y = lax.slice_in_dim(jnp.concatenate(pieces, axis=time), start, start + output_length(config, n), axis=time)
    return y.reshape(lead + y.shape[1:]), regularization_terms(params, y, config, examples=math.prod(lead))

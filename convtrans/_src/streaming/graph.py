"""Streaming a whole model: how each part of a model runs on one chunk of its stream.

A model streams when every part that mixes time steps knows how to: :class:`Conv1D`,
:class:`Conv1DTranspose` and :class:`Pad1D` keep the samples they still need, :class:`Residual`
and :class:`Parallel` delay their faster paths so that the paths line up. Everything else
(activations, per-step layers, ``nn.Sequential``) acts on each step alone and runs on a chunk as it
would on the whole signal. While a :class:`StreamContext` is active (:func:`active`), the parts'
``__call__`` hand their input to the functions here instead of computing on the whole signal.

The bookkeeping is a :class:`Cursor` that travels along the model with the data: at each point of
the model it says how many samples the stream has per model input step (``rate``), how many zeros
precede the whole-signal samples there (``latency``) and how the whole-signal length there
relates to the model's input length ``N`` (``length = N * rate + excess``). Steps emit exactly
``m * rate`` samples at every point; at the end (:data:`FINISH`) each part receives the
``latency + excess`` samples its input still owes and emits the ones it owes, so the books close
for every signal length that is a multiple of the model's chunk multiple. Each part chooses the
least output latency its causality allows, and a part that branches delays each path to the
latest one.

Stream positions: a point of latency ``L`` carries, at stream position ``p``, whole-signal sample
``p - L``. Positions ``p < L`` (the pre-roll) may hold anything, e.g. ``sigmoid(0)`` after a
per-step function; every part therefore treats its input's pre-roll as zeros, and the streamer
zeroes the model output's.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from convtrans._src.api import conv1d
from convtrans._src.checks import check_count, is_int
from convtrans._src.config import Conv1DConfig, Conv1DTransposeConfig
from convtrans._src.geometry import conv_pads, output_length
from convtrans._src.streaming import layer

INIT = "init"  # build the state: run on a chunk from the initial state, keep nothing
STEP = "step"  # one chunk of the stream
FINISH = "finish"  # the end: each part's input is the tail its upstream owes
PROBE = "probe"  # find the model's input channels and data format from its first layer

# A part's state: NumPy arrays in the initial state (concrete while the set-up pass is traced), jax arrays after.
State = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class PendingPad:
    """A reflect or replicate padding not yet applied to the stream.

    Such a padding looks ahead at the start (reflection) and so cannot emit a stream of uniform
    latency without delaying every sample; a convolution right after it reads the mirrored samples
    itself and needs only its own lookahead (``Pad1D(3, "reflect")`` then a valid ``Conv1D(k=7)``
    costs 3 samples, as ``"same"`` would). Per-step functions in between commute with copying
    samples, so the padding waits; any other part applies it first (:func:`settle`).
    """

    key: str
    left: int
    right: int
    mode: str


@dataclasses.dataclass(frozen=True)
class Cursor:
    """The stream at one point of a model (see the module docstring).

    Attributes:
      rate: samples per model input step at this point.
      latency: zeros before whole-signal sample 0 at this point, in samples of this point.
      excess: ``length - N * rate`` for the whole-signal length ``length`` at this point and the
        model input length ``N`` (a multiple of the chunk multiple).
      time_axis: the time axis of the arrays here (-2 channels_last, -1 channels_first).
      pending: a reflect/replicate padding that the next convolution applies as it reads.
    """

    rate: Fraction
    latency: int
    excess: int
    time_axis: int
    pending: PendingPad | None = None

    @property
    def tail(self) -> int:
        """Samples still owed after the last step: ``latency + excess``."""
        return self.latency + self.excess


class ChunkTooShort(Exception):
    """Raised during :data:`INIT` when a strided convolution needs chunks of ``multiple`` model
    input steps (caught by the streamer, which retries with a longer chunk)."""

    def __init__(self, multiple: int):
        super().__init__(multiple)
        self.multiple = multiple


class Probed(Exception):
    """Raised during :data:`PROBE` by the first layer: what the model's input must look like."""

    def __init__(self, in_channels: int | None, data_format: str):
        super().__init__(in_channels, data_format)
        self.in_channels = in_channels
        self.data_format = data_format


class StreamContext:
    """One pass of a model over one chunk: the mode, the cursor and each part's state.

    ``state`` maps each stateful part's key (its module path) to its state; in :data:`INIT` the
    parts write their initial state into ``initial`` instead, and in :data:`STEP` their next state
    into ``updated``.
    """

    def __init__(
        self,
        mode: str,
        cursor: Cursor,
        state: dict[str, State] | None = None,
        chunk_multiple: int = 1,
        keys: dict[int, str] | None = None,
    ):
        self.mode = mode
        self.keys = keys or {}
        self.cursor = cursor
        self.state = state or {}
        self.initial: dict[str, State] = {}
        self.updated: dict[str, State] = {}
        self.chunk_multiple = chunk_multiple
        self._visited: set[str] = set()

    def key_of(self, module: Any) -> str:
        """The state key of an nnx module: its path in the streamed model."""
        if id(module) not in self.keys:
            raise ValueError(
                f"a {type(module).__name__} outside the streamed model ran in the stream; "
                "every streamed layer must be an attribute of the model."
            )
        return self.keys[id(module)]

    def enter(self, key: str, initial: Callable[[], State]) -> State:
        """The state of part ``key`` for this pass (built by ``initial()`` in INIT)."""
        if key in self._visited:
            raise ValueError(
                f"the layer at {key!r} ran twice in one pass; a streamed model must apply each "
                "layer once per chunk (share weights by giving two layers the same parameters)."
            )
        self._visited.add(key)
        if self.mode == INIT:
            self.initial[key] = initial()
            return self.initial[key]
        if key not in self.state:
            raise ValueError(
                f"the stream state has no entry for the layer at {key!r}; was it made by this streamer's init()?"
            )
        return self.state[key]

    def exit(self, key: str, state: State) -> None:
        if self.mode == STEP:
            self.updated[key] = state


_ACTIVE: contextvars.ContextVar[StreamContext | None] = contextvars.ContextVar("convtrans_stream", default=None)


def active() -> StreamContext | None:
    """The stream pass in progress, or None when the model runs on a whole signal."""
    return _ACTIVE.get()


@contextlib.contextmanager
def streaming(context: StreamContext) -> Iterator[StreamContext]:
    token = _ACTIVE.set(context)
    try:
        yield context
    finally:
        _ACTIVE.reset(token)


# --- array helpers along the time axis ---------------------------------------------------------


def _time(x: jax.Array, axis: int) -> int:
    return x.shape[axis]


def _slice(x: jax.Array, start: int, stop: int, axis: int) -> jax.Array:
    return lax.slice_in_dim(x, start, stop, axis=axis % x.ndim)


def _time_shape(x: jax.Array, steps: int, axis: int) -> tuple[int, ...]:
    """``x``'s shape with ``steps`` time steps."""
    shape = list(x.shape)
    shape[axis] = steps
    return tuple(shape)


def _zeros_like_time(x: jax.Array, steps: int, axis: int) -> jax.Array:
    return jnp.zeros(_time_shape(x, steps, axis), x.dtype)


def _concat(parts: Sequence[jax.Array], axis: int) -> jax.Array:
    return jnp.concatenate(parts, axis=axis % parts[0].ndim)


def _along_time(values: jax.Array, ndim: int, axis: int) -> jax.Array:
    """A 1-D array over time, shaped to broadcast against arrays of rank ``ndim``."""
    shape = [1] * ndim
    shape[axis] = values.shape[0]
    return values.reshape(shape)


def _history_state(x: jax.Array, steps: int, axis: int) -> dict[str, np.ndarray]:
    """An empty history of ``steps`` time steps (zeros of ``x``'s shape), none when 0. (Initial
    states are NumPy arrays, concrete even while the streamer traces its set-up pass abstractly.)"""
    if not steps:
        return {}
    shape = _time_shape(x, steps, axis)
    return {
        "history": layer.zero_state(
            shape,
            x.dtype,
            "a layer's stream history",
            f"it comes from the chunks' shape {tuple(x.shape)} (batch_size and channels) and {steps} steps of history",
        )
    }


def _with_history(state: State, x: jax.Array, axis: int) -> jax.Array:
    """The kept samples followed by the chunk."""
    return _concat([state["history"], x], axis) if "history" in state else x


def _kept(window: jax.Array, steps: int, axis: int) -> dict[str, jax.Array]:
    """The history to keep: the window's last ``steps`` samples (none when 0)."""
    width = _time(window, axis)
    return {"history": _slice(window, width - steps, width, axis)} if steps else {}


def _masked_lead(x: jax.Array, state: State, axis: int) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``x`` with the input's remaining pre-roll (``state["lead"]`` samples, one count per signal)
    set to zero."""
    if "lead" not in state:
        return x, {}
    steps = _time(x, axis)
    lead = state["lead"]
    index = _along_time(jnp.arange(steps, dtype=jnp.int32), 2, axis)
    x = jnp.where(index < lead[..., None, None], jnp.zeros((), x.dtype), x)
    return x, {"lead": jnp.maximum(lead - steps, 0).astype(jnp.int32)}


def _lead_state(latency: int, batch_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    # Counters are kept per signal so that every leaf of the state is batch first (and shards so).
    return {"lead": np.full(batch_shape, latency, np.int32)} if latency else {}


def _position_state(batch_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    return {"position": np.zeros(batch_shape, np.int32)}


def _position(state: State) -> jax.Array:
    """The stream position, as a scalar (every signal of a batch is at the same one)."""
    return jnp.max(state["position"], initial=0)


def _check_axis(cursor: Cursor, config: Any, where: str) -> None:
    if config.time_axis != cursor.time_axis:
        raise ValueError(
            f"the layer at {where!r} has data_format={config.data_format!r} but the stream there is "
            f"{'channels_last' if cursor.time_axis == -2 else 'channels_first'}; a streamed model "
            "keeps one data format throughout."
        )


def _check_steps(x: jax.Array, expected: int, cursor: Cursor, where: str) -> None:
    if _time(x, cursor.time_axis) != expected:
        raise ValueError(
            f"the layer at {where!r} received {_time(x, cursor.time_axis)} time steps where the stream "
            f"delivers {expected}; a streamed model may change the length only through convtrans "
            "layers (Conv1D, Conv1DTranspose, Pad1D)."
        )


def _check_tail(context: StreamContext, x: jax.Array, where: str) -> None:
    """At the end, a part's input is exactly the tail its upstream owes."""
    if context.mode == FINISH:
        _check_steps(x, context.cursor.tail, context.cursor, where)


# --- the layers --------------------------------------------------------------------------------


def conv(
    context: StreamContext, key: str, params: Any, x: jax.Array, config: Conv1DConfig, precision: Any = None
) -> jax.Array:
    """One chunk through Keras's ``Conv1D``.

    With input cursor ``(r, L, e)``, stride ``s``, span ``ke`` and pads ``(left, right)`` (fixed
    by ``e mod s``): output ``t`` reads input ``t * s - left + [0, ke)``, so the output latency is
    the least ``L'`` with ``L' * s >= L + ke - s - left`` (and ``L' + e' >= 0``), and a window
    starting ``c = L' * s + left - L`` samples before a chunk covers its outputs. The state keeps
    the last ``max(c, 0)`` input samples.
    """
    cursor = context.cursor
    _check_axis(cursor, config, key)
    axis, s, ke = cursor.time_axis, config.strides, config.effective_kernel_size
    mirror = cursor.pending or PendingPad("", 0, 0, "constant")
    padded_excess = cursor.excess + mirror.left + mirror.right
    # Any length congruent to the whole-signal length modulo s has the same "same" pads.
    own_left, own_right = conv_pads(config, s * (ke + 1) + padded_excess % s)
    left, right = own_left + mirror.left, own_right + mirror.right
    excess = (cursor.excess + left + right - ke) // s + 1
    lookahead = ke - left  # output t reads input t * s - left + [0, ke)
    if mirror.left:  # ... and, mirrored, input left (or 0)
        lookahead = max(lookahead, (mirror.left if mirror.mode == "reflect" else 0) + 1)
    latency = max(-(-(cursor.latency + lookahead - s) // s), -excess, 0)
    context_steps = latency * s + left - cursor.latency
    history = max(context_steps, mirror.right + 1 - cursor.tail if mirror.right else 0, 0)
    out = Cursor(cursor.rate / s, latency, excess, axis)

    _check_tail(context, x, key)
    steps = _time(x, axis)
    if context.mode != FINISH and steps % s:
        if context.mode == INIT:
            rate = cursor.rate
            raise ChunkTooShort(rate.denominator * s // math.gcd(rate.numerator, rate.denominator * s))
        raise ValueError(
            f"the layer at {key!r} (strides={s}) received a chunk of {steps} steps, not a "
            f"multiple of {s}; stream chunks of a multiple of {context.chunk_multiple} steps."
        )
    mirrored = mirror.left + mirror.right > 0
    state = context.enter(
        key,
        lambda: {
            **_history_state(x, history, axis),
            **_lead_state(cursor.latency, x.shape[:-2]),
            **(_position_state(x.shape[:-2]) if mirrored else {}),
        },
    )
    x, lead = _masked_lead(x, state, axis)
    window = _with_history(state, x, axis)
    count = out.tail if context.mode == FINISH else steps // s
    start = history - context_steps
    needed = start + (count - 1) * s + ke
    if needed > _time(window, axis):  # only at the end: the right padding's zeros
        window = _concat([window, _zeros_like_time(window, needed - _time(window, axis), axis)], axis)
    read = window
    if mirrored:
        read = _mirror_window(window, _position(state), history, cursor, mirror, axis, at_end=context.mode == FINISH)
        lead["position"] = jnp.minimum(state["position"] + steps, cursor.latency + history).astype(jnp.int32)
    if count > 0:
        y, _ = conv1d(params, _slice(read, start, needed, axis), config.replace(padding=(0, 0)), precision=precision)
    else:
        shape = list(x.shape)
        shape[axis], shape[config.channel_axis] = 0, config.filters
        y = jnp.zeros(shape, x.dtype)
    context.exit(key, {**_kept(window, history, axis), **lead})
    context.cursor = out
    return y


def _mirror_window(
    window: jax.Array, position: jax.Array, history: int, cursor: Cursor, mirror: PendingPad, axis: int, at_end: bool
) -> jax.Array:
    """``window`` (input stream positions ``[P - history, ...)``, ``P = position`` saturated once
    past the start) with the pending padding's zones filled by their mirror images: signal indices
    ``[-left, 0)`` at the start and, at the end, ``[n, n + right)``."""
    w = jnp.arange(_time(window, axis), dtype=jnp.int32)
    i = position - history + w - cursor.latency  # signal index at each window position
    source = w
    if mirror.left:
        start = (
            2 * (cursor.latency + history - position) - w
            if mirror.mode == "reflect"
            else jnp.broadcast_to(cursor.latency + history - position, w.shape)
        )
        source = jnp.where((i >= -mirror.left) & (i < 0), start, source)
    if at_end and mirror.right:
        past = w - history - cursor.tail  # index past the end, i - n (static)
        end = (
            2 * (history + cursor.tail) - 2 - w
            if mirror.mode == "reflect"
            else jnp.full_like(w, history + cursor.tail - 1)
        )
        source = jnp.where((past >= 0) & (past < mirror.right), end, source)
    return jnp.take(window, jnp.clip(source, 0, w.shape[0] - 1), axis=axis % window.ndim)


def settle(context: StreamContext, x: jax.Array) -> jax.Array:
    """``x`` with the pending padding (if any) applied: for every part but a convolution."""
    pending = context.cursor.pending
    if pending is None:
        return x
    context.cursor = dataclasses.replace(context.cursor, pending=None)
    return _pad(context, pending.key, x, pending.left, pending.right, pending.mode)


def conv_transpose(
    context: StreamContext,
    key: str,
    params: Any,
    x: jax.Array,
    config: Conv1DTransposeConfig,
    precision: Any = None,
    implementation: Any = None,
) -> jax.Array:
    """One chunk through Keras's ``Conv1DTranspose``: the one-layer stream of
    :mod:`convtrans._src.streaming.layer`, its input delayed by the cursor's latency.

    Zeros in contribute nothing, so an input latency ``L`` shifts the full result by ``L * s``:
    the output latency is ``L * s + layer.latency(config)``. At the end the input's tail goes in as
    a last chunk and the layer's own tail follows.
    """
    x = settle(context, x)
    cursor = context.cursor
    _check_axis(cursor, config, key)
    axis, s = cursor.time_axis, config.strides
    probe = s * (config.effective_kernel_size + 1)
    out = Cursor(
        cursor.rate * s,
        cursor.latency * s + layer.latency(config),
        cursor.excess * s + output_length(config, probe) - probe * s,
        axis,
    )
    _check_tail(context, x, key)
    batch_shape = tuple(x.shape[:-2])
    state = context.enter(
        key,
        lambda: {
            "carry": layer.zero_state(
                layer.state_shape(config, batch_shape),
                x.dtype,
                f"the stream carry of {key!r}",
                layer.state_cause(config, batch_shape),
            ),
            **_lead_state(cursor.latency, batch_shape),
        },
    )
    x, lead = _masked_lead(x, state, axis)
    stream = layer.StreamState(state["carry"], jnp.zeros((), jnp.int32), config)
    pieces = []
    if _time(x, axis):
        stream, y = layer.step(params, stream, x, config, precision=precision, implementation=implementation)
        pieces.append(y)
    if context.mode == FINISH:
        pieces.append(layer.finish(params, stream, config))
    y = _concat(pieces, axis)
    context.exit(key, {"carry": stream.carry, **lead})
    context.cursor = out
    return y


PAD_MODES = ("constant", "reflect", "replicate")


def check_pad(padding: Any, mode: Any, data_format: Any) -> tuple[int, int]:
    """``padding`` (an int or a ``(left, right)`` pair of ints >= 0) as ``(left, right)``; ``mode``
    one of :data:`PAD_MODES`; ``data_format`` channels_last or channels_first."""
    if mode not in PAD_MODES:
        raise ValueError(f"mode={mode!r} is unknown; expected one of {PAD_MODES}.")
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"data_format={data_format!r} is unknown; expected 'channels_last' or 'channels_first'.")
    pair = (padding, padding) if is_int(padding) else padding
    if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(is_int(p) and p >= 0 for p in pair):
        raise ValueError(f"padding must be an int >= 0 or a (left, right) pair of them, got {padding!r}.")
    return check_count(pair[0], "padding[0]", minimum=0), check_count(pair[1], "padding[1]", minimum=0)


def pad(
    context: StreamContext, key: str, x: jax.Array, left: int, right: int, mode: str, data_format: str
) -> jax.Array:
    """A padding on the stream: zeros now, reflect/replicate as a :class:`PendingPad`."""
    x = settle(context, x)
    axis = -2 if data_format == "channels_last" else -1
    if axis != context.cursor.time_axis:
        raise ValueError(
            f"the padding at {key!r} has data_format={data_format!r}, unlike the stream "
            "around it; a streamed model keeps one data format throughout."
        )
    if mode == "constant" or not left + right:
        return _pad(context, key, x, left, right, mode)
    context.cursor = dataclasses.replace(context.cursor, pending=PendingPad(key, left, right, mode))
    return x


def _pad(context: StreamContext, key: str, x: jax.Array, left: int, right: int, mode: str) -> jax.Array:
    """One chunk through a padding of ``left`` and ``right`` steps (``mode`` as for ``jnp.pad``,
    ``"replicate"`` being ``"edge"``).

    Output ``u`` of the padded signal copies input ``src(u)``: ``u - left`` inside; for ``u <
    left`` zero, ``left - u`` (reflect) or ``0`` (replicate); past the end its mirror. Reflection
    at the start looks ``left`` samples ahead, so its latency grows by ``left``; the other modes
    add none. The state keeps the last samples the copies reach back to and, for the start's
    mirror, the stream position.
    """
    cursor = context.cursor
    axis = cursor.time_axis
    latency = cursor.latency + (left if mode == "reflect" else 0)
    out = Cursor(cursor.rate, latency, cursor.excess + left + right, axis)
    delay = left + latency - cursor.latency
    history = max(delay, right + 1 - cursor.tail, 0) if mode != "constant" else delay
    _check_tail(context, x, key)
    mirrored = mode != "constant"
    state = context.enter(
        key,
        lambda: {
            **_history_state(x, history, axis),
            **_lead_state(cursor.latency, x.shape[:-2]),
            **(_position_state(x.shape[:-2]) if mirrored else {}),
        },
    )
    x, lead = _masked_lead(x, state, axis)
    steps = _time(x, axis)
    window = _with_history(state, x, axis)
    count = out.tail if context.mode == FINISH else steps
    if not mirrored:  # the pads are zeros: the pre-roll's and those past the end
        if count > _time(window, axis):
            window = _concat([window, _zeros_like_time(window, count - _time(window, axis), axis)], axis)
        y = _slice(window, history - delay, history - delay + count, axis)
    else:
        y = _mirrored(
            window,
            _position(state),
            count,
            history,
            delay,
            left,
            cursor,
            latency,
            mode,
            axis,
            at_end=context.mode == FINISH,
        )
    next_state = {**_kept(window, history, axis), **lead}
    if mirrored:
        # Saturates once past the start's mirror, so that it never overflows.
        next_state["position"] = jnp.minimum(state["position"] + steps, latency + left).astype(jnp.int32)
    context.exit(key, next_state)
    context.cursor = out
    return y


def _mirrored(
    window: jax.Array,
    position: jax.Array,
    count: int,
    history: int,
    delay: int,
    left: int,
    cursor: Cursor,
    latency: int,
    mode: str,
    axis: int,
    at_end: bool,
) -> jax.Array:
    """Outputs ``[P, P + count)`` of a reflect/replicate padding from ``window`` (input stream
    positions ``[P - history, ...)``), ``P`` the stream position (saturated) before the chunk."""
    i = jnp.arange(count, dtype=jnp.int32)
    u = position + i - latency  # padded-signal index of each output
    inside = history + i - delay
    if mode == "reflect":  # input left - u, at stream position L + left - u
        start = cursor.latency + left - u - position + history
    else:  # input 0, at stream position L
        start = jnp.full_like(i, cursor.latency + history) - position
    index = jnp.where(u < left, start, inside)
    if at_end:
        tail = cursor.tail
        past = i >= tail - cursor.latency + latency + left
        if mode == "reflect":  # input 2 (n - 1) - (u - left)
            end = history + 2 * tail - cursor.latency - 2 - i + latency + left
        else:  # input n - 1
            end = jnp.full_like(i, history + tail - 1)
        index = jnp.where(past, end, index)
    index = jnp.clip(index, 0, _time(window, axis) - 1)
    y = jnp.take(window, index, axis=axis % window.ndim)
    return jnp.where(_along_time(u < 0, y.ndim, axis), jnp.zeros((), y.dtype), y)


def delay(context: StreamContext, key: str, x: jax.Array, steps: int) -> jax.Array:
    """``x`` delayed by ``steps`` samples (a delay line; at the end it releases what it holds)."""
    if steps == 0:
        return x
    axis = context.cursor.time_axis
    state = context.enter(key, lambda: _history_state(x, steps, axis))
    window = _with_history(state, x, axis)
    context.exit(key, _kept(window, steps, axis))
    return window if context.mode == FINISH else _slice(window, 0, _time(window, axis) - steps, axis)


def _aligned(
    context: StreamContext,
    key: str,
    outputs: Sequence[jax.Array],
    cursors: Sequence[Cursor],
    names: Sequence[str],
    what: str,
) -> tuple[list[jax.Array], Cursor]:
    """The paths' outputs delayed to the latest path, and the cursor after them."""
    settled = []
    for y, cursor in zip(outputs, cursors):
        context.cursor = cursor
        settled.append((settle(context, y), context.cursor))
    first = settled[0][1]
    for name, (_, cursor) in zip(names, settled):
        if (cursor.rate, cursor.excess) != (first.rate, first.excess):
            raise ValueError(
                f"{what} at {key!r}: the path {name!r} changes the signal's length differently from "
                f"{names[0]!r} (rate {cursor.rate} vs {first.rate}, length offset {cursor.excess} vs "
                f"{first.excess}); paths that meet must keep one length."
            )
    latency = max(cursor.latency for _, cursor in settled)
    aligned = []
    for name, (y, cursor) in zip(names, settled):
        context.cursor = cursor
        aligned.append(delay(context, f"{key}/{name}", y, latency - cursor.latency))
    context.cursor = dataclasses.replace(first, latency=latency)
    return aligned, context.cursor


def residual(
    context: StreamContext, key: str, x: jax.Array, layers: Callable[[jax.Array], jax.Array]
) -> tuple[jax.Array, jax.Array]:
    """``(x, layers(x))`` on a chunk, the skip delayed by the layers' latency (or the reverse)."""
    x = settle(context, x)
    before = context.cursor
    y = layers(x)
    (skip, y), _ = _aligned(context, key, [x, y], [before, context.cursor], ["skip", "layers"], "Residual")
    return skip, y


def parallel(
    context: StreamContext, key: str, x: jax.Array, branches: Sequence[Callable[[jax.Array], jax.Array]]
) -> list[jax.Array]:
    """Each branch on the same chunk, delayed to the latest branch."""
    x = settle(context, x)
    before = context.cursor
    outputs, cursors = [], []
    for branch in branches:
        context.cursor = before
        outputs.append(branch(x))
        cursors.append(context.cursor)
    aligned, _ = _aligned(context, key, outputs, cursors, [f"branch_{i}" for i in range(len(branches))], "Parallel")
    return aligned

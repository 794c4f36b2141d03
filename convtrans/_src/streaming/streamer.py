"""``Streamer``: a whole model built from convtrans's parts, evaluated chunk by chunk, exactly."""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from convtrans._src.checks import check_count, floating_dtype
from convtrans._src.streaming import graph
from convtrans._src.streaming.layer import batch_shape_of

StreamerState = dict[str, Any]

# Each retry at least doubles the chunk; models with more strided layers than this do not exist.
_MAX_CHUNK_RETRIES = 64


class Streamer:
    """Streams a flax.linen (or flax.nnx) model built from convtrans's parts, one chunk at a time.

    The parts that mix time steps (:class:`convtrans.Conv1D`, :class:`convtrans.Conv1DTranspose`,
    :class:`convtrans.Pad1D`) keep the samples they still need between chunks; the parts that
    branch (:class:`convtrans.Residual`, :class:`convtrans.Parallel`) delay their faster paths to
    line them up; activations, per-step layers (e.g. ``nn.Dense`` on channels) and
    ``nn.Sequential`` run on a chunk unchanged. Any other branching (``x + f(x)`` written by hand)
    or time mixing (``flax.linen.Conv``) would see one chunk as a whole signal: express it with
    the parts above.

    With ``N`` input steps fed in chunks (each a multiple of :attr:`chunk_multiple`), the
    concatenation of every :meth:`step` output and of :meth:`finish` equals :attr:`latency` zeros
    followed by ``model.apply(variables, whole_signal)``, to float rounding.

    Attributes:
      latency: zeros before the model's first output sample, in output samples: the least the
        parts' causality allows (0 for a causal model).
      chunk_multiple: chunks hold a multiple of this many input steps (the strided Conv1Ds'
        downsampling, as far as the model does not upsample before them).
      rate: output samples per input step (e.g. 256 for a HiFi-GAN V1 generator), a Fraction.
      in_channels: the chunks' channels.
      data_format: the chunks' layout, ``"channels_last"`` ``(*batch, m, in_channels)`` or
        ``"channels_first"`` ``(*batch, in_channels, m)``.
      batch_shape: the chunks' batch axes.
      dtype: the chunks' and the outputs' dtype.

    Example::

        streamer = convtrans.streaming.Streamer(generator, variables, batch_size=1)
        state = streamer.init()
        for frames in mel_chunks:                       # (1, m, 80)
            state, audio = streamer.step(state, frames)  # (1, m * 256, 1)
            play(audio)
        play(streamer.finish(state))
    """

    model: Any
    variables: Any
    batch_shape: tuple[int, ...]
    dtype: np.dtype[Any]
    in_channels: int
    data_format: str
    chunk_multiple: int
    latency: int
    rate: Fraction

    def __init__(
        self,
        model: Any,
        variables: Any = None,
        batch_size: int | tuple[int, ...] = 1,
        *,
        in_channels: int | None = None,
        data_format: str | None = None,
        dtype: DTypeLike = jnp.float32,
        jit: bool = True,
    ) -> None:
        """
        Args:
          model: a ``flax.linen.Module`` whose ``__call__(x)`` maps a signal to a signal, or a
            ``flax.nnx.Module`` built from :mod:`convtrans.nnx`'s parts.
          variables: the linen model's variables, as for ``model.apply`` (params may be
            constraint-boxed or wrapped by ``nn.WeightNorm``); for an nnx model, None (its own
            state, as it is now) or an ``nnx.State`` of it.
          batch_size: signals streamed together, or the tuple of the chunks' batch axes (``()``:
            unbatched chunks).
          in_channels: the input's channels; by default those of the model's first convolution.
          data_format: the input's layout; by default that of the model's first convolution.
          dtype: the chunks' floating dtype.
          jit: compile :meth:`step` and :meth:`finish` (one compile per chunk size); False runs
            them op by op.
        """
        import flax.linen as nn
        from flax import nnx

        self.model = model
        if isinstance(model, nnx.Module):
            self._graphdef, state = nnx.split(model)
            variables = state if variables is None else variables
        elif isinstance(model, nn.Module):
            self._graphdef = None
            if variables is None:
                raise TypeError("a linen model streams with its variables: Streamer(model, variables, ...).")
        else:
            raise TypeError(f"model must be a flax.linen.Module or a flax.nnx.Module, got {type(model).__name__}.")
        self.variables = variables
        self.batch_shape = batch_shape_of(batch_size)
        self.dtype = floating_dtype(dtype)
        if in_channels is not None:
            in_channels = check_count(in_channels, "in_channels")
        if data_format not in (None, "channels_last", "channels_first"):
            raise ValueError(f"data_format={data_format!r} is unknown; expected 'channels_last' or 'channels_first'.")
        if in_channels is None or data_format is None:
            probed_channels, probed_format = self._probe(in_channels or 1)
            in_channels = in_channels or probed_channels
            data_format = data_format or probed_format
        self.in_channels, self.data_format = in_channels, data_format
        self._axis = -2 if data_format == "channels_last" else -1
        self._build()
        self._template = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), self.init())
        self._step = jax.jit(self._step_pass) if jit else self._step_pass
        self._finish = jax.jit(self._finish_pass) if jit else self._finish_pass

    # --- set-up ------------------------------------------------------------------------------

    def _chunk(self, steps: int) -> jax.ShapeDtypeStruct:
        inner = (steps, self.in_channels) if self._axis == -2 else (self.in_channels, steps)
        return jax.ShapeDtypeStruct((*self.batch_shape, *inner), self.dtype)

    def _start(self) -> graph.Cursor:
        return graph.Cursor(Fraction(1), 0, 0, self._axis)

    def _probe(self, channels: int) -> tuple[int, str]:
        context = graph.StreamContext(graph.PROBE, graph.Cursor(Fraction(1), 0, 0, -2))
        try:
            jax.eval_shape(
                functools.partial(self._run, context),
                self.variables,
                jax.ShapeDtypeStruct((*self.batch_shape, 1, channels), self.dtype),
            )
        except graph.Probed as found:
            if found.in_channels is not None:
                return found.in_channels, found.data_format
        except Exception as error:  # the model's own code may reject the placeholder input
            raise ValueError(
                "could not find the model's input channels and data format from its first "
                f"convtrans convolution ({type(error).__name__}: {error}); pass in_channels= and "
                "data_format= to Streamer."
            ) from error
        raise ValueError(
            "the model runs no convtrans Conv1D or Conv1DTranspose with parameters to "
            "take its input channels from; pass in_channels= and data_format= to Streamer."
        )

    def _build(self) -> None:
        """Runs the model once on the initial state to find the state, the latency and the chunk
        multiple (a strided convolution asks for longer chunks until every stride divides)."""
        multiple = 1
        for _ in range(_MAX_CHUNK_RETRIES):
            context = graph.StreamContext(graph.INIT, self._start(), chunk_multiple=multiple)
            try:
                # Abstract: the pass only needs shapes; the parts' initial states are concrete.
                y = jax.eval_shape(functools.partial(self._run, context), self.variables, self._chunk(multiple))
            except graph.ChunkTooShort as short:
                multiple = math.lcm(multiple, short.multiple)
                continue
            break
        else:  # pragma: no cover - would need a model with more than 64 strided layers
            raise RuntimeError("could not find a chunk size that every strided layer divides.")
        end = context.cursor
        if not hasattr(y, "shape") or len(y.shape) < 2:
            raise TypeError(f"the model must return one array (a signal), got {type(y).__name__}.")
        if y.shape[end.time_axis] != multiple * end.rate:
            raise ValueError(
                f"the model returned {y.shape[end.time_axis]} steps for a chunk of {multiple}, where "
                f"its convtrans layers give {multiple * end.rate}; a streamed model may change the "
                "length only through convtrans layers."
            )
        self._initial = context.initial
        self._output_shape = tuple(y.shape)
        self.chunk_multiple = multiple
        self.latency = end.latency
        self.rate = end.rate
        self._tail = end.tail

    # --- the stream --------------------------------------------------------------------------

    def init(self) -> StreamerState:
        """The state of a stream that has seen nothing: ``{"layers": {path: {name: array}},
        "preroll": int32 (*batch,)}``, every array batch first (histories ``(*batch, steps,
        channels)``, counters ``(*batch,)``)."""
        return {
            "layers": jax.tree.map(jnp.array, self._initial),
            "preroll": jnp.full(self.batch_shape, self.latency, jnp.int32),
        }

    def step(self, state: StreamerState, chunk: jax.Array) -> tuple[StreamerState, jax.Array]:
        """Feeds ``chunk`` (``(*batch, m, in_channels)``, channels_first ``(*batch, in_channels,
        m)``, ``m`` a multiple of :attr:`chunk_multiple`); returns the next state and the next
        ``m * rate`` output samples. Pure: usable under ``jax.jit`` and as a ``lax.scan`` body."""
        self._check_chunk(chunk)
        self._check_state(state)
        return self._step(self.variables, state, chunk)

    def finish(self, state: StreamerState) -> jax.Array:
        """The end of the stream, after the last chunk: ``latency + excess`` output samples, a
        number fixed by the model (the whole output's length minus ``N * rate``, plus latency)."""
        self._check_state(state)
        return self._finish(self.variables, state)

    def _step_pass(self, variables: Any, state: StreamerState, chunk: jax.Array) -> tuple[StreamerState, jax.Array]:
        context = graph.StreamContext(graph.STEP, self._start(), state["layers"], self.chunk_multiple)
        y = self._run(context, variables, chunk)
        y, preroll = self._masked(y, state["preroll"])
        return {"layers": {**state["layers"], **context.updated}, "preroll": preroll}, y

    def _finish_pass(self, variables: Any, state: StreamerState) -> jax.Array:
        context = graph.StreamContext(graph.FINISH, self._start(), state["layers"], self.chunk_multiple)
        chunk = self._chunk(0)
        y = self._run(context, variables, jnp.zeros(chunk.shape, chunk.dtype))
        return self._masked(y, state["preroll"])[0]

    def _run(self, context: graph.StreamContext, variables: Any, x: jax.Array) -> jax.Array:
        """The model on ``x`` in the stream pass ``context``, pending paddings applied."""
        if self._graphdef is None:
            with graph.streaming(context):
                return graph.settle(context, self.model.apply(variables, x))
        from flax import nnx

        model = nnx.merge(self._graphdef, variables)
        context.keys = {
            id(node): "/".join(map(str, path)) or type(node).__name__
            for path, node in nnx.iter_graph(model)
            if isinstance(node, nnx.Module)
        }
        with graph.streaming(context):
            return graph.settle(context, model(x))

    def _masked(self, y: jax.Array, preroll: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``y`` with its first ``preroll`` steps zeroed (the latency's zeros), and what is left."""
        steps = y.shape[self._axis]
        index = jnp.arange(steps, dtype=jnp.int32).reshape((steps, 1) if self._axis == -2 else (1, steps))
        y = jnp.where(index < preroll[..., None, None], jnp.zeros((), y.dtype), y)
        return y, jnp.maximum(preroll - steps, 0).astype(jnp.int32)

    # --- checks ------------------------------------------------------------------------------

    def _check_chunk(self, chunk: Any) -> None:
        if not hasattr(chunk, "shape") or not hasattr(chunk, "dtype"):
            raise TypeError(f"chunk must be an array, got {type(chunk).__name__}.")
        layout = "(*batch, m, in_channels)" if self._axis == -2 else "(*batch, in_channels, m)"
        shape = tuple(chunk.shape)
        rank = len(self.batch_shape) + 2
        channel_axis = -1 if self._axis == -2 else -2
        if len(shape) != rank or shape[:-2] != self.batch_shape or shape[channel_axis] != self.in_channels:
            raise ValueError(
                f"chunk has shape {shape}; this stream takes {layout} chunks with batch "
                f"{self.batch_shape} and in_channels={self.in_channels}."
            )
        steps = shape[self._axis]
        if steps < 1 or steps % self.chunk_multiple:
            raise ValueError(
                f"chunk has {steps} time steps; chunks must hold a positive multiple of "
                f"{self.chunk_multiple} steps (the model's strided convolutions downsample by that)."
            )
        if chunk.dtype != self.dtype:
            raise TypeError(
                f"chunk has dtype {chunk.dtype} but the stream was made for {self.dtype}; "
                f"cast the chunks or pass dtype={chunk.dtype} to Streamer."
            )

    def _check_state(self, state: Any) -> None:
        expected = self._template
        if not isinstance(state, dict) or set(state) != {"layers", "preroll"}:
            raise TypeError(
                "state must be the dict that this streamer's init() or step() returned, "
                f"got {type(state).__name__}"
                f"{' with keys ' + str(sorted(state)) if isinstance(state, dict) else ''}."
            )
        got = jax.tree_util.tree_flatten_with_path(state)[0]
        want = jax.tree_util.tree_flatten_with_path(expected)[0]
        got_paths = {jax.tree_util.keystr(path): leaf for path, leaf in got}
        for path, leaf in want:
            name = jax.tree_util.keystr(path)
            if name not in got_paths:
                raise ValueError(f"state{name} is missing; was the state made by this streamer's init()?")
            value = got_paths.pop(name)
            if not hasattr(value, "shape") or tuple(value.shape) != tuple(leaf.shape) or value.dtype != leaf.dtype:
                described = f"{tuple(value.shape)} {value.dtype}" if hasattr(value, "shape") else type(value).__name__
                raise ValueError(
                    f"state{name} is {described}, where this streamer keeps {tuple(leaf.shape)} "
                    f"{leaf.dtype}; was the state made by this streamer's init() (same model, batch "
                    "size and dtype)?"
                )
        if got_paths:
            raise ValueError(f"state has entries this streamer does not keep: {sorted(got_paths)}.")

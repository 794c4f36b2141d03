"""The hostile-input table of tests/test_fuzz.py: named cases, each a call of one public entry point
and what it must do.

The contract for every public entry point: hostile input gives a ValueError or TypeError whose
message names the offending argument (and, where it helps, the value and what was expected), or a
correct result; never an interpreter abort, a hang, an XLA/MLIR error, an AssertionError,
ZeroDivisionError, KeyError, IndexError or AttributeError, nor a silently wrong result.

A :class:`Case` is data: ``call`` is a zero-argument callable that is only run by
tests/fuzz_child.py (in a subprocess with a time and memory limit, see tests/test_fuzz.py), so
importing this module runs nothing. Its expectation is one of

- :func:`raises`: a ValueError or TypeError whose message contains every fragment (a fragment that
  is a tuple is satisfied by any one of its strings; matching is literal and case-sensitive);
- :func:`returns`: a result, which ``check`` (if given) accepts; ``check`` raises AssertionError
  with a description when the result is wrong;
- :func:`either`: a result that ``check`` accepts, or such an error.

Names are ``class.entry-point.detail``; the classes are ``size`` (huge sizes), ``number``
(NaN/Inf/negative/odd-typed numeric arguments), ``hashable`` (values that must not make a config
unhashable), ``type`` (bools, NumPy scalars, strings, containers where sizes go), ``array`` (empty
axes, ranks, dtypes, torch tensors, lists, None), ``nan`` (non-finite inputs must stay local),
``state`` (streaming states and optimizer trees), ``keras`` (Keras dicts), ``torch`` (PyTorch
interop), ``module`` (module-only arguments) and ``plan``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import convtrans as ct
from convtrans import constraints, initializers, regularizers, streaming
from convtrans._src.plan import Plan
from tests import numpy_reference

ERRORS = (ValueError, TypeError)
Fragment = str | tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Case:
    """One hostile call and what it must do (see the module doc)."""

    name: str
    call: Callable[[], Any]
    errors: tuple[type, ...] = ERRORS
    fragments: tuple[Fragment, ...] = ()
    check: Callable[[Any], None] | None = None
    may_return: bool = False

    @property
    def must_raise(self) -> bool:
        return bool(self.errors) and not self.may_return

    @property
    def expectation(self) -> str:
        def shown(fragment):
            return " or ".join(map(repr, fragment)) if isinstance(fragment, tuple) else repr(fragment)

        error = "/".join(e.__name__ for e in self.errors)
        named = f" naming {', '.join(map(shown, self.fragments))}" if self.fragments else ""
        if not self.errors:
            return "a correct result"
        if self.may_return:
            return f"a correct result or a {error}{named}"
        return f"a {error}{named}"


CASES: dict[str, Case] = {}


def _add(case: Case) -> None:
    if case.name in CASES:
        raise RuntimeError(f"duplicate fuzz case name {case.name!r}")
    CASES[case.name] = case


def raises(name: str, call: Callable[[], Any], *fragments: Fragment, errors: tuple[type, ...] = ERRORS) -> None:
    _add(Case(name, call, errors, fragments))


def returns(name: str, call: Callable[[], Any], check: Callable[[Any], None] | None = None) -> None:
    _add(Case(name, call, (), (), check))


def either(name: str, call: Callable[[], Any], check: Callable[[Any], None] | None, *fragments: Fragment) -> None:
    _add(Case(name, call, ERRORS, fragments, check, may_return=True))


def message_misses(message: str, fragments: tuple[Fragment, ...]) -> list[Fragment]:
    """The fragments ``message`` does not contain."""
    return [f for f in fragments if not (any(alt in message for alt in f) if isinstance(f, tuple) else f in message)]


# --- building blocks (run only inside a case) --------------------------------------------------

BIG = {"2^31-1": 2**31 - 1, "2^31": 2**31, "2^40": 2**40, "2^62": 2**62, "2^63-1": 2**63 - 1, "2^64": 2**64}
X_SHAPE = (1, 5, 4)
NAN = float("nan")
INF = float("inf")


def _key():
    return jax.random.PRNGKey(0)


def _cfg(**fields):
    fields.setdefault("filters", 2)
    fields.setdefault("kernel_size", 3)
    return ct.Conv1DTransposeConfig(**fields)


def _conv_cfg(**fields):
    fields.setdefault("filters", 2)
    fields.setdefault("kernel_size", 3)
    return ct.Conv1DConfig(**fields)


def _rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _params(config, in_channels=4, seed=0):
    params = {"kernel": jnp.asarray(_rand(config.kernel_shape(in_channels), seed))}
    if config.use_bias:
        params["bias"] = jnp.asarray(_rand((config.filters,), seed + 1))
    return params


def _x(shape=X_SHAPE, seed=2):
    return jnp.asarray(_rand(shape, seed))


def _nnx():
    from flax import nnx

    return nnx


def _linen():
    import flax.linen as nn

    return nn


def _torch():
    import torch

    return torch


def _transpose(x_shape=X_SHAPE, implementation=None, **fields):
    config = _cfg(**fields)
    channels = x_shape[config.channel_axis]
    return ct.conv1d_transpose(_params(config, channels), _x(x_shape), config, implementation=implementation)


def _conv(x_shape=X_SHAPE, **fields):
    config = _conv_cfg(**fields)
    return ct.conv1d(_params(config, x_shape[config.channel_axis]), _x(x_shape), config)


def _linen_init(x_shape=X_SHAPE, **fields):
    fields.setdefault("filters", 2)
    fields.setdefault("kernel_size", 3)
    return ct.Conv1DTranspose(**fields).init(_key(), jnp.ones(x_shape))


def _linen_conv_init(x_shape=X_SHAPE, **fields):
    fields.setdefault("filters", 2)
    fields.setdefault("kernel_size", 3)
    return ct.Conv1D(**fields).init(_key(), jnp.ones(x_shape))


def _nnx_init(in_channels=4, **fields):
    nnx = _nnx()
    fields.setdefault("filters", 2)
    fields.setdefault("kernel_size", 3)
    return ct.nnx.Conv1DTranspose(in_channels, **fields, rngs=nnx.Rngs(0))


def _nnx_conv_init(in_channels=4, **fields):
    nnx = _nnx()
    fields.setdefault("filters", 2)
    fields.setdefault("kernel_size", 3)
    return ct.nnx.Conv1D(in_channels, **fields, rngs=nnx.Rngs(0))


def _stream_init(batch_size=1, dtype=jnp.float32, **fields):
    return streaming.init(_cfg(**fields), batch_size, dtype)


def _stream_step(x_shape=X_SHAPE, **fields):
    config = _cfg(**fields)
    state = streaming.init(config, x_shape[:-2])
    return streaming.step(_params(config, x_shape[config.channel_axis]), state, _x(x_shape), config)


def _chunked(chunk_size=2, x_shape=X_SHAPE, implementation=None, **fields):
    config = _cfg(**fields)
    return streaming.chunked_conv1d_transpose(
        _params(config, x_shape[config.channel_axis]), _x(x_shape), config, chunk_size, implementation=implementation
    )


def _from_keras_init(**fields):
    config = ct.Conv1DTransposeConfig.from_keras({"filters": 2, "kernel_size": [3], **fields})
    return ct.Conv1DTranspose.from_config(config).init(_key(), jnp.ones(X_SHAPE))


@functools.cache
def _linen_layer():
    model = ct.Conv1DTranspose(filters=2, kernel_size=3, strides=2)
    return model, model.init(_key(), jnp.ones(X_SHAPE))


def _streamer(**kwargs):
    model, variables = _linen_layer()
    return streaming.Streamer(model, variables, **kwargs)


@functools.cache
def _constrained_params():
    model = ct.Conv1DTranspose(filters=2, kernel_size=3, kernel_constraint="max_norm")
    return model.init(_key(), jnp.ones(X_SHAPE))["params"]


_GOOD = object()


def _constraint_update(updates=_GOOD, state=_GOOD, params=_GOOD):
    """``keras_constraints().update`` with some arguments replaced."""
    tx = ct.keras_constraints()
    good = _constrained_params()
    state = tx.init(good) if state is _GOOD else state
    updates = jax.tree.map(jnp.zeros_like, good) if updates is _GOOD else updates
    return tx.update(updates, state, good if params is _GOOD else params)


TORCH_STATE = {"weight": _rand((4, 2, 3), 3), "bias": _rand((2,), 4)}


def _from_torch(state_dict=None, in_channels=4, out_channels=2, kernel_size=3, **kwargs):
    return ct.interop.from_torch_state_dict(
        TORCH_STATE if state_dict is None else state_dict, in_channels, out_channels, kernel_size, **kwargs
    )


@functools.cache
def _torch_pair():
    """A linen params tree and the state dict of the same layer (for load/to_torch_state_dict)."""
    params = ct.Conv1DTranspose(filters=2, kernel_size=3, name="up").init(_key(), jnp.ones(X_SHAPE))["params"]
    torch = _torch()
    like = {"up.weight": torch.zeros(4, 2, 3), "up.bias": torch.zeros(2)}
    return params, like


# --- checks ---------------------------------------------------------------------------------------


def _output(result):
    """The output array of an entry point's result (``(y, aux)``, ``(state, y)`` or ``y``)."""
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], streaming.StreamState):
        return result[1]
    return result[0] if isinstance(result, tuple) else result


def _reference(config, params, x):
    """NumPy's transposed convolution (float64) of an input of any rank >= 2, without activation."""
    x = np.asarray(x, np.float64)
    lead = x.shape[:-2]
    x3 = x.reshape((math.prod(lead),) + x.shape[-2:])
    bias = None if not config.use_bias else np.asarray(params["bias"], np.float64)
    y = numpy_reference.conv1d_transpose_of(config, x3, np.asarray(params["kernel"], np.float64), bias)
    return y.reshape(lead + y.shape[1:])


def _assert_close(actual, expected, what="output"):
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what} has shape {actual.shape}, expected {expected.shape}")
    scale = 1.0 + (float(np.max(np.abs(expected))) if expected.size else 0.0)
    error = np.abs(actual - expected)
    if error.size and not np.all(error <= 1e-4 * scale):
        index = np.unravel_index(np.argmax(np.where(np.isnan(error), np.inf, error)), error.shape)
        raise AssertionError(
            f"{what} differs from the reference by up to {error[index]} at {index} "
            f"({actual[index]} vs {expected[index]})"
        )


def _matches_transpose(x_shape=X_SHAPE, **fields):
    """Check: the result's output equals NumPy's transposed convolution of that layer."""

    def check(result):
        config = _cfg(**fields)
        params = _params(config, x_shape[config.channel_axis])
        _assert_close(_output(result), _reference(config, params, _x(x_shape)))

    return check


def _shape_is(*shape):
    def check(result):
        got = tuple(_output(result).shape)
        if got != shape:
            raise AssertionError(f"output has shape {got}, expected {shape}")

    return check


def _is_plan(result):
    if not isinstance(result, Plan):
        raise AssertionError(f"expected a Plan, got {type(result).__name__}")


def _is_str(result):
    if not isinstance(result, str):
        raise AssertionError(f"expected a str, got {type(result).__name__}")


def _hashable(result):
    try:
        hash(result)
    except TypeError as error:
        raise AssertionError(
            f"the result is not hashable, so it cannot be a static argument of jax.jit: {error}"
        ) from error


def _sparse_valid_reference(x, kernel, bias, strides):
    """The transposed convolution (padding 'valid', no dilation, one group, channels_last) by
    placing each input step's products, for strides far larger than the kernel."""
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    batch, n, _ = x.shape
    k, filters, _ = kernel.shape
    y = np.zeros((batch, (n - 1) * strides + max(k, strides), filters)) + np.asarray(bias, np.float64)
    for i in range(n):
        for j in range(k):
            y[:, i * strides + j] += x[:, i] @ kernel[j].T
    return y


def _huge_strides_result(strides, length):
    def check(result):
        config = _cfg(filters=1, strides=strides)
        params = _params(config, 4)
        _assert_close(
            _output(result), _sparse_valid_reference(_x((1, length, 4)), params["kernel"], params["bias"], strides)
        )

    return check


def _same_as_whole_signal(x_shape=X_SHAPE, **fields):
    def check(result):
        config = _cfg(**fields)
        params = _params(config, x_shape[config.channel_axis])
        _assert_close(_output(result), ct.conv1d_transpose(params, _x(x_shape), config)[0])

    return check


def _empty_batch(shape, activity=False):
    def check(result):
        _shape_is(*shape)(result)
        if isinstance(result, tuple) and isinstance(result[1], dict):
            for key, value in result[1].items():
                if not np.isfinite(np.asarray(value)).all():
                    raise AssertionError(f"aux[{key!r}] of an empty batch is {value}, not finite")
            if activity and float(result[1]["activity"]) != 0.0:
                raise AssertionError(f"aux['activity'] of an empty batch is {result[1]['activity']}, not 0")

    return check


# --- non-finite inputs ----------------------------------------------------------------------------


def _poisoned(shape, data_format, spots):
    """A random input with NaN/Inf at ``spots`` ((batch, step, channel, value))."""
    x = _rand(shape, 5)
    for b, t, c, value in spots:
        index = (b, t, c) if data_format == "channels_last" else (b, c, t)
        x[index] = value
    return x


def _reach(config, x, in_channels):
    """Which outputs a non-finite input sample reaches (NumPy, from the definition)."""
    indicator = (~np.isfinite(x)).astype(np.float64)
    ones = np.ones(config.kernel_shape(in_channels))
    return numpy_reference.conv1d_transpose_of(config, indicator, ones) > 0


def _check_locality(y, reached, what="output"):
    y = np.asarray(y)
    if y.shape != reached.shape:
        raise AssertionError(f"{what} has shape {y.shape}, expected {reached.shape}")
    finite = np.isfinite(y)
    leaked = ~finite & ~reached
    lost = finite & reached
    if leaked.any():
        raise AssertionError(
            f"{int(leaked.sum())} {what} samples that no non-finite input reaches are non-finite "
            f"(first at {tuple(int(i) for i in np.argwhere(leaked)[0])}); non-finite inputs must stay local"
        )
    if lost.any():
        raise AssertionError(
            f"{int(lost.sum())} {what} samples that a non-finite input reaches are finite "
            f"(first at {tuple(int(i) for i in np.argwhere(lost)[0])})"
        )


NAN_LAYERS = {
    "same-k4-s2": (dict(filters=2, kernel_size=4, strides=2, padding="same"), 4),
    "valid-k5-s3-groups2": (dict(filters=4, kernel_size=5, strides=3, groups=2), 4),
    "pairs-k3-s2-d2-op1": (
        dict(filters=2, kernel_size=3, strides=2, dilation_rate=2, padding=(1, 2), output_padding=1),
        4,
    ),
    "first-k4-s4": (dict(filters=2, kernel_size=4, strides=4, data_format="channels_first"), 4),
    "same-k7-s2": (dict(filters=3, kernel_size=7, strides=2, padding="same"), 4),
}
NAN_IMPLEMENTATIONS = {
    "lhs_dilation": "lhs_dilation",
    "gemm": "gemm",
    "polyphase": "polyphase",
    "default": None,
    "winograd": Plan.uniform("winograd"),
    "stacked_product": Plan(correlation="stacked_product"),
}
NAN_CHUNKED_LAYERS = ("same-k4-s2", "pairs-k3-s2-d2-op1", "first-k4-s4")
# NaN in batch 0 at step 2 (channel 0) and +Inf at step 6 (channel 1); batch 1 stays finite.
NAN_SPOTS = ((0, 2, 0, NAN), (0, 6, 1, INF))


def _nan_input(fields, in_channels, length=9):
    config = _cfg(**fields)
    shape = (2, length, in_channels) if config.data_format == "channels_last" else (2, in_channels, length)
    return config, _poisoned(shape, config.data_format, NAN_SPOTS)


# Jitted (one compile instead of one per operation): these cases are about values, not argument checks.
_jitted_transpose = jax.jit(ct.conv1d_transpose, static_argnames=("config", "implementation"))
_jitted_chunked = jax.jit(
    streaming.chunked_conv1d_transpose, static_argnames=("config", "chunk_size", "implementation")
)


def _nan_transpose(fields, in_channels, implementation):
    config, x = _nan_input(fields, in_channels)
    return _jitted_transpose(_params(config, in_channels), jnp.asarray(x), config=config, implementation=implementation)


def _nan_chunked(fields, in_channels, implementation, chunk_size=4):
    config, x = _nan_input(fields, in_channels)
    return _jitted_chunked(
        _params(config, in_channels),
        jnp.asarray(x),
        config=config,
        chunk_size=chunk_size,
        implementation=implementation,
    )


def _nan_local(fields, in_channels):
    def check(result):
        config, x = _nan_input(fields, in_channels)
        _check_locality(_output(result), _reach(config, x, in_channels))

    return check


@functools.cache
def _stream_model(implementation=None):
    nn = _linen()
    return nn.Sequential(
        [
            ct.Conv1D(filters=3, kernel_size=3, padding="causal"),
            ct.Conv1DTranspose(filters=2, kernel_size=4, strides=2, padding="same", implementation=implementation),
            ct.Conv1D(filters=2, kernel_size=3, padding="same"),
        ]
    )


def _nan_streamer():
    model = _stream_model()
    variables = model.init(_key(), jnp.ones((1, 4, 4)))
    streamer = streaming.Streamer(model, variables, batch_size=2)
    x = jnp.asarray(_poisoned((2, 12, 4), "channels_last", NAN_SPOTS))
    state = streamer.init()
    pieces = []
    for start in range(0, 12, 4):
        state, y = streamer.step(state, x[:, start : start + 4])
        pieces.append(y)
    pieces.append(streamer.finish(state))
    whole = _stream_model("lhs_dilation").apply(variables, x)
    return streamer.latency, jnp.concatenate(pieces, axis=1), whole


def _streamer_local(result):
    latency, streamed, whole = result
    streamed, whole = np.asarray(streamed), np.asarray(whole)
    if streamed.shape[1] != latency + whole.shape[1]:
        raise AssertionError(f"the stream has {streamed.shape[1]} steps, expected latency {latency} + {whole.shape[1]}")
    if np.any(streamed[:, :latency] != 0):
        raise AssertionError("the latency's samples are not zeros")
    _check_locality(streamed[:, latency:], ~np.isfinite(whole), "streamed output")


# ==================================================================================================
# size: sizes near 2**31, 2**62, 2**63 - 1 (and 2**64). A ValueError naming the argument, quickly;
# never "overflow in static extent product" (an abort), an out-of-memory error or a loop over 2**40
# phases.
# ==================================================================================================

for label in ("2^31", "2^62", "2^63-1"):
    value = BIG[label]
    for field in ("filters", "kernel_size"):
        raises(f"size.linen_init.{field}={label}", functools.partial(_linen_init, **{field: value}), field, str(value))
        raises(f"size.nnx_init.{field}={label}", functools.partial(_nnx_init, **{field: value}), field, str(value))
        raises(
            f"size.stream_init.{field}={label}", functools.partial(_stream_init, **{field: value}), field, str(value)
        )
        raises(
            f"size.linen_conv1d_init.{field}={label}",
            functools.partial(_linen_conv_init, **{field: value}),
            field,
            str(value),
        )
    raises(
        f"size.nnx_init.in_channels={label}", functools.partial(_nnx_init, in_channels=value), "in_channels", str(value)
    )
    raises(
        f"size.stream_init.batch_size={label}",
        functools.partial(_stream_init, batch_size=value),
        "batch_size",
        str(value),
    )
    raises(
        f"size.conv1d_transpose.dilation_rate={label}",
        functools.partial(_transpose, dilation_rate=value, padding=0),
        "dilation_rate",
        str(value),
    )
    raises(
        f"size.nnx_conv1d_init.filters={label}", functools.partial(_nnx_conv_init, filters=value), "filters", str(value)
    )

raises("size.linen_init.filters=2^64", functools.partial(_linen_init, filters=2**64), "filters", str(2**64))
raises("size.stream_init.batch_size=2^64", functools.partial(_stream_init, batch_size=2**64), "batch_size")
raises(
    "size.stream_init.batch_size=(2^31,2^31)", functools.partial(_stream_init, batch_size=(2**31, 2**31)), "batch_size"
)
raises("size.stream_init.batch_size=(2^62,4)", functools.partial(_stream_init, batch_size=(2**62, 4)), "batch_size")
raises("size.from_keras_init.filters=2^62", functools.partial(_from_keras_init, filters=2**62), "filters")
raises(
    "size.from_keras_init.kernel_size=[2^62]", functools.partial(_from_keras_init, kernel_size=[2**62]), "kernel_size"
)
raises(
    "size.stream_init.dilation_rate=2^62",
    functools.partial(_stream_init, dilation_rate=2**62, padding=0),
    "dilation_rate",
)
raises(
    "size.linen_init.dilation_rate=2^62",
    functools.partial(_linen_init, dilation_rate=2**62, padding=0),
    "dilation_rate",
)
raises(
    "size.nnx_init.groups=2^62",
    functools.partial(_nnx_init, in_channels=2**62, filters=2**62, groups=2**62),
    ("groups", "in_channels", "filters"),
)
raises(
    "size.linen_init.groups=2^31", functools.partial(_linen_init, filters=2**31, groups=2**31), ("groups", "filters")
)

# Sizes that each fit in an int32 but whose products do not fit in memory (or in int64).
for name, make, fragment in [
    ("linen_init.filters=2^31-1", functools.partial(_linen_init, filters=2**31 - 1), "filters"),
    ("linen_init.kernel_size=2^31-1", functools.partial(_linen_init, kernel_size=2**31 - 1), "kernel_size"),
    ("nnx_init.in_channels=2^31-1", functools.partial(_nnx_init, in_channels=2**31 - 1), "in_channels"),
    (
        "nnx_init.filters*in_channels=2^30*2^30",
        functools.partial(_nnx_init, in_channels=2**30, filters=2**30),
        ("filters", "in_channels"),
    ),
    ("linen_conv1d_init.kernel_size=2^31-1", functools.partial(_linen_conv_init, kernel_size=2**31 - 1), "kernel_size"),
    ("stream_init.batch_size=2^31-1", functools.partial(_stream_init, batch_size=2**31 - 1), "batch_size"),
    ("stream_init.batch_size=(2^20,2^20)", functools.partial(_stream_init, batch_size=(2**20, 2**20)), "batch_size"),
    (
        "stream_init.kernel_size*filters=2^30*2^30",
        functools.partial(_stream_init, kernel_size=2**30, filters=2**30),
        ("kernel_size", "filters"),
    ),
    ("conv1d_transpose.strides=2^31-1", functools.partial(_transpose, strides=2**31 - 1), "strides"),
    (
        "conv1d_transpose.dilation_rate=2^31-1",
        functools.partial(_transpose, dilation_rate=2**31 - 1, padding=0),
        "dilation_rate",
    ),
    (
        "conv1d_transpose.strides*dilation=2^30*2^30",
        functools.partial(_transpose, strides=2**30, dilation_rate=2**30, padding=0),
        ("strides", "dilation_rate"),
    ),
    ("stream_step.strides=2^31-1", functools.partial(_stream_step, strides=2**31 - 1), "strides"),
    ("conv1d.padding=(2^31-1,0)", functools.partial(_conv, padding=(2**31 - 1, 0)), "padding"),
    (
        "linen_pad1d.padding=(2^31-1,2^31-1)",
        lambda: ct.Pad1D(padding=(2**31 - 1, 2**31 - 1)).init(_key(), jnp.ones(X_SHAPE)),
        "padding",
    ),
    ("initializer.zeros.shape=(2^31-1,2^31-1)", lambda: initializers.Zeros()(_key(), (2**31 - 1, 2**31 - 1)), "shape"),
]:
    raises(f"size.{name}", make, fragment)

# Strides: the phases of a transposed convolution are looped over in Python, so 2**40 must not
# mean 2**40 iterations; the output would hold ~2**42 samples.
for label in ("2^31", "2^62"):
    for implementation in ct.IMPLEMENTATIONS:
        raises(
            f"size.conv1d_transpose[{implementation}].strides={label}",
            functools.partial(_transpose, strides=BIG[label], implementation=implementation),
            "strides",
            str(BIG[label]),
        )
for label in ("2^40", "2^63-1", "2^64"):
    raises(
        f"size.conv1d_transpose.strides={label}",
        functools.partial(_transpose, strides=BIG[label]),
        "strides",
        str(BIG[label]),
    )
either(
    "size.conv1d_transpose.strides=2^20",
    functools.partial(_transpose, x_shape=(1, 2, 4), filters=1, strides=2**20),
    _huge_strides_result(2**20, 2),
    "strides",
)
raises("size.stream_step.strides=2^31", functools.partial(_stream_step, strides=2**31), "strides")
raises("size.stream_step.strides=2^62", functools.partial(_stream_step, strides=2**62), "strides")
raises("size.chunked.strides=2^62", functools.partial(_chunked, strides=2**62), "strides")
raises("size.linen_init.strides=2^62", functools.partial(_linen_init, strides=2**62), "strides")
either("size.plan.strides=2^40", lambda: ct.plan(_cfg(strides=2**40), X_SHAPE), _is_plan, "strides")
either("size.explain.strides=2^62", lambda: ct.explain(_cfg(strides=2**62), X_SHAPE), _is_str, "strides")
# From 64 channels the CPU policy looks at the phases (for Winograd's two- and three-tap phases).
either("size.plan.strides=2^40-64ch", lambda: ct.plan(_cfg(strides=2**40), (1, 5, 64)), _is_plan, "strides")
either("size.explain.strides=2^62-512ch", lambda: ct.explain(_cfg(strides=2**62), (1, 5, 512)), _is_str, "strides")
either(
    "size.plan.strides=2^31-64ch-bfloat16",
    lambda: ct.plan(_cfg(strides=2**31), (1, 5, 64), "bfloat16"),
    _is_plan,
    "strides",
)


def _first_window_only(result):
    _assert_close(_output(result), _conv()[0][:, :1])


either(
    "size.linen_conv1d_init.strides=2^62",
    lambda: ct.Conv1D(filters=2, kernel_size=3, strides=2**62).init_with_output(_key(), _x())[0],
    _shape_is(1, 1, 2),
    "strides",
)
either("size.conv1d.strides=2^63-1", functools.partial(_conv, strides=2**63 - 1), _first_window_only, "strides")


def _middle_tap_only(result):
    # Every tap but the middle one lands in the zeros of the padding: y = x @ kernel[1] + bias.
    params = _params(_conv_cfg(), 4)
    expected = np.asarray(_x(), np.float64) @ np.asarray(params["kernel"][1], np.float64) + np.asarray(params["bias"])
    _assert_close(_output(result), expected)


either(
    "size.conv1d.dilation_rate=2^40-same",
    functools.partial(_conv, dilation_rate=2**40, padding="same"),
    _middle_tap_only,
    "dilation_rate",
)
raises(
    "size.conv1d.dilation_rate=2^62-causal",
    functools.partial(_conv, dilation_rate=2**62, padding="causal"),
    "dilation_rate",
)
raises("size.conv1d.padding=2^62", functools.partial(_conv, padding=2**62), "padding")
raises("size.conv1d.padding=(0,2^31)", functools.partial(_conv, padding=(0, 2**31)), "padding")
raises("size.linen_conv1d_init.padding=2^62", functools.partial(_linen_conv_init, padding=2**62), "padding")
raises("size.conv1d_transpose.padding=2^63-1", functools.partial(_transpose, padding=2**63 - 1), "padding")
raises(
    "size.conv1d_transpose.output_padding=2^62-1",
    functools.partial(_transpose, strides=2**62, output_padding=2**62 - 1),
    ("strides", "output_padding"),
)
raises(
    "size.conv1d_transpose.output_padding=2^31-1-torch",
    functools.partial(_transpose, dilation_rate=2**31, padding=0, output_padding=2**31 - 1),
    ("dilation_rate", "output_padding"),
)
raises("size.linen_pad1d.padding=2^62", lambda: ct.Pad1D(padding=2**62).init(_key(), jnp.ones(X_SHAPE)), "padding")
raises(
    "size.linen_pad1d.padding=(0,2^31)", lambda: ct.Pad1D(padding=(0, 2**31)).init(_key(), jnp.ones(X_SHAPE)), "padding"
)
raises("size.nnx_pad1d.padding=2^63-1", lambda: ct.nnx.Pad1D(2**63 - 1)(jnp.ones(X_SHAPE)), "padding")
raises("size.streamer.batch_size=2^62", lambda: _streamer(batch_size=2**62), "batch_size")
raises("size.streamer.in_channels=2^62", lambda: _streamer(in_channels=2**62), "in_channels")
for label in ("2^31", "2^63-1", "2^64"):
    either(
        f"size.chunked.chunk_size={label}",
        functools.partial(_chunked, chunk_size=BIG[label], strides=2),
        _same_as_whole_signal(strides=2),
        "chunk_size",
    )
either("size.plan.x_shape=(1,2^62,4)", lambda: ct.plan(_cfg(strides=2), (1, 2**62, 4)), _is_plan, "x_shape")
either("size.plan.x_shape=(1,5,2^62)", lambda: ct.plan(_cfg(strides=2), (1, 5, 2**62)), _is_plan, "x_shape")
either(
    "size.eval_shape.batch=2^62",
    lambda: jax.eval_shape(
        functools.partial(ct.conv1d_transpose, config=_cfg(strides=2)),
        _params(_cfg()),
        jax.ShapeDtypeStruct((2**62, 5, 4), jnp.float32),
    ),
    _shape_is(2**62, 11, 2),
    "x",
)
raises("size.initializer.zeros.shape=(2^62,4)", lambda: initializers.Zeros()(_key(), (2**62, 4)), "shape")
raises(
    "size.initializer.glorot_uniform.shape=(3,2^62,4)",
    lambda: initializers.GlorotUniform()(_key(), (3, 2**62, 4)),
    "shape",
)
raises(
    "size.initializer.random_normal.shape=(2^31,4)", lambda: initializers.RandomNormal()(_key(), (2**31, 4)), "shape"
)


def _big_lengths(result):
    n = s = k = d = 2**63 - 1
    expected = (n - 1) * s + (k - 1) * d + 1
    if result != expected:
        raise AssertionError(f"output_length is {result}, expected {expected}")


# Lengths are Python integers: exact, or a refusal of the size by name.
either(
    "size.output_length.all=2^63-1",
    lambda: ct.output_length(
        _cfg(kernel_size=2**63 - 1, strides=2**63 - 1, dilation_rate=2**63 - 1, padding=0), 2**63 - 1
    ),
    _big_lengths,
    ("kernel_size", "strides", "dilation_rate"),
)


def _streaming_lengths(result):
    if not all(isinstance(v, int) and v >= 0 for v in result):
        raise AssertionError(f"latency, tail_length, carry_length are {result}")


either(
    "size.streaming_lengths.strides=2^63-1",
    lambda: tuple(
        f(_cfg(kernel_size=2**62, strides=2**63 - 1, padding="same"))
        for f in (streaming.latency, streaming.tail_length, streaming.carry_length)
    ),
    _streaming_lengths,
    ("kernel_size", "strides"),
)

# ==================================================================================================
# number: NaN, Inf, negative, zero, huge and odd-typed numbers in the Keras objects' arguments: a
# ValueError or TypeError at construction, naming the argument.
# ==================================================================================================

for name, make, fragment in [
    ("L2(l2=inf)", lambda: regularizers.L2(l2=INF), "l2"),
    ("L2(l2=-inf)", lambda: regularizers.L2(l2=-INF), "l2"),
    ("L1(l1=inf)", lambda: regularizers.L1(l1=INF), "l1"),
    ("L1(l1=nan)", lambda: regularizers.L1(l1=NAN), "l1"),
    ("L1L2(l1=inf)", lambda: regularizers.L1L2(l1=INF), "l1"),
    ("L1L2(l2=np.inf32)", lambda: regularizers.L1L2(l2=np.float32("inf")), "l2"),
    ("L2(l2=jnp.nan)", lambda: regularizers.L2(l2=jnp.asarray(NAN)), "l2"),
    ("L2(l2=2**1024)", lambda: regularizers.L2(l2=2**1024), "l2"),
    ("L2(l2='0.1')", lambda: regularizers.L2(l2="0.1"), "l2"),
    ("L2(l2=[0.1])", lambda: regularizers.L2(l2=[0.1]), "l2"),
    ("L2(l2={})", lambda: regularizers.L2(l2={"l2": 0.1}), "l2"),
    ("L2(l2=True)", lambda: regularizers.L2(l2=True), "l2"),
    ("L2(l2=complex64)", lambda: regularizers.L2(l2=np.complex64(0.1 + 1j)), "l2"),
    ("L2(l2=array2)", lambda: regularizers.L2(l2=np.array([0.1, 0.2])), "l2"),
    ("get({L1L2,l1=inf})", lambda: regularizers.get({"class_name": "L1L2", "config": {"l1": INF}}), "l1"),
    ("get({L2,config=list})", lambda: regularizers.get({"class_name": "L2", "config": [1]}), "regularizer"),
    ("get({L2,config=str})", lambda: regularizers.get({"class_name": "L2", "config": "l2"}), "regularizer"),
    ("get({class_name=list})", lambda: regularizers.get({"class_name": ["L2"]}), "regularizer"),
    ("get(class)", lambda: regularizers.get(regularizers.L2), "regularizer"),
]:
    raises(f"number.regularizers.{name}", make, fragment)

raises(
    "number.config.kernel_regularizer=l1l2(l1=inf)",
    lambda: _cfg(kernel_regularizer={"class_name": "L1L2", "config": {"l1": INF, "l2": 0.0}}),
    "kernel_regularizer",
    "l1",
)
raises("number.config.activity_regularizer=L2(inf)", lambda: _cfg(activity_regularizer=regularizers.L2(INF)), "l2")
raises("number.regularizer_call.None", lambda: regularizers.L2()(None), ("None", "array"))
either(
    "number.regularizer_call.complex",
    lambda: regularizers.L2()(jnp.ones(3, jnp.complex64)),
    lambda p: (
        None
        if not jnp.iscomplexobj(p)
        else (_ for _ in ()).throw(AssertionError(f"the penalty of a complex weight is complex: {p}"))
    ),
    ("complex", "floating"),
)

for name, make, fragment in [
    ("MaxNorm(max_value=nan)", lambda: constraints.MaxNorm(max_value=NAN), "max_value"),
    ("MaxNorm(max_value=-1)", lambda: constraints.MaxNorm(max_value=-1), "max_value"),
    ("MaxNorm(max_value='2')", lambda: constraints.MaxNorm(max_value="2"), "max_value"),
    ("MaxNorm(max_value=[2])", lambda: constraints.MaxNorm(max_value=[2.0]), "max_value"),
    ("MinMaxNorm(rate=nan)", lambda: constraints.MinMaxNorm(rate=NAN), "rate"),
    ("MinMaxNorm(rate=inf)", lambda: constraints.MinMaxNorm(rate=INF), "rate"),
    ("MinMaxNorm(rate=-inf)", lambda: constraints.MinMaxNorm(rate=-INF), "rate"),
    ("MinMaxNorm(min_value=nan)", lambda: constraints.MinMaxNorm(min_value=NAN), "min_value"),
    ("MinMaxNorm(min_value=inf)", lambda: constraints.MinMaxNorm(min_value=INF), "min_value"),
    ("MinMaxNorm(max_value=nan)", lambda: constraints.MinMaxNorm(max_value=NAN), "max_value"),
    ("MaxNorm(axis=(0,0))", lambda: constraints.MaxNorm(axis=(0, 0)), "axis"),
    ("MaxNorm(axis=[[0]])", lambda: constraints.MaxNorm(axis=[[0]]), "axis"),
    ("MaxNorm(axis=2^62)", lambda: constraints.MaxNorm(axis=2**62), "axis"),
    ("UnitNorm(axis=-2^62)", lambda: constraints.UnitNorm(axis=-(2**62)), "axis"),
    ("UnitNorm(axis=1.0)", lambda: constraints.UnitNorm(axis=1.0), "axis"),
    ("MinMaxNorm(axis='0')", lambda: constraints.MinMaxNorm(axis="0"), "axis"),
    (
        "get({MaxNorm,axis=[[0]]})",
        lambda: constraints.get({"class_name": "MaxNorm", "config": {"axis": [[0]]}}),
        "axis",
    ),
]:
    raises(f"number.constraints.{name}", make, fragment)

raises(
    "number.config.kernel_constraint=MaxNorm(axis=3)",
    lambda: _cfg(kernel_constraint=constraints.MaxNorm(axis=3)),
    "kernel_constraint",
    "axis",
)
raises(
    "number.config.bias_constraint=UnitNorm(axis=1)",
    lambda: _cfg(bias_constraint=constraints.UnitNorm(axis=1)),
    "bias_constraint",
    "axis",
)
raises("number.constraint_call.axis_out_of_range", lambda: constraints.MaxNorm(axis=3)(jnp.ones((3, 2, 4))), "axis")
raises(
    "number.constraint_call.int_weight",
    lambda: constraints.MaxNorm()(jnp.ones((3, 2), jnp.int32)),
    ("int32", "floating"),
)
raises("number.constraint_call.None", lambda: constraints.NonNeg()(None), ("None", "array"))


def _keeps_dtype(dtype):
    def check(result):
        if result.dtype != dtype:
            raise AssertionError(f"the constraint turned a {jnp.dtype(dtype).name} weight into {result.dtype}")

    return check


returns(
    "number.constraint_call.bfloat16",
    lambda: constraints.MaxNorm(1.0)(jnp.full((3, 2), 3, jnp.bfloat16)),
    _keeps_dtype(jnp.bfloat16),
)
returns(
    "number.constraint_call.float16",
    lambda: constraints.UnitNorm()(jnp.full((3, 2), 3, jnp.float16)),
    _keeps_dtype(jnp.float16),
)


def _axis_is_int(result):
    if type(result.axis) is not int or result.axis != 0:
        raise AssertionError(f"axis stored as {result.axis!r} of type {type(result.axis).__name__}")


either("number.constraints.MaxNorm(axis=np.int64)", lambda: constraints.MaxNorm(axis=np.int64(0)), _axis_is_int, "axis")
raises("number.with_constraint.init=None", lambda: ct.with_constraint(None, "non_neg"), "init")
raises("number.with_constraint.init=3", lambda: ct.with_constraint(3, "non_neg"), "init")
raises(
    "number.with_constraint.constraint=bogus",
    lambda: ct.with_constraint(jax.nn.initializers.zeros, "bogus"),
    "constraint",
)

for name, make, fragment in [
    ("RandomNormal(stddev=-1)", lambda: initializers.RandomNormal(stddev=-1.0), "stddev"),
    ("RandomNormal(stddev=nan)", lambda: initializers.RandomNormal(stddev=NAN), "stddev"),
    ("RandomNormal(stddev=inf)", lambda: initializers.RandomNormal(stddev=INF), "stddev"),
    ("RandomNormal(mean=inf)", lambda: initializers.RandomNormal(mean=INF), "mean"),
    ("RandomNormal(mean=nan)", lambda: initializers.RandomNormal(mean=NAN), "mean"),
    ("RandomNormal(stddev='1')", lambda: initializers.RandomNormal(stddev="1"), "stddev"),
    ("RandomNormal(mean=[0])", lambda: initializers.RandomNormal(mean=[0.0]), "mean"),
    ("TruncatedNormal(stddev=-1)", lambda: initializers.TruncatedNormal(stddev=-1.0), "stddev"),
    ("TruncatedNormal(mean=nan)", lambda: initializers.TruncatedNormal(mean=NAN), "mean"),
    (
        "RandomUniform(minval=1,maxval=0)",
        lambda: initializers.RandomUniform(minval=1.0, maxval=0.0),
        ("minval", "maxval"),
    ),
    ("RandomUniform(minval=nan)", lambda: initializers.RandomUniform(minval=NAN), "minval"),
    ("RandomUniform(maxval=inf)", lambda: initializers.RandomUniform(maxval=INF), "maxval"),
    ("RandomUniform(minval='a')", lambda: initializers.RandomUniform(minval="a"), "minval"),
    ("VarianceScaling(scale=inf)", lambda: initializers.VarianceScaling(scale=INF), "scale"),
    (
        "VarianceScaling(scale=0,mode=bogus)",
        lambda: initializers.VarianceScaling(scale=0, mode="bogus"),
        ("scale", "mode"),
    ),
    ("VarianceScaling(scale='1')", lambda: initializers.VarianceScaling(scale="1"), "scale"),
    ("VarianceScaling(mode=['fan_in'])", lambda: initializers.VarianceScaling(mode=["fan_in"]), "mode"),
    ("VarianceScaling(distribution=None)", lambda: initializers.VarianceScaling(distribution=None), "distribution"),
    ("VarianceScaling(seed='abc')", lambda: initializers.VarianceScaling(seed="abc"), "seed"),
    ("VarianceScaling(seed=1.5)", lambda: initializers.VarianceScaling(seed=1.5), "seed"),
    ("GlorotUniform(seed=[1])", lambda: initializers.GlorotUniform(seed=[1]), "seed"),
    ("HeNormal(seed={})", lambda: initializers.HeNormal(seed={"a": 1}), "seed"),
    (
        "VarianceScaling(input_axes=[1.5])",
        lambda: initializers.VarianceScaling(input_axes=[1.5], output_axes=[0]),
        "input_axes",
    ),
    (
        "VarianceScaling(input_axes='ab')",
        lambda: initializers.VarianceScaling(input_axes="ab", output_axes=[0]),
        "input_axes",
    ),
    (
        "VarianceScaling(output_axes=[[0]])",
        lambda: initializers.VarianceScaling(input_axes=[0], output_axes=[[0]]),
        "output_axes",
    ),
    ("Constant(value=nan)", lambda: initializers.Constant(value=NAN), "value"),
    ("Constant(value=inf)", lambda: initializers.Constant(value=INF), "value"),
    ("Constant(value=[1,2])", lambda: initializers.Constant(value=[1.0, 2.0]), "value"),
    ("Orthogonal(gain=nan)", lambda: initializers.Orthogonal(gain=NAN), "gain"),
    ("Orthogonal(gain='x')", lambda: initializers.Orthogonal(gain="x"), "gain"),
    ("Identity(gain=inf)", lambda: initializers.Identity(gain=INF), "gain"),
    (
        "get({RandomNormal,stddev=-1})",
        lambda: initializers.get({"class_name": "RandomNormal", "config": {"stddev": -1.0}}),
        "stddev",
    ),
    (
        "get({VarianceScaling,scale=1e400})",
        lambda: initializers.get({"class_name": "VarianceScaling", "config": {"scale": float("1e400")}}),
        "scale",
    ),
    ("get({Constant,config=list})", lambda: initializers.get({"class_name": "Constant", "config": [1]}), "initializer"),
]:
    raises(f"number.initializers.{name}", make, fragment)

for name, make, fragment in [
    ("shape=(3,-2,4)", lambda: initializers.GlorotUniform()(_key(), (3, -2, 4)), "shape"),
    ("shape='abc'", lambda: initializers.GlorotUniform()(_key(), "abc"), "shape"),
    ("shape=(3,2.5,4)", lambda: initializers.HeNormal()(_key(), (3, 2.5, 4)), ("shape", "Shape")),
    ("shape=None", lambda: initializers.Zeros()(_key(), None), "shape"),
    ("dtype=int32", lambda: initializers.GlorotUniform()(_key(), (3, 2, 4), jnp.int32), "dtype"),
    ("dtype=bogus", lambda: initializers.Zeros()(_key(), (3, 2), "bogus"), ("dtype", "data type")),
    ("key=None", lambda: initializers.RandomNormal()(None, (3, 2)), "key"),
    (
        "input_axes_out_of_range",
        lambda: initializers.VarianceScaling(input_axes=[5], output_axes=[0])(_key(), (3, 2, 4)),
        "input_axes",
    ),
]:
    raises(f"number.initializer_call.{name}", make, fragment)

raises(
    "number.linen_init.kernel_initializer=lambda0",
    functools.partial(_linen_init, kernel_initializer=lambda: 0),
    "kernel_initializer",
)
raises(
    "number.linen_init.kernel_initializer=wrong_shape",
    functools.partial(_linen_init, kernel_initializer=lambda key, shape, dtype=jnp.float32: jnp.zeros((1,), dtype)),
    ("kernel_initializer", "params['kernel']"),
)
raises(
    "number.nnx_call.bias_initializer=int",
    lambda: _nnx_init(bias_initializer=lambda key, shape, dtype=jnp.float32: jnp.zeros(shape, jnp.int32))(_x()),
    ("bias_initializer", "params['bias']"),
)

# ==================================================================================================
# hashable: a config is a static argument of jax.jit, so what it accepts must leave it hashable (or
# be refused by name).
# ==================================================================================================

for name, make, fragment in [
    (
        "kernel_initializer={RandomNormal,seed=[1]}",
        lambda: _cfg(kernel_initializer={"class_name": "RandomNormal", "config": {"seed": [1]}}),
        "seed",
    ),
    (
        "kernel_initializer=RandomNormal(mean=array)",
        lambda: _cfg(kernel_initializer=initializers.RandomNormal(mean=np.array([0.0, 1.0]))),
        "mean",
    ),
    (
        "bias_initializer=TruncatedNormal(seed={})",
        lambda: _cfg(bias_initializer=initializers.TruncatedNormal(seed={"a": 1})),
        "seed",
    ),
    (
        "kernel_initializer=RandomUniform(maxval=[1])",
        lambda: _cfg(kernel_initializer=initializers.RandomUniform(maxval=[1.0])),
        "maxval",
    ),
    (
        "kernel_initializer=Orthogonal(seed=[0])",
        lambda: _cfg(kernel_initializer=initializers.Orthogonal(seed=[0])),
        "seed",
    ),
]:
    either(f"hashable.config.{name}", make, _hashable, fragment)

for name, make in [
    (
        "kernel_initializer={VarianceScaling,axes=lists}",
        lambda: _cfg(
            kernel_initializer={"class_name": "VarianceScaling", "config": {"input_axes": [0], "output_axes": [1]}}
        ),
    ),
    (
        "kernel_constraint={MaxNorm,axis=[0,1]}",
        lambda: _cfg(kernel_constraint={"class_name": "MaxNorm", "config": {"axis": [0, 1]}}),
    ),
    (
        "kernel_initializer={Constant,value=np.float32}",
        lambda: _cfg(kernel_initializer={"class_name": "Constant", "config": {"value": np.float32(0.5)}}),
    ),
    (
        "kernel_regularizer={L2,l2=jnp scalar}",
        lambda: _cfg(kernel_regularizer={"class_name": "L2", "config": {"l2": jnp.asarray(0.1)}}),
    ),
    ("padding=[1,2]", lambda: _cfg(padding=[1, 2])),
    ("kernel_size=np.int64", lambda: _cfg(kernel_size=(np.int64(3),))),
    ("activation=partial", lambda: _cfg(activation=functools.partial(jax.nn.leaky_relu, negative_slope=0.1))),
]:
    returns(f"hashable.config.{name}", make, _hashable)

# ==================================================================================================
# type: bools, NumPy scalars, strings and containers where sizes, names or objects go.
# ==================================================================================================

for name, make, fragments in [
    ("filters=[[2]]", lambda: _cfg(filters=[[2]]), ("filters",)),
    ("filters={2}", lambda: _cfg(filters={2}), ("filters",)),
    ("kernel_size=np.array([[3]])", lambda: _cfg(kernel_size=np.array([[3]])), ("kernel_size",)),
    ("strides=np.bool_", lambda: _cfg(strides=np.bool_(True)), ("strides",)),
    ("dilation_rate=2.0", lambda: _cfg(dilation_rate=2.0), ("dilation_rate",)),
    ("groups=np.float64", lambda: _cfg(filters=4, groups=np.float64(2)), ("groups",)),
    ("output_padding=(1,1)", lambda: _cfg(strides=2, output_padding=(1, 1)), ("output_padding",)),
    ("output_padding=True", lambda: _cfg(strides=2, output_padding=True), ("output_padding",)),
    ("padding={}", lambda: _cfg(padding={"left": 1}), ("padding",)),
    ("padding=(1,'2')", lambda: _cfg(padding=(1, "2")), ("padding",)),
    ("padding=b'same'", lambda: _cfg(padding=b"same"), ("padding",)),
    ("data_format=['channels_last']", lambda: _cfg(data_format=["channels_last"]), ("data_format",)),
    ("activation={}", lambda: _cfg(activation={"class_name": "ReLU", "config": {}}), ("activation",)),
    ("activation=['relu']", lambda: _cfg(activation=["relu"]), ("activation",)),
    ("activation=ReLU", lambda: _cfg(activation="ReLU"), ("activation",)),
    ("kernel_initializer=array", lambda: _cfg(kernel_initializer=np.ones((3, 2, 4))), ("kernel_initializer",)),
    ("kernel_initializer={'foo':1}", lambda: _cfg(kernel_initializer={"foo": 1}), ("kernel_initializer",)),
    ("bias_initializer=class", lambda: _cfg(bias_initializer=3), ("bias_initializer",)),
    ("kernel_regularizer=b'l2'", lambda: _cfg(kernel_regularizer=b"l2"), ("kernel_regularizer",)),
    ("bias_constraint=['non_neg']", lambda: _cfg(bias_constraint=["non_neg"]), ("bias_constraint",)),
    ("use_bias=np.str_", lambda: _cfg(use_bias=np.str_("True")), ("use_bias",)),
    ("conv1d.padding=(1,2,3)", lambda: _conv_cfg(padding=(1, 2, 3)), ("padding",)),
    ("conv1d.groups=True", lambda: _conv_cfg(groups=True), ("groups",)),
]:
    raises(f"type.config.{name}", make, *fragments)

for name, make, fragments in [
    ("stream_init.batch_size=np.bool_", lambda: _stream_init(batch_size=np.bool_(True)), ("batch_size",)),
    ("stream_init.batch_size=(2,'3')", lambda: _stream_init(batch_size=(2, "3")), ("batch_size",)),
    ("stream_init.batch_size=(2,-1)", lambda: _stream_init(batch_size=(2, -1)), ("batch_size",)),
    ("stream_init.dtype=float8", lambda: _stream_init(dtype=jnp.float8_e4m3fn), ("dtype",)),
    ("chunked.chunk_size=np.bool_", lambda: _chunked(chunk_size=np.bool_(True)), ("chunk_size",)),
    ("chunked.chunk_size=-3", lambda: _chunked(chunk_size=-3), ("chunk_size",)),
    ("nnx_init.in_channels=np.bool_", lambda: _nnx_init(in_channels=np.bool_(True)), ("in_channels",)),
    ("nnx_init.in_channels=-4", lambda: _nnx_init(in_channels=-4), ("in_channels",)),
    ("streamer.in_channels=True", lambda: _streamer(in_channels=True), ("in_channels",)),
    ("streamer.in_channels=0", lambda: _streamer(in_channels=0), ("in_channels",)),
    ("streamer.batch_size=-1", lambda: _streamer(batch_size=-1), ("batch_size",)),
    ("streamer.dtype=int32", lambda: _streamer(dtype=jnp.int32), ("dtype",)),
    ("streamer.data_format=NWC", lambda: _streamer(data_format="NWC"), ("data_format",)),
    ("streamer.model=None", lambda: streaming.Streamer(None, {}), ("model",)),
    ("output_length.length=np.bool_", lambda: ct.output_length(_cfg(), np.bool_(True)), ("length",)),
    ("output_length.length=2.0**62", lambda: ct.output_length(_cfg(), 2.0**62), ("length",)),
    ("output_length.config=Conv1DConfig", lambda: ct.output_length(_conv_cfg(), 5), ("config",)),
    ("conv1d.config=transpose_config", lambda: ct.conv1d(_params(_conv_cfg()), _x(), _cfg()), ("config",)),
    ("transpose_pads.config=None", lambda: ct.transpose_pads(None), ("config",)),
    ("plan.x_shape=(1,5,True)", lambda: ct.plan(_cfg(), (1, 5, True)), ("x_shape",)),
    ("plan.x_shape=(1,5,4.0)", lambda: ct.plan(_cfg(), (1, 5, 4.0)), ("x_shape",)),
    ("plan.x_shape=(1,5,-4)", lambda: ct.plan(_cfg(), (1, 5, -4)), ("x_shape",)),
    ("plan.x_shape='abc'", lambda: ct.plan(_cfg(), "abc"), ("x_shape",)),
    ("plan.x_shape=None", lambda: ct.plan(_cfg(), None), ("x_shape",)),
    ("plan.x_shape=(1,'5',4)", lambda: ct.plan(_cfg(), (1, "5", 4)), (("x_shape", "length"),)),
    ("plan.dtype=int32", lambda: ct.plan(_cfg(), X_SHAPE, "int32"), ("dtype",)),
    ("plan.platform=3", lambda: ct.plan(_cfg(), X_SHAPE, platform=3), ("platform",)),
    ("explain.x_shape=(1,5,4.0)", lambda: ct.explain(_cfg(), (1, 5, 4.0)), ("x_shape",)),
    ("default_implementation.backend=3", lambda: ct.default_implementation(3), (("backend", "platform"),)),
    ("conv1d_transpose.implementation=['gemm']", lambda: _transpose(implementation=["gemm"]), ("implementation",)),
    (
        "conv1d_transpose.implementation=Plan(winograd)+groups",
        lambda: _transpose(filters=4, groups=2, implementation=Plan.uniform("winograd")),
        ("groups",),
    ),
    (
        "conv1d_transpose.precision=bogus",
        lambda: ct.conv1d_transpose(_params(_cfg()), _x(), _cfg(), precision="bogus"),
        (("precision", "Precision"),),
    ),
    ("plan_object.forward=['polyphase']", lambda: Plan(forward=["polyphase"]), ("forward",)),
]:
    raises(f"type.{name}", make, *fragments)

either("type.plan.platform=bogus", lambda: ct.plan(_cfg(), X_SHAPE, platform="bogus"), _is_plan, "platform")
either(
    "type.output_length.length=np.uint64",
    lambda: ct.output_length(_cfg(strides=2), np.uint64(5)),
    lambda n: None if n == 11 else (_ for _ in ()).throw(AssertionError(f"output_length is {n}, expected 11")),
    "length",
)

# ==================================================================================================
# array: empty axes, ranks, dtypes, torch tensors, lists and None as arrays.
# ==================================================================================================

for label, implementation in [*((name, name) for name in ct.IMPLEMENTATIONS), ("default", None)]:
    returns(
        f"array.conv1d_transpose[{label}].batch=0",
        functools.partial(
            _transpose, x_shape=(0, 5, 4), strides=2, implementation=implementation, activity_regularizer="l2"
        ),
        _empty_batch((0, 11, 2), activity=True),
    )
    raises(
        f"array.conv1d_transpose[{label}].length=0",
        functools.partial(_transpose, x_shape=(1, 0, 4), strides=2, implementation=implementation),
        "length",
    )
    returns(
        f"array.conv1d_transpose[{label}].rank5",
        functools.partial(_transpose, x_shape=(2, 1, 3, 5, 4), strides=3, implementation=implementation),
        _matches_transpose(x_shape=(2, 1, 3, 5, 4), strides=3),
    )
returns(
    "array.conv1d_transpose.batch=(2,0)",
    functools.partial(_transpose, x_shape=(2, 0, 5, 4), strides=2),
    _empty_batch((2, 0, 11, 2)),
)
returns(
    "array.conv1d_transpose.channels_first_batch=0",
    functools.partial(_transpose, x_shape=(0, 4, 5), strides=2, data_format="channels_first"),
    _empty_batch((0, 2, 11)),
)
returns(
    "array.conv1d_transpose.rank2",
    functools.partial(_transpose, x_shape=(5, 4), strides=2, padding="same"),
    _matches_transpose(x_shape=(5, 4), strides=2, padding="same"),
)
returns(
    "array.conv1d_transpose.float64_numpy_input",
    lambda: ct.conv1d_transpose(_params(_cfg(strides=2)), np.asarray(_x(), np.float64), _cfg(strides=2)),
    _matches_transpose(strides=2),
)


def _bias_only(result):
    y = np.asarray(_output(result))
    expected = np.broadcast_to(np.asarray(_params(_cfg(), 0)["bias"]), (1, 7, 2))
    _assert_close(y, expected)


either(
    "array.conv1d_transpose.channels=0",
    lambda: ct.conv1d_transpose(_params(_cfg(), 0), _x((1, 5, 0)), _cfg()),
    _bias_only,
    ("channels", "in_channels"),
)
returns("array.conv1d.batch=0", functools.partial(_conv, x_shape=(0, 5, 4)), _empty_batch((0, 3, 2)))
raises("array.conv1d.length=0", functools.partial(_conv, x_shape=(1, 0, 4)), "length")
raises("array.conv1d.length<kernel", functools.partial(_conv, x_shape=(1, 2, 4)), "kernel")
returns(
    "array.linen_apply.batch=0",
    lambda: ct.Conv1DTranspose(filters=2, kernel_size=3, strides=2).init_with_output(_key(), jnp.ones((0, 5, 4)))[0],
    _shape_is(0, 11, 2),
)
raises(
    "array.linen_apply.length=0",
    lambda: ct.Conv1DTranspose(filters=2, kernel_size=3).init(_key(), jnp.ones((1, 0, 4))),
    "length",
)
returns("array.nnx_call.batch=0", lambda: _nnx_init(strides=2)(jnp.ones((0, 5, 4))), _shape_is(0, 11, 2))
raises("array.nnx_call.length=0", lambda: _nnx_init()(jnp.ones((1, 0, 4))), "length")
raises(
    "array.linen_conv1d.length=0",
    lambda: ct.Conv1D(filters=2, kernel_size=3).init(_key(), jnp.ones((1, 0, 4))),
    "length",
)
raises("array.chunked.length=0", functools.partial(_chunked, x_shape=(1, 0, 4)), "length")
raises("array.plan.length=0", lambda: ct.plan(_cfg(), (1, 0, 4)), "length")


def _stream_empty_batch():
    config = _cfg(strides=2)
    params = _params(config)
    state = streaming.init(config, 0)
    state, y = streaming.step(params, state, jnp.ones((0, 5, 4)), config)
    return y, streaming.finish(params, state, config)


def _both_empty(result):
    y, tail = result
    if y.shape != (0, 10, 2) or tail.shape[0] != 0:
        raise AssertionError(f"step gave {y.shape}, finish {tail.shape}")


returns("array.stream.batch=0", _stream_empty_batch, _both_empty)


def _streamer_empty_batch():
    streamer = _streamer(batch_size=0)
    _state, y = streamer.step(streamer.init(), jnp.ones((0, 2, 4)))
    return y


returns("array.streamer.batch=0", _streamer_empty_batch, _shape_is(0, 4, 2))
raises("array.streamer.steps=0", lambda: _streamer().step(_streamer().init(), jnp.ones((1, 0, 4))), "chunk", "0")
raises("array.streamer.chunk=None", lambda: _streamer().step(_streamer().init(), None), "chunk")
raises("array.streamer.chunk=torch", lambda: _streamer().step(_streamer().init(), _torch().ones(1, 2, 4)), "chunk")
raises(
    "array.streamer.chunk=int32",
    lambda: _streamer().step(_streamer().init(), jnp.ones((1, 2, 4), jnp.int32)),
    "chunk",
    "int32",
)
raises("array.streamer.chunk_rank2", lambda: _streamer().step(_streamer().init(), jnp.ones((2, 4))), "chunk")

OBJECT_X = np.empty(X_SHAPE, dtype=object)
OBJECT_X.fill(1.0)
for name, x, fragments in [
    ("object", OBJECT_X, ("x", "object")),
    ("str", np.full(X_SHAPE, "a"), ("x", "floating")),
    ("structured", np.zeros(X_SHAPE, dtype=[("a", np.float32)]), ("x", "floating")),
    ("float8_e5m2", np.ones(X_SHAPE, jnp.float8_e5m2), ("x", "float8")),
    ("float4", np.ones(X_SHAPE).astype(jnp.float4_e2m1fn), ("x", "float4")),
    ("uint64", np.ones(X_SHAPE, np.uint64), ("x", "floating")),
    ("ShapeDtypeStruct", jax.ShapeDtypeStruct(X_SHAPE, jnp.float32), ("x", "array")),
]:
    raises(
        f"array.conv1d_transpose.x={name}",
        functools.partial(lambda x: ct.conv1d_transpose(_params(_cfg()), x, _cfg()), x),
        *fragments,
    )
    raises(
        f"array.linen_init.x={name}",
        functools.partial(lambda x: ct.Conv1DTranspose(filters=2, kernel_size=3).init(_key(), x), x),
        *fragments,
    )
for name, x, fragments in [
    ("object", OBJECT_X, ("x", "object")),
    ("None", None, ("x", "NoneType")),
    ("list", np.ones(X_SHAPE).tolist(), ("x", "list")),
    ("torch", "torch", ("x", "torch")),
    ("complex", np.ones(X_SHAPE, np.complex64), ("x", "complex64")),
]:

    def _with(function, x=x):
        return function(_torch().ones(*X_SHAPE) if isinstance(x, str) else x)

    raises(
        f"array.conv1d.x={name}",
        functools.partial(_with, lambda x: ct.conv1d(_params(_conv_cfg()), x, _conv_cfg())),
        *fragments,
    )
    raises(
        f"array.stream_step.x={name}",
        functools.partial(_with, lambda x: streaming.step(_params(_cfg()), streaming.init(_cfg(), 1), x, _cfg())),
        *fragments,
    )
    raises(
        f"array.chunked.x={name}",
        functools.partial(_with, lambda x: streaming.chunked_conv1d_transpose(_params(_cfg()), x, _cfg(), 2)),
        *fragments,
    )
raises("array.nnx_call.x=None", lambda: _nnx_init()(None), "x")
raises("array.nnx_call.x=object", lambda: _nnx_init()(OBJECT_X), "x", "object")
raises("array.linen_init.x=None", lambda: ct.Conv1DTranspose(filters=2, kernel_size=3).init(_key(), None), "x")
raises(
    "array.linen_init.x=rank1",
    lambda: ct.Conv1DTranspose(filters=2, kernel_size=3).init(_key(), jnp.ones(5)),
    "x",
    "rank",
)
raises("array.nnx_call.x=rank1", lambda: _nnx_init()(jnp.ones(5)), "x", "rank")
raises("array.linen_pad1d.x=rank1", lambda: ct.Pad1D(padding=1).init(_key(), jnp.ones(5)), "x", "rank")
raises(
    "array.linen_pad1d.replicate_length=0",
    lambda: ct.Pad1D(padding=1, mode="replicate").init(_key(), jnp.ones((1, 0, 4))),
    ("x", "steps", "length"),
)
either(
    "array.linen_init.x=torch",
    lambda: ct.Conv1DTranspose(filters=2, kernel_size=3).init_with_output(_key(), _torch().ones(*X_SHAPE))[0],
    _shape_is(1, 7, 2),
    ("x", "torch"),
)
either("array.nnx_call.x=torch", lambda: _nnx_init()(_torch().ones(*X_SHAPE)), _shape_is(1, 7, 2), ("x", "torch"))
either(
    "array.conv1d_transpose.kernel=torch",
    lambda: ct.conv1d_transpose({"kernel": _torch().ones(3, 2, 4), "bias": jnp.zeros(2)}, _x(), _cfg()),
    lambda result: _assert_close(
        _output(result), _reference(_cfg(), {"kernel": np.ones((3, 2, 4)), "bias": np.zeros(2)}, _x())
    ),
    "params['kernel']",
    "torch",
)
raises(
    "array.conv1d_transpose.bias=scalar",
    lambda: ct.conv1d_transpose({"kernel": jnp.ones((3, 2, 4)), "bias": jnp.zeros(())}, _x(), _cfg()),
    "params['bias']",
)
raises(
    "array.conv1d_transpose.kernel=None",
    lambda: ct.conv1d_transpose({"kernel": None, "bias": jnp.zeros(2)}, _x(), _cfg()),
    "params['kernel']",
)
raises(
    "array.conv1d_transpose.kernel=object",
    lambda: ct.conv1d_transpose({"kernel": np.full((3, 2, 4), 1.0, object), "bias": jnp.zeros(2)}, _x(), _cfg()),
    "params['kernel']",
)
raises(
    "array.conv1d_transpose.params=mixed_keys",
    lambda: ct.conv1d_transpose({**_params(_cfg()), 1: jnp.ones(2), "gamma": jnp.ones(2)}, _x(), _cfg()),
    "params",
    "gamma",
)

# ==================================================================================================
# nan: non-finite input samples stay local: the outputs they do not reach stay finite, every
# implementation and the streaming paths alike (checked against the reach computed in NumPy).
# ==================================================================================================

for layer, (fields, in_channels) in NAN_LAYERS.items():
    for label, implementation in NAN_IMPLEMENTATIONS.items():
        if label == "winograd" and fields.get("groups", 1) != 1:
            continue  # winograd computes groups=1 layers only (check_plan says so by name)
        name = f"nan.conv1d_transpose[{label}].{layer}"
        if label == "winograd":
            # winograd needs a phase of 2 or 3 taps; a refusal by name is fine, a leak is not.
            either(
                name,
                functools.partial(_nan_transpose, fields, in_channels, implementation),
                _nan_local(fields, in_channels),
                "winograd",
            )
        else:
            returns(
                name,
                functools.partial(_nan_transpose, fields, in_channels, implementation),
                _nan_local(fields, in_channels),
            )
    for label in ("lhs_dilation", "polyphase") if layer in NAN_CHUNKED_LAYERS else ():
        returns(
            f"nan.chunked[{label}].{layer}",
            functools.partial(_nan_chunked, fields, in_channels, NAN_IMPLEMENTATIONS[label]),
            _nan_local(fields, in_channels),
        )
returns("nan.streamer.conv-transpose-conv", _nan_streamer, _streamer_local)

# ==================================================================================================
# state: streaming states of the wrong config, shape, dtype or structure; optimizer states and trees
# of the wrong structure.
# ==================================================================================================


def _step_with(state, config=None):
    config = _cfg(strides=2) if config is None else config
    return streaming.step(_params(config), state, _x(), config)


def _carry(shape=(1, 1, 2), dtype=jnp.float32):
    return jnp.zeros(shape, dtype)


for name, make, fragments in [
    (
        "channels_first_state",
        lambda: _step_with(streaming.init(_cfg(strides=2, data_format="channels_first"), 1)),
        ("state",),
    ),
    (
        "carry=int32",
        lambda: _step_with(streaming.StreamState(_carry(dtype=jnp.int32), jnp.asarray(0, jnp.int32))),
        ("int32",),
    ),
    (
        "carry=list",
        lambda: _step_with(streaming.StreamState([[0.0, 0.0]], jnp.asarray(0, jnp.int32))),
        ("state.carry",),
    ),
    ("preroll=None", lambda: _step_with(streaming.StreamState(_carry(), None)), ("preroll",)),
    ("preroll=(3,)", lambda: _step_with(streaming.StreamState(_carry(), jnp.zeros(3, jnp.int32))), ("preroll",)),
    ("preroll='0'", lambda: _step_with(streaming.StreamState(_carry(), "0")), ("preroll",)),
    ("preroll=float", lambda: _step_with(streaming.StreamState(_carry(), jnp.asarray(0.5))), ("preroll",)),
    ("state=dict", lambda: _step_with({"carry": _carry(), "preroll": jnp.asarray(0)}), ("state",)),
    (
        "finish.preroll=None",
        lambda: streaming.finish(_params(_cfg(strides=2)), streaming.StreamState(_carry(), None), _cfg(strides=2)),
        ("preroll",),
    ),
    (
        "finish.wrong_config",
        lambda: streaming.finish(_params(_cfg(kernel_size=9)), streaming.init(_cfg(strides=2), 1), _cfg(kernel_size=9)),
        ("state",),
    ),
    (
        "step.config=module",
        lambda: streaming.step(
            _params(_cfg()), streaming.init(_cfg(), 1), _x(), ct.Conv1DTranspose(filters=2, kernel_size=3)
        ),
        ("config",),
    ),
]:
    raises(f"state.stream.{name}", make, *fragments)


def _streamer_step_with(mutate):
    streamer = _streamer()
    return streamer.step(mutate(streamer.init()), jnp.ones((1, 2, 4)))


for name, mutate, fragments in [
    ("None", lambda s: None, ("state",)),
    ("list", lambda s: [s["layers"], s["preroll"]], ("state",)),
    ("no_layers", lambda s: {"layers": {}, "preroll": s["preroll"]}, ("state",)),
    ("extra_key", lambda s: {**s, "extra": 1}, ("state", "extra")),
    ("preroll=float", lambda s: {**s, "preroll": s["preroll"].astype(jnp.float32)}, ("preroll",)),
    ("preroll=None", lambda s: {**s, "preroll": None}, ("preroll",)),
    ("other_batch", lambda s: _streamer(batch_size=2).init(), ("state",)),
    ("layer_leaf=str", lambda s: jax.tree.map(lambda leaf: "x", s), ("state",)),
]:
    raises(f"state.streamer.{name}", functools.partial(_streamer_step_with, mutate), *fragments)

for name, make, fragments in [
    ("update.state=None", lambda: _constraint_update(state=None), ("state",)),
    ("update.state=EmptyState", lambda: _constraint_update(state=__import__("optax").EmptyState()), ("state",)),
    ("update.updates=None", lambda: _constraint_update(updates=None), ("updates",)),
    ("update.params=None", lambda: _constraint_update(params=None), ("params",)),
    ("update.updates=str", lambda: _constraint_update(updates="abc"), ("updates",)),
    (
        "update.params=list",
        lambda: _constraint_update(params=list(jax.tree.leaves(_constrained_params()))),
        ("params",),
    ),
    (
        "update.params=swapped",
        lambda: _constraint_update(
            params={"bias": _constrained_params()["kernel"], "kernel": _constrained_params()["bias"]}
        ),
        ("params",),
    ),
    (
        "update.updates=wrong_shapes",
        lambda: _constraint_update(updates=jax.tree.map(lambda a: jnp.zeros(a.shape[:-1]), _constrained_params())),
        ("updates",),
    ),
    (
        "apply_constraints.constraint=str",
        lambda: ct.apply_constraints({"w": ct.optim.Constrained(jnp.ones(3), "non_neg")}),
        ("constraint",),
    ),
]:
    raises(f"state.optim.{name}", make, *fragments)

# ==================================================================================================
# keras: Keras dicts with unknown keys, nested hostile objects and huge values.
# ==================================================================================================

for name, config, fragments in [
    ("unknown_key", {"filters": 2, "kernel_size": 3, "foo": 1}, ("foo",)),
    ("mixed_key_types", {"filters": 2, "kernel_size": 3, 1: 2, "foo": 3}, ("foo",)),
    ("filters='2'", {"filters": "2", "kernel_size": 3}, ("filters",)),
    ("kernel_size=[3,3]", {"filters": 2, "kernel_size": [3, 3]}, ("kernel_size",)),
    ("padding=['same']", {"filters": 2, "kernel_size": 3, "padding": ["same"]}, ("padding",)),
    ("use_bias='true'", {"filters": 2, "kernel_size": 3, "use_bias": "true"}, ("use_bias",)),
    (
        "activation={ReLU}",
        {"filters": 2, "kernel_size": 3, "activation": {"class_name": "ReLU", "config": {}}},
        ("activation",),
    ),
    (
        "initializer.value={}",
        {
            "filters": 2,
            "kernel_size": 3,
            "kernel_initializer": {"class_name": "Constant", "config": {"value": {"a": 1}}},
        },
        ("kernel_initializer",),
    ),
    (
        "initializer.stddev={}",
        {
            "filters": 2,
            "kernel_size": 3,
            "kernel_initializer": {"class_name": "RandomNormal", "config": {"stddev": {"a": [1]}}},
        },
        ("stddev",),
    ),
    (
        "initializer.seed=[1,2]",
        {
            "filters": 2,
            "kernel_size": 3,
            "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": [1, 2]}},
        },
        ("seed",),
    ),
    (
        "initializer.seed=1e400",
        {
            "filters": 2,
            "kernel_size": 3,
            "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": float("1e400")}},
        },
        ("seed",),
    ),
    (
        "constraint.axis=[[0]]",
        {"filters": 2, "kernel_size": 3, "kernel_constraint": {"class_name": "MaxNorm", "config": {"axis": [[0]]}}},
        ("axis",),
    ),
    (
        "constraint.max_value=nan",
        {
            "filters": 2,
            "kernel_size": 3,
            "kernel_constraint": {"class_name": "MaxNorm", "config": {"max_value": NAN, "axis": 0}},
        },
        ("max_value",),
    ),
    (
        "regularizer.l2=inf",
        {"filters": 2, "kernel_size": 3, "kernel_regularizer": {"class_name": "L2", "config": {"l2": INF}}},
        ("l2",),
    ),
    (
        "regularizer.config=list",
        {"filters": 2, "kernel_size": 3, "kernel_regularizer": {"class_name": "L2", "config": [["l2", 0.1]]}},
        ("kernel_regularizer",),
    ),
    (
        "regularizer.class_name=list",
        {"filters": 2, "kernel_size": 3, "kernel_regularizer": {"class_name": ["L2"], "config": {}}},
        ("kernel_regularizer",),
    ),
    (
        "bias_constraint.class_name={}",
        {"filters": 2, "kernel_size": 3, "bias_constraint": {"class_name": {"a": 1}}},
        ("bias_constraint",),
    ),
    (
        "output_padding=[[1]]",
        {"filters": 2, "kernel_size": 3, "strides": 2, "output_padding": [[1]]},
        ("output_padding",),
    ),
]:
    raises(f"keras.from_keras.{name}", functools.partial(ct.Conv1DTransposeConfig.from_keras, config), *fragments)

raises("keras.from_keras.None", lambda: ct.Conv1DTransposeConfig.from_keras(None), "config")
raises("keras.from_keras.str", lambda: ct.Conv1DTransposeConfig.from_keras("filters=2"), "config")
returns(
    "keras.from_keras.keras3_serialized_initializer",
    lambda: ct.Conv1DTransposeConfig.from_keras(
        {
            "name": "up",
            "trainable": True,
            "dtype": {"class_name": "DTypePolicy", "config": {"name": "float32"}},
            "filters": 2,
            "kernel_size": [3],
            "strides": [2],
            "padding": "same",
            "output_padding": None,
            "data_format": "channels_last",
            "dilation_rate": [1],
            "activation": "linear",
            "use_bias": True,
            "kernel_initializer": {
                "module": "keras.initializers",
                "class_name": "GlorotUniform",
                "config": {"seed": None},
                "registered_name": None,
            },
            "bias_initializer": {
                "module": "keras.initializers",
                "class_name": "Zeros",
                "config": {},
                "registered_name": None,
            },
            "kernel_regularizer": None,
            "bias_regularizer": None,
            "activity_regularizer": None,
            "kernel_constraint": None,
            "bias_constraint": None,
        }
    ),
    _hashable,
)
raises("keras.to_keras.callable_activation", lambda: _cfg(activation=jnp.tanh).to_keras(), "activation")
raises(
    "keras.interop_to_keras.kernel=list",
    lambda: ct.interop.to_keras(_cfg(), {"kernel": [[[1.0]]], "bias": np.zeros(2)}),
    "params['kernel']",
)
raises("keras.interop_to_keras.config=dict", lambda: ct.interop.to_keras({"filters": 2}, _params(_cfg())), "config")
raises("keras.interop_from_keras.None", lambda: ct.interop.from_keras(None), "layer")

# ==================================================================================================
# torch: PyTorch interop arguments.
# ==================================================================================================

for name, make, fragments in [
    ("out_channels=0", lambda: _from_torch(out_channels=0), ("out_channels",)),
    ("out_channels=-2", lambda: _from_torch(out_channels=-2), ("out_channels",)),
    ("out_channels=2.5", lambda: _from_torch(out_channels=2.5), ("out_channels",)),
    ("out_channels=True", lambda: _from_torch(out_channels=True), ("out_channels",)),
    ("out_channels='2'", lambda: _from_torch(out_channels="2"), ("out_channels",)),
    ("in_channels=0", lambda: _from_torch(in_channels=0), ("in_channels",)),
    ("in_channels=-4", lambda: _from_torch(in_channels=-4), ("in_channels", "-4")),
    ("in_channels=2^62", lambda: _from_torch(in_channels=2**62), ("in_channels",)),
    ("kernel_size=0", lambda: _from_torch(kernel_size=0), ("kernel_size",)),
    ("stride=0", lambda: _from_torch(stride=0), ("stride",)),
    ("dilation=-1", lambda: _from_torch(dilation=-1), ("dilation",)),
    ("groups=True", lambda: _from_torch(groups=True), ("groups",)),
    ("groups=3", lambda: _from_torch(groups=3), ("groups",)),
    ("padding=[1,2]", lambda: _from_torch(padding=[1, 2]), ("padding",)),
    ("output_padding=-1", lambda: _from_torch(output_padding=-1), ("output_padding",)),
    ("bias=None", lambda: _from_torch(bias=None), ("bias",)),
    ("prefix=3", lambda: _from_torch(prefix=3), ("prefix",)),
    ("prefix=None", lambda: _from_torch(prefix=None), ("prefix",)),
    ("weight=None", lambda: _from_torch({**TORCH_STATE, "weight": None}), ("state_dict['weight']",)),
    ("weight=str", lambda: _from_torch({**TORCH_STATE, "weight": "abc"}), ("state_dict['weight']",)),
    (
        "weight=object",
        lambda: _from_torch({**TORCH_STATE, "weight": np.full((4, 2, 3), 1.0, object)}),
        ("state_dict['weight']",),
    ),
    ("bias=object", lambda: _from_torch({**TORCH_STATE, "bias": np.full(2, 1.0, object)}), ("state_dict['bias']",)),
    ("state_dict=list", lambda: _from_torch([("weight", TORCH_STATE["weight"])]), ("state_dict",)),
    (
        "weight_norm.g_shape",
        lambda: _from_torch(
            {"weight_g": np.ones((2, 2, 2)), "weight_v": TORCH_STATE["weight"], "bias": TORCH_STATE["bias"]}
        ),
        ("g",),
    ),
]:
    raises(f"torch.from_torch_state_dict.{name}", make, *fragments)

either(
    "torch.from_torch_state_dict.weight=list",
    lambda: _from_torch({**TORCH_STATE, "weight": TORCH_STATE["weight"].tolist()}),
    lambda result: _assert_close(result[1]["kernel"], np.transpose(TORCH_STATE["weight"], (2, 1, 0))),
    "state_dict['weight']",
)
raises("torch.from_torch.None", lambda: ct.interop.from_torch(None), "module")


def _fold_ok(g, v):
    def check(result):
        result = np.asarray(result)
        if not np.issubdtype(result.dtype, np.floating):
            raise AssertionError(f"fold_weight_norm returned {result.dtype} weights")
        v64 = np.asarray(v, np.float64)
        expected = v64 * (np.asarray(g, np.float64) / np.sqrt(np.sum(v64 * v64, axis=(1, 2), keepdims=True)))
        _assert_close(result, expected, "folded weight")

    return check


G = np.full((2, 1, 1), 3.0)
V_INT = np.arange(24).reshape(2, 3, 4) + 1
either("torch.fold_weight_norm.v=int", lambda: ct.interop.fold_weight_norm(G, V_INT), _fold_ok(G, V_INT), "v")
raises(
    "torch.fold_weight_norm.v=complex",
    lambda: ct.interop.fold_weight_norm(G, V_INT.astype(np.complex64)),
    "v",
    "complex",
)
raises(
    "torch.load_torch_state_dict.variables=str",
    lambda: ct.interop.load_torch_state_dict("abc", _torch_pair()[1]),
    "variables",
)
raises(
    "torch.load_torch_state_dict.state_dict=None",
    lambda: ct.interop.load_torch_state_dict(_torch_pair()[0], None),
    "state_dict",
)
raises(
    "torch.load_torch_state_dict.key=int",
    lambda: ct.interop.load_torch_state_dict(_torch_pair()[0], {1: np.ones(2), **_torch_pair()[1]}),
    "state_dict",
    "1",
)
raises("torch.to_torch_state_dict.like=None", lambda: ct.interop.to_torch_state_dict(_torch_pair()[0], None), "like")
raises("torch.to_torch_state_dict.like=str", lambda: ct.interop.to_torch_state_dict(_torch_pair()[0], "abc"), "like")
raises(
    "torch.to_torch_state_dict.variables=None",
    lambda: ct.interop.to_torch_state_dict(None, _torch_pair()[1]),
    "variables",
)

# ==================================================================================================
# module: arguments only the modules take.
# ==================================================================================================

for name, make, fragments in [
    ("linen.dtype=bogus", lambda: _linen_init(dtype="bogus"), ("dtype",)),
    ("linen.param_dtype=int32", lambda: _linen_init(param_dtype=jnp.int32), ("param_dtype",)),
    ("linen.param_dtype=bogus", lambda: _linen_init(param_dtype="bogus"), ("param_dtype",)),
    ("linen.precision=bogus", lambda: _linen_init(precision="bogus"), ("precision",)),
    ("linen.weight_norm='yes'", lambda: _linen_init(weight_norm="yes"), ("weight_norm",)),
    ("linen.implementation=bogus", lambda: _linen_init(implementation="bogus"), ("implementation",)),
    ("linen_conv1d.dtype=int32", lambda: _linen_conv_init(dtype=jnp.int32), ("dtype",)),
    ("nnx.dtype=bogus", lambda: _nnx_init(dtype="bogus")(_x()), ("dtype",)),
    ("nnx.param_dtype=int32", lambda: _nnx_init(param_dtype=jnp.int32), ("param_dtype",)),
    ("nnx.weight_norm='yes'", lambda: _nnx_init(weight_norm="yes"), ("weight_norm",)),
    ("nnx.rngs=no_params_stream", lambda: ct.nnx.Conv1DTranspose(4, 2, 3, rngs=_nnx().Rngs(dropout=0)), ("rngs",)),
    ("nnx.implementation=bogus", lambda: _nnx_init(implementation="bogus")(_x()), ("implementation",)),
    ("linen_residual.layers=3", lambda: ct.Residual(layers=3).init(_key(), _x()), ("layer",)),
    ("linen_residual.layers=None", lambda: ct.Residual(layers=None).init(_key(), _x()), ("layer",)),
    (
        "linen_residual.shape_change",
        lambda: ct.Residual(layers=[ct.Conv1DTranspose(4, 3)]).init(_key(), _x()),
        ("Residual",),
    ),
    ("linen_parallel.branches=[]", lambda: ct.Parallel(branches=[]).init(_key(), _x()), ("branches",)),
    (
        "linen_parallel.combine=max",
        lambda: ct.Parallel(branches=[jnp.tanh], combine="max").init(_key(), _x()),
        ("combine",),
    ),
    (
        "linen_parallel.combine=['sum']",
        lambda: ct.Parallel(branches=[jnp.tanh], combine=["sum"]).init(_key(), _x()),
        ("combine",),
    ),
    ("nnx_parallel.branches='ab'", lambda: ct.nnx.Parallel("ab"), ("branches",)),
    ("nnx_residual.layers=3", lambda: ct.nnx.Residual(3)(_x()), ("layer",)),
    ("linen_pad1d.padding=True", lambda: ct.Pad1D(padding=True).init(_key(), _x()), ("padding",)),
    ("linen_pad1d.padding=-1", lambda: ct.Pad1D(padding=-1).init(_key(), _x()), ("padding",)),
    ("linen_pad1d.padding=(1,2,3)", lambda: ct.Pad1D(padding=(1, 2, 3)).init(_key(), _x()), ("padding",)),
    ("linen_pad1d.mode=None", lambda: ct.Pad1D(padding=1, mode=None).init(_key(), _x()), ("mode",)),
    ("linen_pad1d.mode=['constant']", lambda: ct.Pad1D(padding=1, mode=["constant"]).init(_key(), _x()), ("mode",)),
    ("nnx_pad1d.data_format=NWC", lambda: ct.nnx.Pad1D(1, data_format="NWC"), ("data_format",)),
    ("linen.from_config=dict", lambda: ct.Conv1D.from_config({"filters": 2}), ("config",)),
    (
        "nnx.from_config=transpose_config",
        lambda: ct.nnx.Conv1D.from_config(_cfg(), 4, rngs=_nnx().Rngs(0)),
        ("config",),
    ),
]:
    raises(f"module.{name}", make, *fragments)

returns(
    "module.linen_pad1d.padding=np.int64",
    lambda: ct.Pad1D(padding=np.int64(2)).init_with_output(_key(), _x())[0],
    _shape_is(1, 9, 4),
)

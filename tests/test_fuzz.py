"""Fuzzing every public entry point with hostile input.

The contract: hostile input gives a ValueError or TypeError whose message names the offending
argument (and, where it helps, the value and what was expected), or a correct result; never an
interpreter abort (SIGABRT, SIGSEGV), a hang, an XLA/MLIR error, an AssertionError, ZeroDivisionError,
KeyError, IndexError or AttributeError, nor a silently wrong result.

Two parts:

- the table of tests/fuzz_cases.py: every case runs in a child process (tests/fuzz_child.py) with an
  address-space limit of ``CONVTRANS_FUZZ_MEMORY`` bytes (4 GiB) and ``CONVTRANS_FUZZ_TIMEOUT``
  seconds (20) per case. One child per pytest worker serves every case that worker runs, so JAX is
  imported once, not once per case; a case that kills or hangs the child fails, naming what
  happened, and the next case gets a fresh child.
- hypothesis properties, in process (valid small layers only): every implementation computes what
  ``lhs_dilation`` computes, non-finite inputs stay local in every implementation, an invalid value
  of one config field is an error naming that field, and the Keras objects' numeric arguments are
  checked for NaN, Inf and sign.

tests/test_bad_inputs.py and tests/test_errors.py hold the hand-written cases; this file complements
them.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import convtrans as ct
from convtrans import constraints, initializers, regularizers
from convtrans._src.dispatch import check_plan
from convtrans._src.keras import constraints as keras_constraints
from convtrans._src.keras import initializers as keras_initializers
from convtrans._src.keras import regularizers as keras_regularizers
from convtrans._src.plan import Plan
from tests import fuzz_cases, numpy_reference

ROOT = Path(__file__).resolve().parent.parent
CASE_TIMEOUT = float(os.environ.get("CONVTRANS_FUZZ_TIMEOUT", 20))
START_TIMEOUT = 120.0
MEMORY = int(os.environ.get("CONVTRANS_FUZZ_MEMORY", 4 << 30))
# Exceptions that are never an acceptable answer, even when they also derive from ValueError.
FORBIDDEN = {
    "AssertionError",
    "ZeroDivisionError",
    "KeyError",
    "IndexError",
    "AttributeError",
    "OverflowError",
    "NotImplementedError",
    "RecursionError",
    "MemoryError",
    "SystemError",
    "XlaRuntimeError",
    "JaxRuntimeError",
}


# --- the child process ---------------------------------------------------------------------------


class Child:
    """A tests/fuzz_child.py process that runs cases one at a time, restarted after it dies."""

    def __init__(self):
        self.process = None
        self.lines = None
        self.stderr = None

    def _start(self) -> None:
        env = dict(
            os.environ,
            JAX_PLATFORMS="cpu",
            KERAS_BACKEND="jax",
            CONVTRANS_FUZZ_MEMORY=str(MEMORY),
            PYTHONFAULTHANDLER="1",
            TF_CPP_MIN_LOG_LEVEL="2",
        )
        env.pop("XLA_FLAGS", None)  # one CPU device is enough, and cheaper
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fuzz_child"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            bufsize=1,
        )
        self.lines = queue.Queue()
        threading.Thread(target=self._read, args=(self.process.stdout, self.lines), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            line = self._next(deadline)
            if line == "READY":
                return
            if line is None or line is TimeoutError:
                tail = self._stderr_tail(0)
                self.close(kill=True)
                raise RuntimeError(f"the fuzz child did not start: {tail}")

    @staticmethod
    def _read(stream, lines) -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def _next(self, deadline):
        try:
            return self.lines.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            return TimeoutError

    def _stderr_tail(self, start: int, lines: int = 6) -> str:
        self.stderr.seek(start)
        text = self.stderr.read().decode(errors="replace")
        kept = [line for line in text.splitlines() if line.strip() and not line.startswith("  File ")]
        return " | ".join(kept[-lines:])

    def run(self, name: str) -> dict:
        if self.process is None or self.process.poll() is not None:
            self._start()
        self.stderr.seek(0, os.SEEK_END)
        mark = self.stderr.tell()
        start = time.monotonic()
        try:
            self.process.stdin.write(name + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            self.close()
            return self.run(name)
        deadline = start + CASE_TIMEOUT
        while True:
            line = self._next(deadline)
            if line is TimeoutError:
                self.close(kill=True)
                return {"status": "hang", "seconds": time.monotonic() - start}
            if line is None:
                code = self.process.wait()
                tail = self._stderr_tail(mark)
                self.process = None
                return {"status": "died", "returncode": code, "stderr": tail, "seconds": time.monotonic() - start}
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT ") :])

    def close(self, kill: bool = False) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            if not kill:
                process.stdin.close()
                process.wait(timeout=5)
                return
        except (OSError, subprocess.TimeoutExpired):
            pass
        process.kill()  # this child only: it was started by this runner
        process.wait()


@pytest.fixture(scope="session")
def child():
    runner = Child()
    yield runner
    runner.close()


def verdict(case: fuzz_cases.Case, result: dict):
    """None if ``result`` honours the case's contract, else what went wrong."""
    status = result["status"]
    if status == "hang":
        return f"HANG: no answer within {CASE_TIMEOUT:.0f} s (the child was killed)"
    if status == "died":
        code = result["returncode"]
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        return f"ABORT: the interpreter died ({how}); stderr: {result['stderr'] or '(empty)'}"
    if status == "unknown":
        return "the child does not know this case"
    if status == "returned":
        if case.must_raise:
            return f"RETURNED {result['summary']} where {case.expectation} was expected"
        return None
    if status == "wrong":
        return f"WRONG RESULT {result['summary']}: {result['detail']}"
    kind, message, bases = result["type"], result["message"], set(result["bases"])
    shown = f"{kind}: {message}"
    if not case.errors:
        return f"RAISED {shown}\n  where a correct result was expected\n{result['where']}"
    forbidden = bases & FORBIDDEN
    if forbidden or not bases & {e.__name__ for e in case.errors}:
        return f"WRONG ERROR TYPE {shown}\n  expected {case.expectation}\n{result['where']}"
    missing = fuzz_cases.message_misses(message, case.fragments)
    if missing:
        return f"MESSAGE DOES NOT NAME {missing}: {shown}\n  expected {case.expectation}"
    return None


@pytest.mark.parametrize("name", list(fuzz_cases.CASES))
def test_hostile_input(name, child):
    case = fuzz_cases.CASES[name]
    problem = verdict(case, child.run(name))
    if problem:
        pytest.fail(f"{name}: {problem}", pytrace=False)


def test_the_table_covers_every_class_and_entry_point():
    names = list(fuzz_cases.CASES)
    for kind in ("size", "number", "hashable", "type", "array", "nan", "state", "keras", "torch", "module"):
        assert any(name.startswith(kind + ".") for name in names), kind
    for entry in (
        "linen_init",
        "nnx_init",
        "stream_init",
        "stream_step",
        "chunked",
        "conv1d_transpose",
        "conv1d",
        "plan",
        "explain",
        "output_length",
        "transpose_pads",
        "streamer",
        "from_keras",
        "from_torch_state_dict",
        "load_torch_state_dict",
        "to_torch_state_dict",
        "fold_weight_norm",
        "interop_to_keras",
        "interop_from_keras",
        "optim",
        "initializer",
        "regularizer",
        "constraint",
        "pad1d",
        "residual",
        "parallel",
    ):
        assert any(entry in name for name in names), entry


# --- hypothesis: implementations agree, and non-finite inputs stay local --------------------------

PROPERTY_SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, database=None)
FORCED = {
    **{name: name for name in ct.IMPLEMENTATIONS},
    "winograd": Plan.uniform("winograd"),
    "stacked_product": Plan(correlation="stacked_product"),
}
_conv = jax.jit(ct.conv1d_transpose, static_argnames=("config", "implementation"))


@st.composite
def layers(draw):
    """A valid small layer, the input's batch axes and length (any rank from 2 to 4)."""
    groups = draw(st.sampled_from([1, 1, 2]))
    kernel_size = draw(st.integers(1, 5))
    strides = draw(st.integers(1, 4))
    dilation = draw(st.integers(1, 3))
    padding = draw(st.sampled_from(["valid", "same", "Same", 0, 1, 2, (0, 1), (2, 0)]))
    keras = isinstance(padding, str)
    if keras and strides > 1:
        dilation = 1
    limit = strides if keras else max(strides, dilation)
    config = ct.Conv1DTransposeConfig(
        filters=groups * draw(st.integers(1, 3)),
        kernel_size=kernel_size,
        strides=strides,
        padding=padding,
        output_padding=draw(st.one_of(st.none(), st.integers(0, limit - 1))),
        dilation_rate=dilation,
        groups=groups,
        data_format=draw(st.sampled_from(["channels_last", "channels_first"])),
        use_bias=draw(st.booleans()),
    )
    in_channels = groups * draw(st.integers(1, 3))
    lead = draw(st.sampled_from([(), (1,), (2,), (2, 1)]))
    length = draw(st.integers(1, 8))
    try:
        ct.output_length(config, length)
    except ValueError:
        assume(False)
    return config, in_channels, lead, length


def _layer_input(config, in_channels, lead, length, seed):
    rng = np.random.default_rng(seed)
    inner = (length, in_channels) if config.data_format == "channels_last" else (in_channels, length)
    x = rng.standard_normal(lead + inner).astype(np.float32)
    params = {"kernel": rng.standard_normal(config.kernel_shape(in_channels)).astype(np.float32)}
    if config.use_bias:
        params["bias"] = rng.standard_normal(config.filters).astype(np.float32)
    return x, params


def _numpy_transpose(config, params, x):
    x = np.asarray(x, np.float64)
    lead = x.shape[:-2]
    y = numpy_reference.conv1d_transpose_of(
        config, x.reshape((-1,) + x.shape[-2:]), params["kernel"], params.get("bias")
    )
    return y.reshape(lead + y.shape[1:])


def _forced(config):
    """The forced implementations that can compute ``config`` (check_plan refuses the others)."""
    usable = {}
    for label, implementation in FORCED.items():
        try:
            if isinstance(implementation, Plan):
                check_plan(implementation, config)
        except ValueError:
            continue
        usable[label] = implementation
    return usable


@PROPERTY_SETTINGS
@given(layers(), st.integers(0, 2**16), st.data())
def test_every_implementation_computes_what_lhs_dilation_computes_and_keeps_nans_local(layer, seed, data):
    config, in_channels, lead, length = layer
    x, params = _layer_input(config, in_channels, lead, length, seed)
    expected = _numpy_transpose(config, params, x)
    reference = np.asarray(_conv(params, x, config=config, implementation="lhs_dilation")[0])
    scale = 1.0 + float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(reference, expected, rtol=0, atol=1e-5 * scale)

    # One non-finite sample; the outputs it does not reach stay finite.
    poisoned = x.copy()
    flat = data.draw(st.integers(0, poisoned.size - 1), label="poisoned sample")
    poisoned.reshape(-1)[flat] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]), label="value")
    indicator = (~np.isfinite(poisoned)).astype(np.float64)
    reached = (
        _numpy_transpose(config.replace(use_bias=False), {"kernel": np.ones_like(params["kernel"])}, indicator) > 0
    )

    for label, implementation in _forced(config).items():
        y = np.asarray(_conv(params, x, config=config, implementation=implementation)[0])
        np.testing.assert_allclose(y, reference, rtol=0, atol=1e-4 * scale, err_msg=f"{label} on {config}")
        y_bad = np.asarray(_conv(params, poisoned, config=config, implementation=implementation)[0])
        leaked = ~np.isfinite(y_bad) & ~reached
        assert not leaked.any(), (
            f"{label}: a non-finite input at flat index {flat} makes {int(leaked.sum())} "
            f"outputs it does not reach non-finite, first at {np.argwhere(leaked)[0]}; {config}"
        )
        lost = np.isfinite(y_bad) & reached
        assert not lost.any(), f"{label}: outputs reached by a non-finite input are finite; {config}"


# --- hypothesis: an invalid value of one config field is an error naming that field ---------------

BASE = dict(filters=4, kernel_size=3, strides=2, padding="same", dilation_rate=1, groups=2)
_junk = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.none(),
    st.booleans(),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.just(b"x"),
    st.just(1 + 2j),
    st.just(np.array([[1, 2]])),
    st.just(np.float32(2.0)),
    st.just(object()),
)
_bad_size = st.one_of(
    st.integers(max_value=0),
    st.lists(st.integers(1, 4), min_size=2, max_size=3),
    st.just([]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.booleans(),
    st.none(),
    st.just(np.bool_(True)),
    st.just(np.float64(2.0)),
    st.just([[2]]),
    st.just({2}),
)


def _not_valid_name(valid):
    return lambda value: not (isinstance(value, str) and value in valid)


_INITIALIZER_NAMES = set(keras_initializers._REGISTRY)
_REGULARIZER_NAMES = set(keras_regularizers._REGISTRY)
_CONSTRAINT_NAMES = set(keras_constraints._REGISTRY)
_bad_object_dicts = st.sampled_from(
    [
        {"config": {}},
        {"class_name": "Bogus", "config": {}},
        {"class_name": 3},
        {"class_name": None},
    ]
)


def _objects(valid_names, bad_configs):
    return st.one_of(
        st.text(max_size=8).filter(_not_valid_name(valid_names)),
        st.integers(),
        st.floats(),
        st.booleans(),
        st.lists(st.integers(), max_size=2),
        _bad_object_dicts,
        st.sampled_from(bad_configs),
    )


BAD_VALUES = {
    "filters": _bad_size,
    "kernel_size": _bad_size,
    "strides": _bad_size,
    "dilation_rate": st.one_of(_bad_size, st.integers(2, 2**70)),  # with strides=2 and padding='same'
    "groups": st.one_of(_bad_size, st.sampled_from([3, 5, 8, 2**40])),  # must divide filters=4
    "padding": st.one_of(
        st.text(max_size=6).filter(lambda v: v.lower() not in ("valid", "same")),
        st.integers(max_value=-1),
        st.floats(),
        st.none(),
        st.lists(st.integers(0, 3), min_size=3, max_size=4),
        st.just([]),
        st.tuples(st.integers(max_value=-1), st.integers(0, 3)),
        st.tuples(st.floats(), st.integers(0, 3)),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    ),
    "output_padding": st.one_of(
        st.integers(2, 2**70),
        st.integers(max_value=-1),
        st.floats(),
        st.text(max_size=3),
        st.booleans(),
        st.lists(st.integers(0, 1), min_size=2, max_size=3),
    ),
    "data_format": st.one_of(
        st.text(max_size=14).filter(lambda v: v.lower() not in ("channels_last", "channels_first")),
        st.integers(),
        st.none(),
        st.just(b"channels_last"),
        st.just(["channels_last"]),
    ),
    "activation": st.one_of(
        st.text(max_size=8).filter(lambda v: v not in ct.activations.ACTIVATIONS),
        st.integers(),
        st.floats(),
        st.lists(st.just("relu"), min_size=1, max_size=2),
        st.dictionaries(st.text(max_size=2), st.integers()),
    ),
    "use_bias": st.one_of(st.integers(), st.text(max_size=5), st.none(), st.floats(), st.just([True])),
    "kernel_initializer": _objects(
        _INITIALIZER_NAMES,
        [
            {"class_name": "Constant", "config": {"value": "x"}},
            {"class_name": "VarianceScaling", "config": {"scale": -1}},
            {"class_name": "RandomNormal", "config": {"bogus": 1}},
            None,
        ],
    ),
    "bias_initializer": _objects(
        _INITIALIZER_NAMES,
        [{"class_name": "VarianceScaling", "config": {"mode": "fan"}}, {"class_name": "Zeros", "config": {"a": 1}}],
    ),
    "kernel_regularizer": _objects(
        _REGULARIZER_NAMES,
        [
            {"class_name": "L2", "config": {"l2": -1.0}},
            {"class_name": "L2", "config": {"l2": float("nan")}},
            {"class_name": "L1", "config": {"l1": float("inf")}},
            {"class_name": "L1L2", "config": {"l2": "x"}},
        ],
    ),
    "bias_regularizer": _objects(_REGULARIZER_NAMES, [{"class_name": "L1L2", "config": {"l3": 1}}]),
    "activity_regularizer": _objects(_REGULARIZER_NAMES, [{"class_name": "L2", "config": {"l2": float("-inf")}}]),
    "kernel_constraint": _objects(
        _CONSTRAINT_NAMES,
        [
            {"class_name": "MaxNorm", "config": {"max_value": float("nan")}},
            {"class_name": "MinMaxNorm", "config": {"rate": float("nan")}},
            {"class_name": "UnitNorm", "config": {"axis": "0"}},
        ],
    ),
    "bias_constraint": _objects(_CONSTRAINT_NAMES, [{"class_name": "MaxNorm", "config": {"max_value": -2}}]),
}


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(st.data())
def test_an_invalid_value_of_one_field_is_an_error_naming_that_field(data):
    field = data.draw(st.sampled_from(sorted(BAD_VALUES)), label="field")
    value = data.draw(BAD_VALUES[field], label="value")
    try:
        config = ct.Conv1DTransposeConfig(**{**BASE, field: value})
    except (ValueError, TypeError) as error:
        assert field in str(error), f"{field}={value!r}: {type(error).__name__}: {error}"
        return
    except Exception as error:
        pytest.fail(f"{field}={value!r}: {type(error).__name__}: {error}")
    pytest.fail(f"{field}={value!r} was accepted: {config}")


# --- hypothesis: numeric arguments of the Keras objects ------------------------------------------


def _finite(v):
    return bool(np.isfinite(v))


def _finite_nonnegative(v):
    return bool(np.isfinite(v) and v >= 0)


def _nonnegative_or_inf(v):
    if v == np.inf:
        return None  # "no bound": accepting or refusing it are both fine
    return bool(v >= 0)


def _positive_finite(v):
    return bool(np.isfinite(v) and v > 0)


NUMERIC = [
    (regularizers.L1, "l1", _finite_nonnegative),
    (regularizers.L2, "l2", _finite_nonnegative),
    (regularizers.L1L2, "l1", _finite_nonnegative),
    (regularizers.L1L2, "l2", _finite_nonnegative),
    (constraints.MaxNorm, "max_value", _nonnegative_or_inf),
    (constraints.MinMaxNorm, "min_value", lambda v: bool(np.isfinite(v) and 0 <= v <= 1)),
    (constraints.MinMaxNorm, "max_value", lambda v: None if v == np.inf else bool(v >= 0)),
    (constraints.MinMaxNorm, "rate", lambda v: True if 0 <= v <= 1 else (None if np.isfinite(v) else False)),
    (initializers.RandomNormal, "mean", _finite),
    (initializers.RandomNormal, "stddev", _finite_nonnegative),
    (initializers.TruncatedNormal, "mean", _finite),
    (initializers.TruncatedNormal, "stddev", _finite_nonnegative),
    (initializers.RandomUniform, "minval", lambda v: bool(np.isfinite(v) and v <= 0.05)),
    (initializers.RandomUniform, "maxval", lambda v: bool(np.isfinite(v) and v >= -0.05)),
    (initializers.VarianceScaling, "scale", _positive_finite),
    (initializers.Constant, "value", _finite),
    (initializers.Orthogonal, "gain", _finite),
    (initializers.Identity, "gain", _finite),
]
_ODD = [
    None,
    "0.5",
    b"1",
    [0.5],
    (0.5,),
    {"v": 0.5},
    True,
    False,
    1 + 1j,
    np.complex64(1 + 1j),
    np.array([0.5, 0.5]),
    object(),
]


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    st.sampled_from(NUMERIC),
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e308, -1e308, 5e-324, 2.0, -1.0]),
        st.sampled_from(range(len(_ODD))).map(lambda i: ("odd", i)),
    ),
)
def test_numeric_arguments_of_keras_objects_are_checked(entry, value):
    cls, field, valid = entry
    if isinstance(value, tuple) and value[0] == "odd":
        value = _ODD[value[1]]
        if value is None and cls is regularizers.L1L2:
            return  # None means 0 there, as in Keras
        verdict = False
    else:
        verdict = valid(value)
    try:
        made = cls(**{field: value})
    except (ValueError, TypeError) as error:
        assert verdict is not True, f"{cls.__name__}({field}={value!r}) refused: {error}"
        assert field in str(error), f"{cls.__name__}({field}={value!r}): {type(error).__name__}: {error}"
        return
    except Exception as error:
        pytest.fail(f"{cls.__name__}({field}={value!r}): {type(error).__name__}: {error}")
    assert verdict is not False, f"{cls.__name__}({field}={value!r}) was accepted: {made}"
    stored = getattr(made, field)
    assert stored == value and type(stored) in (int, float), (
        f"{cls.__name__}({field}={value!r}) stored {stored!r} of type {type(stored).__name__}"
    )
    hash(made)


# --- hypothesis: huge sizes never reach XLA in-process --------------------------------------------


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(st.sampled_from(["filters", "kernel_size", "strides", "dilation_rate"]), st.integers(2**31 - 2, 2**64))
def test_huge_layers_have_exact_lengths_or_are_refused_by_name(field, value):
    fields = {"filters": 2, "kernel_size": 3, "padding": 1, field: value}
    try:
        config = ct.Conv1DTransposeConfig(**fields)
    except ValueError as error:  # a size limit is fine, said by name
        assert field in str(error) and str(value) in str(error), f"{field}={value}: {error}"
        return
    ke = (config.kernel_size - 1) * config.dilation_rate + 1
    try:
        length = ct.output_length(config, 3)
    except ValueError as error:  # e.g. an output longer than any array can be
        assert field in str(error), f"{field}={value}: {error}"
    else:
        assert length == 2 * config.strides + ke - 2
    assert tuple(ct.transpose_pads(config)) == (ke - 2, ke - 2)

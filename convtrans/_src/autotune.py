"""Autotuning: the plan of a layer chosen by timing its candidates on the device itself.

Off by default. When on (:func:`autotune`, or ``CONVTRANS_AUTOTUNE=1`` in the environment), the
first trace of a transposed convolution of a new signature (the convolution's fields, the rank-3
input shape, dtype and precision) on a new environment (device, versions; see
:mod:`convtrans._src.plan_cache`) times its candidate plans on the default backend's first device
and keeps the fastest, in memory and on disk; every later trace, in this process or the next,
reads that choice and times nothing.

The search is by parts, as the plan's parts are independent (:func:`convtrans._src.kernels.
polyphase.convolve` runs the forward by ``forward``/``correlation`` and the tangents by
``input_gradient``/``kernel_gradient``):

1. the forward candidates (each form of :func:`~convtrans._src.dispatch.computable_forms`, and
   for 16-bit inputs the stacked-product correlations too) are timed on the forward pass alone,
   which is what inference runs;
2. with the fastest forward fixed, the gradient candidates are timed on the forward and backward
   passes together (the output, and the gradients of the input and the kernel), which is what a
   training step runs.

A candidate replaces the static plan's part only when its median is faster by more than
:data:`TIE_MARGIN`, so that noise does not trade one plan for another of the same speed.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from convtrans._src import dispatch
from convtrans._src.checks import is_symbolic
from convtrans._src.kernels.polyphase import convolve
from convtrans._src.numerics import accumulation_dtype
from convtrans._src.plan import Plan
from convtrans._src.plan_cache import PlanCache, TunedPlan, environment, layer_signature

ENABLE_VARIABLE = "CONVTRANS_AUTOTUNE"
_ON = ("1", "true", "yes", "on")
_OFF = ("", "0", "false", "no", "off")

# A candidate must beat the static plan's median by this fraction to replace it: on a shared
# CPU the medians of a few rounds of millisecond calls move by a few percent between runs.
TIE_MARGIN = 0.05
# Interleaved rounds per candidate, and the least time one sample lasts (enough calls to last it):
# a sample of several calls averages out the scheduler's preemptions of a single call.
ROUNDS = 7
SLOW_ROUNDS = 3  # when one call of some candidate takes over SLOW_CALL_S
SLOW_CALL_S = 0.25
SAMPLE_S = 0.01


class _Setting:
    enabled: bool | None = None  # None: follow CONVTRANS_AUTOTUNE
    retune: bool = False  # time again even what is cached (convtrans.tune's --retune)


CACHE = PlanCache()
_RECORDERS: list[list[TuningRecord]] = []


def _from_environment() -> bool:
    value = os.environ.get(ENABLE_VARIABLE, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(
        f"{ENABLE_VARIABLE}={os.environ[ENABLE_VARIABLE]!r} is not understood; expected one of "
        f"{_ON} to tune or {_OFF[1:]} (or unset) not to."
    )


def autotune_enabled() -> bool:
    """Whether transposed convolutions traced now choose their plan by timing (see
    :func:`autotune`)."""
    return _Setting.enabled if _Setting.enabled is not None else _from_environment()


def _set(enabled: bool | None) -> None:
    before = autotune_enabled()
    _Setting.enabled = enabled
    if autotune_enabled() != before:
        # jax.jit reuses a function's earlier traces, and with them the plans chosen then; a
        # change of setting must reach functions already traced, so their traces are dropped.
        jax.clear_caches()


class Autotuning:
    """The autotuning setting :func:`convtrans.autotune` applied; as a context manager, it restores the
    previous setting on exit."""

    def __init__(self, enabled: bool):
        if not isinstance(enabled, bool):
            raise TypeError(f"autotune(enabled) takes True or False, got {enabled!r}.")
        self.enabled = enabled
        self._previous = _Setting.enabled
        _set(enabled)

    def __enter__(self) -> Autotuning:
        return self

    def __exit__(self, *exc_info: object) -> None:
        _set(self._previous)

    def __repr__(self) -> str:
        return f"convtrans.autotune({self.enabled})"


def autotune(enabled: bool = True) -> Autotuning:
    """Turns autotuning on (or off) for the transposed convolutions traced from now on.

    With autotuning on, the default plan of a layer (``implementation`` None or ``"polyphase"``)
    is chosen by timing the candidate plans on the default backend's first device, per layer
    signature (the convolution's fields, the input shape, dtype and precision), and remembered in
    memory and under ``CONVTRANS_CACHE_DIR`` (default ``~/.cache/convtrans``) per device kind and
    software versions: a signature is timed once, and its plan is the same in every later process.
    A forced ``implementation`` is never tuned. Like ``torch.backends.cudnn.benchmark``, the first
    trace of each new layer pays for the timing (seconds per layer; ``python -m convtrans.tune``
    pays it ahead of time).

    The plan is chosen when a function is traced; turning the setting on or off clears JAX's
    caches of traced and compiled functions (``jax.clear_caches``), so that functions compiled
    before are traced again with the new setting. Under ``jax.vmap`` the signature is the per-example
    shape the layer sees; a symbolic (``jax.export``) shape is never tuned.

    Use it as a call, ``convtrans.autotune(True)``, or as a context manager, ``with
    convtrans.autotune(): ...``, which restores the previous setting on exit. Without either, the
    environment variable ``CONVTRANS_AUTOTUNE=1`` turns it on.

    Args:
      enabled: True to tune, False for the static plan of :func:`convtrans.plan`.

    Returns:
      the setting, a context manager.
    """
    return Autotuning(enabled)


class TuningRecord(NamedTuple):
    """One layer met while tuning: its signature, the plan chosen, and whether the choice came
    from the cache (True) or was timed now (False)."""

    signature: str
    tuned: TunedPlan
    cached: bool


@contextlib.contextmanager
def recording(retune: bool = False) -> Iterator[list[TuningRecord]]:
    """Within the block, autotuning is on, and every tuned layer is appended to the list yielded;
    ``retune`` times layers again even when a plan is cached."""
    records: list[TuningRecord] = []
    previous = _Setting.retune
    _RECORDERS.append(records)
    _Setting.retune = retune
    try:
        with Autotuning(True):
            yield records
    finally:
        _Setting.retune = previous
        _RECORDERS.remove(records)


# --- candidates ------------------------------------------------------------------------------


def _label(*forms: str) -> str:
    return "/".join(forms)


def forward_candidates(config: Any, in_channels: int, length: int, dtype: Any) -> list[tuple[str, str]]:
    """``(forward, correlation)`` pairs that can compute the layer's forward pass."""
    forms = dispatch.computable_forms(config, in_channels, length, dtype)
    pairs = [(form, "convolution") for form in ("polyphase", "winograd", "gemm", "lhs_dilation") if form in forms]
    if accumulation_dtype(dtype) != jnp.dtype(dtype):
        pairs += [(form, "stacked_product") for form in ("polyphase", "winograd") if form in forms]
    return pairs


def gradient_candidates(config: Any, in_channels: int, length: int, dtype: Any) -> list[tuple[str, str]]:
    """``(input_gradient, kernel_gradient)`` pairs that can compute the layer's tangents."""
    forms = dispatch.computable_forms(config, in_channels, length, dtype)
    pairs = [("polyphase", "polyphase"), ("lhs_dilation", "lhs_dilation")]
    if config.strides > 1:
        pairs.append(("lhs_dilation", "polyphase"))
    if "zero_padded" in forms:
        pairs.append(("lhs_dilation", "zero_padded"))
    pairs += [(form, form) for form in ("winograd", "gemm") if form in forms]
    return pairs


# --- timing ----------------------------------------------------------------------------------


def _call_seconds(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def median_milliseconds(programs: dict[str, Callable[[], Any]]) -> dict[str, float]:
    """Median milliseconds per call of each program, timed interleaved: each round samples every
    program once (in an order rotated each round), a sample being the mean of enough calls to last
    :data:`SAMPLE_S`, after one untimed call of its own."""
    once = {}
    for name, fn in programs.items():
        jax.block_until_ready(fn())  # the first call may allocate
        once[name] = _call_seconds(fn)
    counts = {name: max(1, math.ceil(SAMPLE_S / max(seconds, 1e-7))) for name, seconds in once.items()}
    rounds = SLOW_ROUNDS if max(once.values()) > SLOW_CALL_S else ROUNDS
    names = list(programs)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn, count = programs[name], counts[name]
            jax.block_until_ready(fn())
            start = time.perf_counter()
            out = fn()
            for _ in range(count - 1):
                out = fn()
            jax.block_until_ready(out)
            samples[name].append((time.perf_counter() - start) / count * 1e3)
    return {name: float(np.median(values)) for name, values in samples.items()}


def _inputs(config: Any, shape: tuple[int, int, int], dtype: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    rng = np.random.default_rng(0)
    in_channels = shape[config.channel_axis]
    x = rng.standard_normal(shape).astype(np.float32)
    kernel = rng.standard_normal(config.kernel_shape(in_channels)).astype(np.float32)
    kernel /= math.sqrt(config.kernel_size * in_channels / config.strides)
    y = jax.eval_shape(lambda a, k: convolve(a, k, config, None, Plan()), x, kernel)
    cotangent = np.cos(np.arange(math.prod(y.shape))).reshape(y.shape)
    return tuple(jnp.asarray(a, dtype) for a in (x, kernel, cotangent))  # type: ignore[return-value]


def _programs(
    config: Any, shape: tuple[int, int, int], dtype: Any, precision: Any, plans: dict[str, Plan], backward: bool
) -> dict[str, Callable[[], Any]]:
    """A compiled zero-argument call per plan: the forward pass, or with ``backward`` the output
    and the input and kernel gradients (the cotangent an argument, so nothing is folded)."""
    x, kernel, cotangent = _inputs(config, shape, dtype)
    programs = {}
    for name, plan in plans.items():

        def forward(a, k, plan=plan):
            return convolve(a, k, config, precision, plan)

        def forward_backward(a, k, c, forward=forward):
            y, vjp = jax.vjp(forward, a, k)
            return y, vjp(c)

        try:
            if backward:
                compiled = jax.jit(forward_backward).lower(x, kernel, cotangent).compile()
                programs[name] = lambda compiled=compiled: compiled(x, kernel, cotangent)
            else:
                compiled = jax.jit(forward).lower(x, kernel).compile()
                programs[name] = lambda compiled=compiled: compiled(x, kernel)
            jax.block_until_ready(programs[name]())
        except Exception as error:  # a candidate that cannot run here (memory, say) is not one
            programs.pop(name, None)
            warnings.warn(f"convtrans autotune: skipping {plan} on {shape}: {error}", stacklevel=2)
    return programs


def _fastest(times: dict[str, float], incumbent: str) -> str:
    best = min(times, key=times.__getitem__)
    if incumbent in times and times[incumbent] <= times[best] * (1 + TIE_MARGIN):
        return incumbent
    return best


def time_plans(config: Any, shape: tuple[int, int, int], dtype: Any, precision: Any, static_plan: Plan) -> TunedPlan:
    """Times the candidates of a layer taking rank-3 inputs of ``shape`` and returns the chosen
    plan with the medians behind it (see the module's docstring for the search)."""
    in_channels, length = shape[config.channel_axis], shape[config.time_axis]
    static_gradients = (static_plan.input_gradient, static_plan.kernel_gradient)
    forwards = {
        _label(forward, correlation): Plan(forward, *static_gradients, correlation)
        for forward, correlation in forward_candidates(config, in_channels, length, dtype)
    }
    forward_ms = median_milliseconds(_programs(config, shape, dtype, precision, forwards, backward=False))
    forward, correlation = _fastest(forward_ms, _label(static_plan.forward, static_plan.correlation)).split("/")
    gradients = {
        _label(input_gradient, kernel_gradient): Plan(forward, input_gradient, kernel_gradient, correlation)
        for input_gradient, kernel_gradient in gradient_candidates(config, in_channels, length, dtype)
    }
    backward_ms = median_milliseconds(_programs(config, shape, dtype, precision, gradients, backward=True))
    input_gradient, kernel_gradient = _fastest(
        backward_ms, _label(static_plan.input_gradient, static_plan.kernel_gradient)
    ).split("/")
    plan = Plan(forward, input_gradient, kernel_gradient, correlation)
    dispatch.check_plan(plan, config)
    return TunedPlan(plan, static_plan, forward_ms, backward_ms)


# --- the entry point of a trace --------------------------------------------------------------


def rank3_shape(x_shape: Sequence[int]) -> tuple[int, int, int]:
    """An input shape of any rank >= 2 as the kernel sees it: the batch axes multiplied."""
    shape = tuple(int(n) for n in x_shape)
    return (math.prod(shape[:-2]), shape[-2], shape[-1])


def stored_plan(config: Any, x_shape: Sequence[int], dtype: Any, precision: Any = None) -> TunedPlan | None:
    """The stored tuned plan of a layer on the default backend for inputs of ``x_shape`` (any
    rank >= 2), or None; times nothing."""
    described = environment(jax.default_backend())
    return CACHE.get(described, layer_signature(config, rank3_shape(x_shape), jnp.dtype(dtype), precision))


def _concrete_shape(shape: tuple[Any, ...]) -> tuple[int, int, int] | None:
    if any(is_symbolic(n) for n in shape) or 0 in shape:
        return None
    return tuple(int(n) for n in shape)  # type: ignore[return-value]


def tuned_plan(config: Any, shape: tuple[Any, ...], dtype: Any, precision: Any, static_plan: Plan) -> Plan | None:
    """The tuned plan for the default backend of a layer taking rank-3 inputs of ``shape``, timed
    now unless cached; None when autotuning is off or the shape is symbolic or empty."""
    concrete = _concrete_shape(tuple(shape))
    if not autotune_enabled() or concrete is None:
        return None
    # Timing runs programs of its own while the caller's function is being traced.
    with jax.ensure_compile_time_eval():
        described = environment(jax.default_backend())
        signature = layer_signature(config, concrete, dtype, precision)
        tuned = None if _Setting.retune else CACHE.get(described, signature)
        cached = tuned is not None
        if tuned is None:
            tuned = time_plans(config, concrete, dtype, precision, static_plan)
            CACHE.put(described, signature, tuned)
    for records in _RECORDERS:
        records.append(TuningRecord(signature, tuned, cached))
    return tuned.plan

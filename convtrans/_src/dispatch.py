"""What computes a layer: one pure policy, its thresholds, and why each choice is made.

A :class:`Plan` names the form of each part of the computation:

- ``forward``: how the output is computed;
- ``input_gradient`` / ``kernel_gradient``: how the tangent with respect to the input / kernel is
  computed (reverse mode transposes it into the gradient);
- ``correlation``: how the forward pass runs its stride-1 correlations (polyphase and Winograd
  forms): as convolutions, or as one matrix product of stacked shifted input windows.

Forms (see docs/design.md for the math and the guarantees of each):

==============  ==================================================================================
form            computation
==============  ==================================================================================
lhs_dilation    the reference: a convolution of the ``s``-dilated input (what Keras computes)
polyphase       one stride-1 convolution per phase group over the undilated input
winograd        polyphase, with its two- and three-tap phases by Winograd's F(2, r) (groups = 1)
gemm            one matrix product of every input step and tap, then an overlap-add
zero_padded     (kernel gradient) polyphase as ONE convolution, the kernel padded with zero taps
==============  ==================================================================================

:func:`select_plan` is the policy: a pure function of the layer's geometry, the input's channels
and length per example (never the batch size, so a ``jax.vmap``-ed call and the batched call get
the same plan and a symbolic batch is never compared), the dtype and the platform. Forms tuned on
XLA:CPU run on CPU only; on every other platform the plan is the plain polyphase convolution until
a measurement there says otherwise. A symbolic length cannot be compared with a memory budget, so
it gets the forms whose temporaries are bounded for any length.

The thresholds are listed with their provenance in :data:`THRESHOLDS`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from convtrans._src.checks import is_symbolic
from convtrans._src.geometry import (
    PHASE_LOOP_MAX_STRIDES,
    ConvGeometry,
    Size,
    output_length,
    phase_groups,
    phases_share_taps,
)
from convtrans._src.kernels.winograd import TAPS as WINOGRAD_TAPS
from convtrans._src.numerics import accumulation_dtype
from convtrans._src.plan import Plan

_MIB = 2**20
_CPU_RUN = "2-core AMD EPYC (AVX-512, AVX-512 BF16), XLA:CPU, jax 0.10.2, 2026-11-24/25"


def _crossover(name: str) -> str:
    return f"make crossover (python -m benchmarks.crossover --only {name})"


class Threshold(NamedTuple):
    """A constant of the policy and where its value comes from; ``command`` re-derives the value
    (for a bound set by reasoning, times both sides of it) on the machine at hand."""

    name: str
    value: int
    unit: str
    rule: str
    evidence: str
    machine: str
    command: str


THRESHOLDS = (
    Threshold(
        "WINOGRAD_MIN_CHANNELS",
        64,
        "input channels per group",
        "CPU, groups = 1, phases of 2 or 3 taps: from this width, Winograd's F(2, r) gradients "
        "(and the forward from WINOGRAD_FORWARD_MIN_CHANNELS)",
        "float32 forward+backward 1.2-1.6x faster than the other forms from 64 channels; bfloat16 "
        "gradients 1.1-1.2x faster; at 16 channels 0.5x forward (its extra passes over the data "
        "cost more than the products save)",
        _CPU_RUN,
        _crossover("WINOGRAD_MIN_CHANNELS"),
    ),
    Threshold(
        "WINOGRAD_FORWARD_MIN_CHANNELS",
        128,
        "input channels per group",
        "CPU, float32 and float64, where Winograd takes the gradients: from this width it computes "
        "the forward pass too (16-bit inputs never: their forward keeps its 16-bit products)",
        "forward 1.0-1.3x faster than the polyphase convolution at 128 channels, 0.86-0.90x at 64 "
        "on 2 of 3 geometries (k16 s8, k3 s1 d2; k4 s2 1.16x); the forward alone makes one pass "
        "over the kernel per product saved, the gradients three products per transform",
        "2-core AMD EPYC (AVX-512, AVX-512 BF16), XLA:CPU, jax 0.10.2, the sweep of 2026-12-01",
        _crossover("WINOGRAD_FORWARD_MIN_CHANNELS"),
    ),
    Threshold(
        "WINOGRAD_MAX_BYTES",
        16 * _MIB,
        "bytes per example",
        "above this, the Winograd temporaries ((r + 1) / 2 times input plus output) of one example "
        "are deemed too large and the convolutions are used",
        "a memory bound set by reasoning, not a speed crossover; every benchmark shape uses under 4 MiB per example",
        "-",
        _crossover("WINOGRAD_MAX_BYTES"),
    ),
    Threshold(
        "GEMM_MIN_CHANNELS",
        512,
        "input channels per group",
        "CPU: from this width, the GEMM form computes the output (before Winograd) and, where "
        "Winograd does not apply, the gradients",
        "forward 1.15-1.5x faster at 512 channels, 0.8-0.95x at 64; forward+backward 1.3-1.4x at "
        "512, 0.65x at 256 (the GEMM backward copies the tap-product cotangent into the layout the "
        "weight-gradient product wants); measured with the cotangent a runtime argument. Where "
        "Winograd applies (2-tap phases, 512 channels, 50-256 steps) the GEMM forward is 1.1-2x "
        "faster than Winograd's, 0.8-0.9x at 128 and 256 channels",
        f"{_CPU_RUN}; against Winograd 2026-12-02",
        _crossover("GEMM_MIN_CHANNELS"),
    ),
    Threshold(
        "GEMM_MAX_BYTES",
        16 * _MIB,
        "bytes per example",
        "above this, the GEMM form's tap products (n * k * filters values of one example, k / s "
        "outputs) are deemed too large and the convolutions are used",
        "a memory bound set by reasoning, not a speed crossover; every benchmark shape uses under 3 MiB per example",
        "-",
        _crossover("GEMM_MAX_BYTES"),
    ),
    Threshold(
        "ZERO_PADDED_MAX_CHANNELS",
        32,
        "input channels per group",
        "CPU, dilation 1, several phase groups: up to this width, the kernel's tangent is ONE "
        "convolution with zero-padded taps (one weight gradient instead of one per group)",
        "forward+backward 1.05-1.5x faster at 16 and 32 channels, 0.9-1.1x at 64-256 channels",
        _CPU_RUN,
        _crossover("ZERO_PADDED_MAX_CHANNELS"),
    ),
    Threshold(
        "STACKED_PRODUCT_MIN_CHANNELS",
        64,
        "input channels per group",
        "CPU, bfloat16: from this width, the forward's correlations are one bfloat16 matrix "
        "product of stacked shifted windows, accumulated in float32",
        "1.5-1.8x faster than XLA:CPU's bfloat16 convolutions (which run at the float32 rate) from "
        "64 channels, 0.65x at 16; float16 has no such products and was slower",
        _CPU_RUN,
        _crossover("STACKED_PRODUCT_MIN_CHANNELS"),
    ),
)
_VALUES = {threshold.name: threshold.value for threshold in THRESHOLDS}
WINOGRAD_MIN_CHANNELS = _VALUES["WINOGRAD_MIN_CHANNELS"]
WINOGRAD_FORWARD_MIN_CHANNELS = _VALUES["WINOGRAD_FORWARD_MIN_CHANNELS"]
WINOGRAD_MAX_BYTES = _VALUES["WINOGRAD_MAX_BYTES"]
GEMM_MIN_CHANNELS = _VALUES["GEMM_MIN_CHANNELS"]
GEMM_MAX_BYTES = _VALUES["GEMM_MAX_BYTES"]
ZERO_PADDED_MAX_CHANNELS = _VALUES["ZERO_PADDED_MAX_CHANNELS"]
STACKED_PRODUCT_MIN_CHANNELS = _VALUES["STACKED_PRODUCT_MIN_CHANNELS"]


# Names accepted by ``implementation=``: a uniform plan, or the platform's own ("polyphase").
IMPLEMENTATION_NAMES = ("gemm", "lhs_dilation", "polyphase")


def platform_of(platform: str | None) -> str:
    """``platform`` lower-cased; None is the platform of JAX's default backend."""
    if platform is None:
        return jax.default_backend()
    if not isinstance(platform, str) or not platform:
        raise TypeError(f"platform must be a platform name such as 'cpu' or 'cuda', got {platform!r}.")
    return platform.lower()


def _phase_taps(config: ConvGeometry) -> list[int]:
    """The taps of each phase group; none past :data:`PHASE_LOOP_MAX_STRIDES`, where no phase
    form runs (see :func:`convtrans._src.kernels.polyphase._without_phase_loop`)."""
    if config.strides > PHASE_LOOP_MAX_STRIDES:
        return []
    return [group.taps for group in phase_groups(config.kernel_size, config.strides, config.dilation_rate)]


def _winograd_taps(config: ConvGeometry, groups: int) -> list[int]:
    if groups != 1:
        return []
    return [taps for taps in _phase_taps(config) if taps in WINOGRAD_TAPS]


def _winograd_bytes(config: ConvGeometry, filters: int, in_channels: int, length: int, taps: int, dtype: Any) -> int:
    # r + 1 transformed half-inputs and as many half-outputs of products, for one example.
    itemsize = accumulation_dtype(dtype).itemsize
    return (taps + 1) * (output_length(config, length) * filters + length * in_channels) * itemsize // 2


def _tap_products_bytes(config: ConvGeometry, filters: int, length: int, dtype: Any) -> int:
    return length * config.kernel_size * filters * accumulation_dtype(dtype).itemsize


def _mib(size: int) -> str:
    return f"{size / _MIB:.3g} MiB"


class _Verdict(NamedTuple):
    """Whether a predicate of the policy holds, and the reason in words."""

    holds: bool
    why: str


def _winograd_fits(config: Any, in_channels: int, length: Size, dtype: Any) -> _Verdict:
    per_group = in_channels // config.groups
    taps = _winograd_taps(config, config.groups)
    if not taps:
        return _Verdict(
            False, "Winograd needs groups = 1" if config.groups != 1 else "no phase has 2 or 3 taps for Winograd"
        )
    if per_group < WINOGRAD_MIN_CHANNELS:
        return _Verdict(False, f"{per_group} < WINOGRAD_MIN_CHANNELS={WINOGRAD_MIN_CHANNELS} input channels")
    if is_symbolic(length):
        return _Verdict(False, "the length is symbolic, so Winograd's temporaries cannot be bounded")
    size = _winograd_bytes(config, config.filters, in_channels, length, max(taps), dtype)
    if size > WINOGRAD_MAX_BYTES:
        return _Verdict(
            False,
            f"Winograd's temporaries, {_mib(size)} per example, exceed WINOGRAD_MAX_BYTES={_mib(WINOGRAD_MAX_BYTES)}",
        )
    return _Verdict(
        True,
        f"phases of {sorted(set(taps))} taps and {per_group} >= WINOGRAD_MIN_CHANNELS="
        f"{WINOGRAD_MIN_CHANNELS} input channels; temporaries {_mib(size)} per example",
    )


def _gemm_fits(config: Any, length: Size, dtype: Any) -> _Verdict:
    if is_symbolic(length):
        return _Verdict(False, "the length is symbolic, so the tap products cannot be bounded")
    size = _tap_products_bytes(config, config.filters, length, dtype)
    if size > GEMM_MAX_BYTES:
        return _Verdict(
            False, f"the tap products, {_mib(size)} per example, exceed GEMM_MAX_BYTES={_mib(GEMM_MAX_BYTES)}"
        )
    return _Verdict(True, f"the tap products, {_mib(size)} per example, fit GEMM_MAX_BYTES")


def _at_least(per_group: int, name: str, value: int, purpose: str = "") -> _Verdict:
    """Whether ``per_group`` input channels reach the channel threshold ``name`` (of ``value``)."""
    holds = per_group >= value
    return _Verdict(holds, f"{per_group} {'>=' if holds else '<'} {name}={value} input channels{purpose}")


def _because(*verdicts: _Verdict) -> str:
    return "; ".join(verdict.why for verdict in verdicts)


def _decide(config: Any, in_channels: int, length: Size, dtype: Any, platform: str) -> tuple[Plan, dict[str, str]]:
    """The plan and one reason per field. ``config`` is a Conv1DTransposeConfig."""
    fields = ("forward", "input_gradient", "kernel_gradient", "correlation")
    if platform != "cpu":
        why = (
            f"{platform}: the plain polyphase convolution, the platform's own convolutions; the "
            "other forms were measured on XLA:CPU only"
        )
        return Plan(), dict.fromkeys(fields, why)
    dtype = jnp.dtype(dtype)
    per_group = in_channels // config.groups
    winograd = _winograd_fits(config, in_channels, length, dtype)
    fits = _gemm_fits(config, length, dtype)
    wide = _at_least(per_group, "GEMM_MIN_CHANNELS", GEMM_MIN_CHANNELS)
    grouped = _Verdict(
        config.groups > 1,
        f"groups={config.groups}: a grouped convolution's weight gradient is an "
        "input-dilated convolution on XLA:CPU, the slow path",
    )
    full_precision = _Verdict(
        accumulation_dtype(dtype) == dtype,
        f"{dtype} inputs: Winograd would multiply in float32, slower than the forward's 16-bit products",
    )

    # The gradients: Winograd's, else the GEMM form's for wide or grouped layers whose tap
    # products fit, else the convolutions'.
    if winograd.holds:
        gradients, gradients_why = "winograd", winograd.why
    elif fits.holds and (wide.holds or grouped.holds):
        gradients, gradients_why = "gemm", (wide if wide.holds else grouped).why
    else:
        gradients = "convolution"
        gradients_why = _because(winograd, fits if wide.holds or grouped.holds else wide)
    reasons = {"input_gradient": gradients_why, "kernel_gradient": gradients_why}
    input_gradient = kernel_gradient = gradients
    if gradients == "convolution":
        input_gradient = kernel_gradient = "polyphase"
        if config.strides > 1:
            input_gradient = "lhs_dilation"
            reasons["input_gradient"] += (
                "; strides > 1: the reference's input tangent, which reverse mode turns into ONE "
                "strided convolution over the cotangent where it lies"
            )
            if (
                config.dilation_rate == 1
                and config.kernel_size % config.strides != 0
                and phases_share_taps(config)
                and per_group <= ZERO_PADDED_MAX_CHANNELS
            ):
                kernel_gradient = "zero_padded"
                reasons["kernel_gradient"] += (
                    f"; several phase groups and {per_group} <= ZERO_PADDED_MAX_CHANNELS="
                    f"{ZERO_PADDED_MAX_CHANNELS} input channels: one weight-gradient convolution"
                )

    # The forward pass: the GEMM form for wide layers whose tap products fit, even where Winograd
    # applies (Winograd's kernel transform is a pass over a kernel that, this wide, outweighs the
    # products it saves); else Winograd's for full-precision inputs; else the polyphase convolution.
    winograd_forward = _at_least(
        per_group, "WINOGRAD_FORWARD_MIN_CHANNELS", WINOGRAD_FORWARD_MIN_CHANNELS, " for its forward"
    )
    if fits.holds and wide.holds:
        forward, reasons["forward"] = "gemm", _because(wide, fits)
    elif winograd.holds and full_precision.holds and winograd_forward.holds:
        forward, reasons["forward"] = "winograd", _because(winograd, winograd_forward, fits if wide.holds else wide)
    else:
        forward = "polyphase"
        winograd_why = next(v for v in (winograd, full_precision, winograd_forward) if not v.holds)
        reasons["forward"] = _because(winograd_why, fits if wide.holds else wide)

    stacked = _at_least(per_group, "STACKED_PRODUCT_MIN_CHANNELS", STACKED_PRODUCT_MIN_CHANNELS)
    if forward not in ("polyphase", "winograd"):
        correlation, reasons["correlation"] = "convolution", "the forward has no stride-1 correlations"
    elif dtype != jnp.bfloat16:
        correlation, reasons["correlation"] = "convolution", f"{dtype} inputs"
    elif stacked.holds:
        correlation = "stacked_product"
        reasons["correlation"] = f"bfloat16 with {stacked.why}: bfloat16 matrix products accumulated in float32"
    else:
        correlation, reasons["correlation"] = "convolution", stacked.why
    plan = Plan(forward, input_gradient, kernel_gradient, correlation)
    return plan, {field: f"cpu: {reasons[field]}" for field in fields}


def select_plan(config: Any, in_channels: int, length: Size, dtype: Any, platform: str) -> Plan:
    """The plan for ``config`` on ``platform`` for inputs of ``in_channels`` x ``length`` steps.

    Args:
      config: a :class:`convtrans.Conv1DTransposeConfig`.
      in_channels: the input's channels (static).
      length: input steps per example; an int or a symbolic dimension.
      dtype: the computation's dtype (the input's).
      platform: ``"cpu"``, ``"cuda"``, ``"rocm"``, ``"tpu"``, ...
    """
    return _decide(config, in_channels, length, dtype, platform)[0]


def computable_forms(config: Any, in_channels: int, length: int, dtype: Any) -> tuple[str, ...]:
    """The forms that can compute ``config``'s layer for inputs of ``in_channels`` x ``length``
    steps within the memory budgets, whatever their speed: the candidates an autotuner times.

    ``lhs_dilation`` and ``polyphase`` always; ``winograd`` for groups = 1 layers with a phase of
    2 or 3 taps whose temporaries fit :data:`WINOGRAD_MAX_BYTES`; ``gemm`` when the tap products
    fit :data:`GEMM_MAX_BYTES`; ``zero_padded`` (a kernel tangent only) for strided, undilated
    layers.
    """
    forms = ["lhs_dilation", "polyphase"]
    taps = _winograd_taps(config, config.groups)
    if taps and _winograd_bytes(config, config.filters, in_channels, length, max(taps), dtype) <= WINOGRAD_MAX_BYTES:
        forms.append("winograd")
    if _tap_products_bytes(config, config.filters, length, dtype) <= GEMM_MAX_BYTES:
        forms.append("gemm")
    if config.dilation_rate == 1 and 1 < config.strides <= PHASE_LOOP_MAX_STRIDES:
        forms.append("zero_padded")
    return tuple(forms)


def check_plan(plan: Plan, config: Any) -> None:
    """ValueError when a forced ``plan`` names a form that cannot compute ``config``'s layer."""
    forms = {plan.forward, plan.input_gradient, plan.kernel_gradient}
    if "winograd" in forms:
        taps = _phase_taps(config)
        if config.groups != 1:
            raise ValueError(
                f"{plan} uses the winograd form, which computes groups=1 layers only; this layer "
                f"has groups={config.groups}."
            )
        if config.strides > PHASE_LOOP_MAX_STRIDES:
            raise ValueError(
                f"{plan} uses the winograd form, which computes phases; strides={config.strides} > "
                f"PHASE_LOOP_MAX_STRIDES={PHASE_LOOP_MAX_STRIDES} goes to the reference instead."
            )
        if not set(taps) & set(WINOGRAD_TAPS):
            raise ValueError(
                f"{plan} uses the winograd form, which needs a phase of 2 or 3 taps; this layer's "
                f"phases have {sorted(set(taps))} taps (kernel_size={config.kernel_size}, "
                f"strides={config.strides}, dilation_rate={config.dilation_rate})."
            )
    if plan.kernel_gradient == "zero_padded" and config.dilation_rate != 1:
        raise ValueError(
            f"{plan}: kernel_gradient='zero_padded' needs dilation_rate=1 (the phase groups of a "
            f"dilated kernel are spaced differently); this layer has dilation_rate="
            f"{config.dilation_rate}."
        )
    if plan.correlation == "stacked_product" and plan.forward not in ("polyphase", "winograd"):
        raise ValueError(
            f"{plan}: correlation='stacked_product' applies to the polyphase and winograd forward "
            f"forms, not forward={plan.forward!r}."
        )


def resolve(implementation: Any, config: Any, in_channels: int, length: Size, dtype: Any, platform: str) -> Plan:
    """The plan that ``implementation`` (None, a name of :data:`IMPLEMENTATION_NAMES` or a
    :class:`Plan`) means for this layer and platform; ValueError if it cannot apply."""
    if implementation is None or implementation == "polyphase":
        return select_plan(config, in_channels, length, dtype, platform)
    if isinstance(implementation, Plan):
        check_plan(implementation, config)
        return implementation
    if implementation in ("lhs_dilation", "gemm"):
        return Plan.uniform(implementation)
    raise ValueError(
        f"implementation={implementation!r} is unknown; expected one of "
        f"{sorted(IMPLEMENTATION_NAMES)}, a convtrans.Plan, or None."
    )


def explain_plan(config: Any, in_channels: int, length: Size, dtype: Any, platform: str) -> str:
    """:func:`select_plan`'s choice with one line per field saying why."""
    plan, reasons = _decide(config, in_channels, length, dtype, platform)
    lines = [f"{plan} for {in_channels} input channels x {length} steps, {jnp.dtype(dtype)}, on {platform}:"]
    lines += [f"  {field}={getattr(plan, field)!r}: {reasons[field]}" for field in reasons]
    return "\n".join(lines)

"""The polyphase path equals the lhs_dilation reference (forward and every gradient) under every
plan that applies, compiles to ordinary convolutions, and stays within a small memory budget on
long inputs."""

from __future__ import annotations

import functools
import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convtrans as ct
from convtrans import Plan
from convtrans._src import plan as plan_forms
from convtrans._src.api import transposed_convolution
from convtrans._src.dispatch import GEMM_MAX_BYTES, ZERO_PADDED_MAX_CHANNELS, check_plan
from convtrans._src.geometry import (
    PhaseGroup,
    full_result_offset,
    output_blocks,
    output_length,
    phase_column,
    phase_groups,
)
from convtrans._src.kernels.polyphase import convolve, phase_kernels
from convtrans._src.kernels.reference import lhs_dilation_conv
from tests.numpy_reference import conv1d_transpose as numpy_reference

TOLERANCE = dict(rtol=2e-5, atol=2e-5)
# Every form of every field of a Plan, and every plan select_plan picks on CPU, each run on the
# layers check_plan accepts it for. ("winograd" computes the two- and three-tap phases by
# Winograd's F(2, r) and the others as "polyphase" does.)
PLANS = [
    Plan(),  # the plain polyphase convolution throughout (and every plan off CPU)
    Plan("polyphase", "lhs_dilation", "zero_padded"),  # CPU: narrow strided layers, d = 1
    Plan("polyphase", "lhs_dilation", "polyphase"),  # CPU: strided layers otherwise
    Plan("polyphase", "gemm", "gemm"),  # CPU: grouped layers
    Plan.uniform("gemm"),  # CPU: wide layers (gemm_conv and its own derivatives)
    Plan.uniform("winograd"),  # CPU: 64+ channels, phases of 2 or 3 taps
    Plan("polyphase", "winograd", "winograd", "stacked_product"),  # CPU: the same, bfloat16
    Plan("polyphase", correlation="stacked_product"),  # CPU: bfloat16, 64+ channels
    Plan.uniform("lhs_dilation"),  # the reference, forced
    # Mixed forms: a GEMM or reference forward with other forms' derivatives, and Winograd's
    # forward with stacked products for its other phases.
    Plan("gemm", "lhs_dilation", "zero_padded"),
    Plan("lhs_dilation", "gemm", "polyphase"),
    Plan("winograd", "polyphase", "zero_padded", "stacked_product"),
]
assert {plan.forward for plan in PLANS} == set(plan_forms.FORWARD_FORMS)
assert {plan.input_gradient for plan in PLANS} == set(plan_forms.INPUT_GRADIENT_FORMS)
assert {plan.kernel_gradient for plan in PLANS} == set(plan_forms.KERNEL_GRADIENT_FORMS)
assert {plan.correlation for plan in PLANS} == set(plan_forms.CORRELATIONS)


def _applies(plan, config):
    try:
        check_plan(plan, config)
    except ValueError:
        return False
    return True


def _plans_for(config):
    """The plans of :data:`PLANS` that check_plan accepts for ``config``."""
    return tuple(plan for plan in PLANS if _applies(plan, config))


def _plan_id(plan):
    return "-".join((plan.forward, plan.input_gradient, plan.kernel_gradient, plan.correlation))


def _legal_output_paddings(padding, strides, dilation):
    limit = strides if isinstance(padding, str) else max(strides, dilation)
    return [None, *range(limit)]


def _grid():
    """Every kernel size 1-9 and stride 1-5 under each padding kind; the other settings rotate
    deterministically so each value of each of them appears many times."""
    cases = []
    paddings = ["valid", "same", 2, (1, 3), 0]
    rotation = itertools.count()
    for k, s, padding in itertools.product(range(1, 10), range(1, 6), paddings):
        i = next(rotation)
        d = 1 if isinstance(padding, str) and s > 1 else (1, 2, 3)[i % 3]
        ops = _legal_output_paddings(padding, s, d)
        op = ops[i % len(ops)]
        groups = (1, 2)[(i // 2) % 2]
        data_format = ("channels_last", "channels_first")[i % 2]
        steps = (1, 2, 3, 7)[(i // 3) % 4]
        config = ct.Conv1DTransposeConfig(
            filters=2 * groups,
            kernel_size=k,
            strides=s,
            padding=padding,
            output_padding=op,
            dilation_rate=d,
            groups=groups,
            data_format=data_format,
        )
        try:
            output_length(config, steps)
        except ValueError:  # padding crops more than the result holds: a different test's concern
            steps = 7
        cases.append((config, steps))
    return cases


# (kernel_size, strides, dilation_rate, padding)
OUTPUT_PADDING_GEOMETRIES = [(4, 3, 1, "valid"), (5, 4, 1, "same"), (3, 2, 3, (1, 2)), (2, 5, 1, 1)]


def _every_output_padding(geometries=OUTPUT_PADDING_GEOMETRIES):
    cases = []
    for k, s, d, padding in geometries:
        for op in _legal_output_paddings(padding, s, d):
            for data_format in ("channels_last", "channels_first"):
                cases.append(
                    (
                        ct.Conv1DTransposeConfig(
                            filters=3,
                            kernel_size=k,
                            strides=s,
                            padding=padding,
                            output_padding=op,
                            dilation_rate=d,
                            data_format=data_format,
                        ),
                        3,
                    )
                )
    return cases


def _case_id(case):
    config, steps = case
    return (
        f"k{config.kernel_size}-s{config.strides}-d{config.dilation_rate}-p{config.padding}-"
        f"op{config.output_padding}-g{config.groups}-{config.data_format[9:]}-n{steps}"
    )


@functools.partial(jax.jit, static_argnums=(3, 4))
def _outputs_and_gradients(x, kernel, cotangent_seed, config, plans):
    """``(y, dL/dx, dL/dkernel)`` of the reference, then of the polyphase path under each of
    ``plans``, with a fixed cotangent."""

    def run(fn):
        y, vjp = jax.vjp(fn, x, kernel)
        cotangent = jnp.cos(cotangent_seed + jnp.arange(y.size, dtype=y.dtype)).reshape(y.shape)
        return (y, *vjp(cotangent))

    return (
        run(lambda x, k: lhs_dilation_conv(x, k, config)),
        *[run(lambda x, k, plan=plan: convolve(x, k, config, None, plan)) for plan in plans],
    )


def _random_inputs(config, steps, seed=0):
    rng = np.random.default_rng(seed)
    in_channels = 3 * config.groups
    shape = (2, steps, in_channels) if config.data_format == "channels_last" else (2, in_channels, steps)
    x = rng.standard_normal(shape).astype(np.float32)
    kernel = rng.standard_normal(config.kernel_shape(in_channels)).astype(np.float32)
    return x, kernel


def _settings(config):
    """The value of each setting of ``config`` that the grid varies (padding by its kind)."""
    padding = config.padding if isinstance(config.padding, str) else type(config.padding).__name__
    return {
        ("kernel_size", config.kernel_size),
        ("strides", config.strides),
        ("dilation_rate", config.dilation_rate),
        ("padding", padding),
        ("output_padding", "None" if config.output_padding is None else "int"),
        ("groups", config.groups),
        ("data_format", config.data_format),
    }


@functools.cache
def _grid_plans():
    """The plans the grid compares with the reference, per layer: the one of the plans that apply
    that meets the most settings it has not met yet, then the one that has met the fewest layers
    (then the first in PLANS). So every plan meets every value of every setting it applies to, and
    many layers, the few Winograd applies to most of theirs (test_the_grid_runs_every_plan_on_many_layers
    keeps that true), at one compiled plan per layer."""
    met, seen, chosen = dict.fromkeys(PLANS, 0), {plan: set() for plan in PLANS}, []
    for config, _ in _grid():
        settings = _settings(config)
        plan = min(_plans_for(config), key=lambda plan: (-len(settings - seen[plan]), met[plan], PLANS.index(plan)))
        met[plan] += 1
        seen[plan] |= settings
        chosen.append((plan,))
    return chosen


@functools.partial(jax.jit, static_argnums=(3,))
def _many_outputs_and_gradients(xs, kernels, cotangent_seed, layers):
    """:func:`_outputs_and_gradients` of several layers (``(config, plans)`` each) in one program:
    one compile instead of one per layer."""
    return [_outputs_and_gradients(x, k, cotangent_seed, *layer) for x, k, layer in zip(xs, kernels, layers)]


def _assert_match_reference(cases):
    """Each ``(config, steps, plans)`` of ``cases`` (plans None: every plan that applies) equals
    the reference, output and both gradients, under each of its plans."""
    xs, kernels, layers = [], [], []
    for config, steps, plans in cases:
        x, kernel = _random_inputs(config, steps)
        # Every layer takes the polyphase, GEMM and reference plans at least.
        assert {Plan(), Plan.uniform("gemm"), Plan.uniform("lhs_dilation"), Plan("polyphase", "gemm", "gemm")} <= set(
            _plans_for(config)
        )
        assert plans is None or set(plans) <= set(_plans_for(config))
        xs.append(x)
        kernels.append(kernel)
        layers.append((config, _plans_for(config) if plans is None else tuple(plans)))
    for (config, steps, _), (_, plans), (reference, *polyphase) in zip(
        cases, layers, _many_outputs_and_gradients(xs, kernels, 0.5, tuple(layers))
    ):
        assert len(polyphase) == len(plans)
        for plan, results in zip(plans, polyphase):
            for name, want, got in zip(("output", "grad x", "grad kernel"), reference, results):
                label = f"{name} ({plan}) of {_case_id((config, steps))}"
                assert got.shape == want.shape, label
                np.testing.assert_allclose(got, want, err_msg=label, **TOLERANCE)


def test_the_grid_runs_every_plan_on_many_layers():
    # Each plan applies to (and so is compared with the reference on) many layers of the grid,
    # with every value of every setting among them that it applies to.
    grid = _grid()
    for plan in PLANS:
        layers = [config for (config, _), plans in zip(grid, _grid_plans()) if plan in plans]
        assert len(layers) >= 8, (plan, len(layers))
        applies = set().union(*(_settings(config) for config, _ in grid if _applies(plan, config)))
        assert set().union(*map(_settings, layers)) == applies, plan
    # Every layer with a plan that applies.
    assert all(len(plans) == 1 and _applies(plans[0], config) for (config, _), plans in zip(grid, _grid_plans()))


# One test per kernel size (its 25 layers compile as one program), the layers in _grid()'s order.
@pytest.mark.parametrize("kernel_size", range(1, 10))
def test_output_and_gradients_equal_the_reference_over_the_grid(kernel_size):
    cases = [
        (config, steps, plans)
        for (config, steps), plans in zip(_grid(), _grid_plans())
        if config.kernel_size == kernel_size
    ]
    assert len(cases) == 25
    _assert_match_reference(cases)


# The layers of the grid whose crop leaves whole taps of the dilated kernel outside the output (one
# input step, dilation 3 > stride 2, padding past the first taps), where the GEMM forms skip them.
TAPS_OUTSIDE_THE_OUTPUT = ["k7-s2-d3-p(1, 3)-op1-g2-last-n1", "k8-s2-d3-p(2, 2)-op1-g2-last-n1"]


def test_the_gemm_forms_skip_the_taps_outside_the_output_and_equal_the_reference():
    cases = [case for case in _grid() if _case_id(case) in TAPS_OUTSIDE_THE_OUTPUT]
    assert len(cases) == len(TAPS_OUTSIDE_THE_OUTPUT)
    gemm = [plan for plan in PLANS if "gemm" in (plan.forward, plan.input_gradient, plan.kernel_gradient)]
    _assert_match_reference(
        [(config, steps, [plan for plan in gemm if _applies(plan, config)]) for config, steps in cases]
    )


# One test per geometry (its layers compile as one program): every output padding and both data
# formats, under every plan.
@pytest.mark.parametrize("geometry", OUTPUT_PADDING_GEOMETRIES, ids=lambda g: "k{}-s{}-d{}-p{}".format(*g))
def test_output_and_gradients_equal_the_reference_for_every_output_padding(geometry):
    cases = _every_output_padding([geometry])
    assert len(cases) >= 6
    _assert_match_reference([(config, steps, None) for config, steps in cases])


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_stride_and_dilation_together_match_the_numpy_oracle(data_format):
    config = ct.Conv1DTransposeConfig(
        filters=4,
        kernel_size=3,
        strides=2,
        padding=(2, 1),
        output_padding=1,
        dilation_rate=3,
        groups=2,
        data_format=data_format,
    )
    x, kernel = _random_inputs(config, 5, seed=3)
    want = numpy_reference(
        x, kernel, strides=2, padding=(2, 1), output_padding=1, dilation_rate=3, groups=2, data_format=data_format
    )
    got = transposed_convolution(jnp.asarray(x), jnp.asarray(kernel), config)
    np.testing.assert_allclose(got, want, **TOLERANCE)
    for plan in _plans_for(config):
        got = transposed_convolution(jnp.asarray(x), jnp.asarray(kernel), config, implementation=plan)
        np.testing.assert_allclose(got, want, err_msg=str(plan), **TOLERANCE)


@pytest.mark.parametrize("plan", [None, *PLANS], ids=lambda plan: "default" if plan is None else _plan_id(plan))
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_an_empty_output_has_the_right_shape_and_zero_gradients(data_format, plan):
    config = ct.Conv1DTransposeConfig(filters=2, kernel_size=2, strides=1, padding=(1, 1), data_format=data_format)
    x, kernel = _random_inputs(config, 1)
    assert plan is None or _applies(plan, config)
    y = transposed_convolution(jnp.asarray(x), jnp.asarray(kernel), config, implementation=plan)
    assert y.shape == ((2, 0, 2) if data_format == "channels_last" else (2, 2, 0))
    grad_x, grad_kernel = jax.grad(
        lambda x, k: jnp.sum(transposed_convolution(x, k, config, implementation=plan)), argnums=(0, 1)
    )(x, kernel)
    assert not np.any(grad_x) and not np.any(grad_kernel)


@pytest.mark.parametrize("plan", [None, *PLANS], ids=lambda plan: "default" if plan is None else _plan_id(plan))
def test_a_batch_of_zero_gives_an_empty_batch(plan):
    config = ct.Conv1DTransposeConfig(filters=2, kernel_size=4, strides=2, padding="same")
    assert plan is None or _applies(plan, config)
    y = transposed_convolution(jnp.zeros((0, 5, 3)), jnp.ones((4, 2, 3)), config, implementation=plan)
    assert y.shape == (0, 10, 2)


@pytest.mark.parametrize("case", _grid()[::7], ids=_case_id)
def test_the_output_blocks_are_the_fewest_whole_blocks_covering_the_output(case):
    config, steps = case
    out = output_length(config, steps)
    s, c = config.strides, full_result_offset(config)
    first, stop, start = output_blocks(config, out)
    positions = range(c, c + out)  # full-result positions of the output steps
    if out:
        assert first == min(positions) // s and stop == max(positions) // s + 1
    assert first * s + start == c


@pytest.mark.parametrize("case", _grid()[::7], ids=_case_id)
def test_every_output_column_holds_one_phase_from_its_first_block_on(case):
    config, steps = case
    out = output_length(config, steps)
    s, c = config.strides, full_result_offset(config)
    for t in range(out):
        column, first = phase_column(config, (t + c) % s)
        assert (column, first + t // s) == (t % s, (t + c) // s)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_the_gradient_slices_each_phase_cotangent_out_of_the_outputs_without_a_padded_copy(data_format):
    # Phases 0 (five taps) and 1 (four) are separate convolutions, and output step 0 is phase 1:
    # the full blocks would hold 2 * 38 = 76 steps, of which the output is 74.
    config = ct.Conv1DTransposeConfig(filters=7, kernel_size=9, strides=2, padding="same", data_format=data_format)
    first, stop, _ = output_blocks(config, 74)
    assert (stop - first) * config.strides == 76
    # Wider than ZERO_PADDED_MAX_CHANNELS: each phase group has its own kernel gradient.
    kernel, x = _abstract_inputs(config, ZERO_PADDED_MAX_CHANNELS + 1, steps=37, batch=3)
    assert ct.plan(config, x.shape, platform="cpu") == Plan("polyphase", "lhs_dilation", "polyphase")
    cotangent = jax.ShapeDtypeStruct((3, 74, 7) if data_format == "channels_last" else (3, 7, 74), jnp.float32)
    vjp = lambda k, x, dy: jax.vjp(lambda k, x: transposed_convolution(x, k, config), k, x)[1](dy)
    text = jax.jit(vjp).lower(kernel, x, cotangent).compile().as_text()
    full = "[3,76,7]" if data_format == "channels_last" else "[3,7,76]"
    # Per phase group a kernel gradient; one strided convolution of the cotangent for the input.
    assert len(_convolutions(text)) == 3 and full not in text


@pytest.mark.parametrize(
    "k, s, d, want",
    [
        (16, 8, 1, [PhaseGroup(tuple(range(8)), 0, 2, 1)]),
        # 9 = 4 * 2 + 1: phase 0 has taps 0, 2, ..., 8 (m = 0..4), phase 1 taps 1, ..., 7 (m = 0..3).
        (9, 2, 1, [PhaseGroup((0,), 0, 5, 1), PhaseGroup((1,), 0, 4, 1)]),
        # taps at 0, 3, 6 -> (m, r) = (0, 0), (1, 1), (3, 0): phase 0 at m = 0, 3; phase 1 at m = 1.
        (3, 2, 3, [PhaseGroup((0,), 0, 2, 3), PhaseGroup((1,), 1, 1, 3)]),
        # s > ke: phases 2, 3, 4 are reached by no tap.
        (2, 5, 1, [PhaseGroup((0, 1), 0, 1, 1), PhaseGroup((2, 3, 4), 0, 0, 1)]),
    ],
)
def test_phases_are_grouped_by_the_pattern_of_their_taps(k, s, d, want):
    assert list(phase_groups(k, s, d)) == want


def test_each_phase_kernel_holds_exactly_the_taps_of_its_phases():
    config = ct.Conv1DTransposeConfig(filters=1, kernel_size=5, strides=3, padding=0, dilation_rate=2)
    # taps at 0, 2, 4, 6, 8 -> (m, r) = (0, 0), (0, 2), (1, 1), (2, 0), (2, 2)
    kernel = jnp.arange(1.0, 6.0).reshape(5, 1, 1)
    groups = phase_groups(5, 3, 2)
    kernels = phase_kernels(kernel, config)
    taps = {
        r: np.asarray(rhs[::-1, 0, i]).tolist()  # unflipped, one filter: phase r's taps
        for group, rhs in zip(groups, kernels)
        for i, r in enumerate(group.phases)
    }
    assert taps == {0: [1.0, 4.0], 1: [3.0], 2: [2.0, 5.0]}
    assert all(group.step == 2 for group in groups)


BFLOAT16_CONFIGS = [
    ct.Conv1DTransposeConfig(filters=6, kernel_size=8, strides=4, padding="same"),
    ct.Conv1DTransposeConfig(
        filters=4, kernel_size=7, strides=3, padding=(2, 1), output_padding=1, groups=2, data_format="channels_first"
    ),
    ct.Conv1DTransposeConfig(filters=4, kernel_size=3, dilation_rate=2, padding="same", groups=2),
    ct.Conv1DTransposeConfig(
        filters=4, kernel_size=5, strides=2, dilation_rate=3, padding=1, data_format="channels_first"
    ),
]
BFLOAT16_IDS = ["s4", "s3-groups2-first", "s1-d2-groups2", "s2-d3-first"]
# Every forward form, the correlating ones with either correlation (None: the CPU default).
BFLOAT16_FORWARDS = [
    None,
    *[Plan(forward) for forward in plan_forms.FORWARD_FORMS],
    *[Plan(forward, correlation="stacked_product") for forward in ("polyphase", "winograd")],
]
# Every form of both gradients (kernel_gradient="zero_padded" with either input gradient form
# select_plan pairs it with), each computed in float32 and rounded once.
BFLOAT16_GRADIENTS = [
    *[Plan("polyphase", form, form) for form in plan_forms.INPUT_GRADIENT_FORMS],
    Plan("polyphase", "lhs_dilation", "zero_padded"),
    Plan("polyphase", "polyphase", "zero_padded"),
    Plan("polyphase", "lhs_dilation", "polyphase"),
]


def _bfloat16_cases(plans):
    """``(config, plan)`` for every config of BFLOAT16_CONFIGS and every plan that applies to it,
    each config's in one xdist group: its tests share the one program that computes all its plans."""
    return [
        pytest.param(
            config,
            plan,
            id=f"{name}-{'default' if plan is None else _plan_id(plan)}",
            marks=pytest.mark.xdist_group(f"bfloat16-{name}"),
        )
        for config, name in zip(BFLOAT16_CONFIGS, BFLOAT16_IDS)
        for plan in plans
        if plan is None or _applies(plan, config)
    ]


def _plans_of(config, plans):
    return tuple(plan for plan in plans if plan is None or _applies(plan, config))


# One program per config computes every plan's results (about ten small op-by-op compiles per
# plan otherwise). Inside one program XLA may keep intermediates wider than bfloat16 ("excess
# precision"), which op by op it cannot; that is turned off, so a plan that rounded its partial
# sums to bfloat16 still fails these tests.
_exact_jit = functools.partial(jax.jit, compiler_options={"xla_allow_excess_precision": False})


def _bfloat16_inputs(config, in_channels, rng):
    """``(x, kernel)`` in bfloat16: a batch of 2 and 9 steps in ``config``'s layout."""
    shape = (2, 9, in_channels) if config.data_format == "channels_last" else (2, in_channels, 9)
    x = jnp.asarray(rng.standard_normal(shape), jnp.bfloat16)
    return x, jnp.asarray(rng.standard_normal(config.kernel_shape(in_channels)), jnp.bfloat16)


@functools.cache
def _bfloat16_outputs(config, in_per_group):
    """``({plan: bfloat16 output}, float32 reference output)`` for every forward plan that applies
    to ``config``."""
    rng = np.random.default_rng(7)
    x, kernel = _bfloat16_inputs(config, in_per_group * config.groups, rng)
    plans = _plans_of(config, BFLOAT16_FORWARDS)

    @_exact_jit
    def run(x, kernel):
        want = lhs_dilation_conv(
            x.astype(jnp.float32), kernel.astype(jnp.float32), config, precision=jax.lax.Precision.HIGHEST
        )
        return [transposed_convolution(x, kernel, config, implementation=plan) for plan in plans], want

    outputs, want = run(x, kernel)
    return dict(zip(plans, outputs)), np.asarray(want)


@functools.cache
def _bfloat16_gradients(config):
    """``({plan: bfloat16 (dL/dx, dL/dkernel)}, float32 reference gradients)`` for every gradient
    plan that applies to ``config``, with one bfloat16 cotangent."""
    rng = np.random.default_rng(8)
    x, kernel = _bfloat16_inputs(config, 64 * config.groups, rng)
    out_shape = jax.eval_shape(lambda x, k: lhs_dilation_conv(x, k, config), x, kernel).shape
    cotangent = jnp.asarray(rng.standard_normal(out_shape), jnp.bfloat16)
    plans = _plans_of(config, BFLOAT16_GRADIENTS)
    reference = lambda x, k: lhs_dilation_conv(x, k, config, precision=jax.lax.Precision.HIGHEST)

    @_exact_jit
    def run(x, kernel, cotangent):
        got = []
        for plan in plans:
            y, vjp = jax.vjp(
                lambda x, k, plan=plan: transposed_convolution(x, k, config, implementation=plan), x, kernel
            )
            assert y.shape == cotangent.shape
            got.append(vjp(cotangent))
        _, vjp32 = jax.vjp(reference, x.astype(jnp.float32), kernel.astype(jnp.float32))
        return got, vjp32(cotangent.astype(jnp.float32))

    got, want = run(x, kernel, cotangent)
    return dict(zip(plans, got)), [np.asarray(w) for w in want]


def test_every_bfloat16_plan_runs_on_some_config():
    for plans in (BFLOAT16_FORWARDS, BFLOAT16_GRADIENTS):
        covered = {case.values[1] for case in _bfloat16_cases(plans)}
        assert covered == set(plans)


@pytest.mark.parametrize("in_per_group", [8, 64], ids=["8-channels", "64-channels"])
@pytest.mark.parametrize("config, plan", _bfloat16_cases(BFLOAT16_FORWARDS))
def test_bfloat16_outputs_are_the_float32_sums_rounded_once(config, plan, in_per_group):
    # Products accumulate in float32 and only the output is rounded: within one bfloat16 unit in
    # the last place of the float32 result (a sum of rounded partial products is not).
    outputs, want = _bfloat16_outputs(config, in_per_group)
    y16 = outputs[plan]
    assert y16.dtype == jnp.bfloat16
    assert y16.shape == want.shape
    np.testing.assert_array_less(np.abs(np.asarray(y16, np.float32) - want), 2.0**-7 * np.abs(want) + 1e-5)


@pytest.mark.parametrize("config, plan", _bfloat16_cases(BFLOAT16_GRADIENTS))
def test_bfloat16_gradients_are_the_float32_sums_rounded_once(config, plan):
    gradients, wants = _bfloat16_gradients(config)
    for name, got, want in zip(("grad x", "grad kernel"), gradients[plan], wants):
        assert got.dtype == jnp.bfloat16
        np.testing.assert_array_less(
            np.abs(np.asarray(got, np.float32) - want), 2.0**-7 * np.abs(want) + 1e-5, err_msg=name
        )


# --- what the default path compiles to ------------------------------------------------------

# What XLA prints for the two slow forms (seen in the reference's compiled gradient): a
# window-reversed convolution (the weight gradient of a base-dilated one) and a base-dilated one.
SLOW_CONVOLUTION_MARKERS = ("rhs_reversal", "lhs_dilate")

HLO_CONFIGS = [
    ct.Conv1DTransposeConfig(filters=8, kernel_size=16, strides=8, padding="same"),
    ct.Conv1DTransposeConfig(
        filters=8, kernel_size=9, strides=2, padding=(3, 4), output_padding=1, data_format="channels_first"
    ),
    ct.Conv1DTransposeConfig(filters=8, kernel_size=3, dilation_rate=2, padding="same"),
    ct.Conv1DTransposeConfig(filters=8, kernel_size=4, strides=2, padding="same", groups=2),
]
HLO_IDS = ["s8", "s2-channels_first", "s1-d2", "s2-groups2"]
IN_CHANNELS = 4


def _inputs(config, steps=32):
    params = {"kernel": jnp.ones(config.kernel_shape(IN_CHANNELS)), "bias": jnp.zeros(config.filters)}
    shape = (2, steps, IN_CHANNELS) if config.data_format == "channels_last" else (2, IN_CHANNELS, steps)
    return params, jnp.ones(shape)


def _compiled_gradient_hlo(config, implementation=None):
    def loss(params, x):
        y, _ = ct.conv1d_transpose(params, x, config, implementation=implementation)
        return jnp.sum(y * y)

    return jax.jit(jax.grad(loss, argnums=(0, 1))).lower(*_inputs(config)).compile().as_text()


def _convolutions(hlo_text):
    return [line for line in hlo_text.splitlines() if "convolution(" in line]


def test_the_default_on_cpu_is_polyphase():
    assert ct.default_implementation("cpu") == "polyphase"


def test_the_slow_markers_do_appear_in_the_reference_gradient():
    # Guards the next tests: the strings they look for are what XLA prints for the slow path.
    text = _compiled_gradient_hlo(HLO_CONFIGS[0], implementation="lhs_dilation")
    for marker in SLOW_CONVOLUTION_MARKERS:
        assert marker in text


@pytest.mark.parametrize("config", HLO_CONFIGS, ids=HLO_IDS)
def test_the_default_gradient_compiles_without_reversed_or_dilated_input_convolutions(config):
    text = _compiled_gradient_hlo(config)
    assert "convolution(" in text
    for marker in SLOW_CONVOLUTION_MARKERS:
        assert marker not in text, f"{marker} in the compiled gradient of {config}"


# The gradients of the convolutions (no GEMM, no Winograd): every pairing of the input-gradient
# forms select_plan takes with the kernel-gradient forms it takes.
CONVOLUTION_GRADIENTS = [
    Plan(),
    Plan("polyphase", "lhs_dilation", "polyphase"),
    Plan("polyphase", "lhs_dilation", "zero_padded"),
    Plan("polyphase", "polyphase", "zero_padded"),
]


def _convolution_gradient_cases():
    return [
        pytest.param(config, plan, id=f"{name}-{_plan_id(plan)}")
        for config, name in zip(HLO_CONFIGS[:3], HLO_IDS[:3])
        for plan in CONVOLUTION_GRADIENTS
        if _applies(plan, config)
    ]


@pytest.mark.parametrize("config, plan", _convolution_gradient_cases())
def test_the_convolution_gradients_compile_without_reversed_or_dilated_input_convolutions(config, plan):
    # What long inputs get. (With groups > 1, XLA lowers the grouped weight gradient of these
    # convolutions to an input-dilated one; inputs that small take the GEMM gradients.)
    params, x = _inputs(config)
    grad = jax.grad(lambda k, x: jnp.sum(convolve(x, k, config, None, plan) ** 2), argnums=(0, 1))
    text = jax.jit(grad).lower(params["kernel"], x).compile().as_text()
    for marker in SLOW_CONVOLUTION_MARKERS:
        assert marker not in text, f"{marker} in the compiled gradient of {config} by {plan}"


@pytest.mark.parametrize("config", HLO_CONFIGS[:3], ids=HLO_IDS[:3])
def test_narrow_ungrouped_layers_take_the_convolution_gradients_on_cpu(config):
    # Whatever the length: the strided layers' input gradient from the reference (one strided
    # convolution of the cotangent), the kernel gradient as one zero-padded convolution where
    # there are several phase groups (k9 s2) and d = 1.
    want = {
        "s8": Plan("polyphase", "lhs_dilation", "polyphase"),
        "s2-channels_first": Plan("polyphase", "lhs_dilation", "zero_padded"),
        "s1-d2": Plan(),
    }[HLO_IDS[HLO_CONFIGS.index(config)]]
    for steps in (32, 2**20):
        _, x = _abstract_inputs(config, IN_CHANNELS, steps=steps)
        assert ct.plan(config, x.shape, platform="cpu") == want
        assert want in CONVOLUTION_GRADIENTS


def _abstract_inputs(config, in_channels, steps=32, dtype=jnp.float32, batch=2):
    """``(kernel, x)`` as ShapeDtypeStructs in ``config``'s layout, to compile for."""
    shape = (batch, steps, in_channels) if config.data_format == "channels_last" else (batch, in_channels, steps)
    return (jax.ShapeDtypeStruct(config.kernel_shape(in_channels), dtype), jax.ShapeDtypeStruct(shape, dtype))


def _forward_hlo(config, kernel, x):
    return jax.jit(lambda k, x: transposed_convolution(x, k, config)).lower(kernel, x).compile().as_text()


def _gradient_hlo(config, kernel, x):
    """The compiled gradient (kernel and input) of ``sum(y ** 2)`` through the default path."""
    loss = lambda k, x: jnp.sum(transposed_convolution(x, k, config).astype(jnp.float32) ** 2)
    return jax.jit(jax.grad(loss, argnums=(0, 1))).lower(kernel, x).compile().as_text()


def _convolution_counts(config, in_channels):
    """Convolutions in the compiled forward and in the compiled gradient of the default path."""
    kernel, x = _abstract_inputs(config, in_channels)
    gradient = _gradient_hlo(config, kernel, x)
    for marker in SLOW_CONVOLUTION_MARKERS:
        assert marker not in gradient, f"{marker} in the compiled gradient of {config}"
    return len(_convolutions(_forward_hlo(config, kernel, x))), len(_convolutions(gradient))


@pytest.mark.parametrize("config", HLO_CONFIGS[:3], ids=HLO_IDS[:3])
def test_narrow_inputs_differentiate_through_the_convolutions_own_gradients(config):
    forward, gradient = _convolution_counts(config, IN_CHANNELS)
    assert forward >= 1
    # The forward convolutions again, then the gradients: for a strided layer one strided
    # convolution for the input and one weight gradient over every phase, for a stride-1 layer
    # each convolution's own two.
    assert gradient == forward + (2 if config.strides > 1 else 2 * forward)


def _vjp_convolutions(config, in_channels, wrt):
    """Convolutions in the compiled vjp of the default path for ``wrt`` ("kernel" or "input")."""
    kernel, x = _abstract_inputs(config, in_channels)
    cotangent = jax.eval_shape(lambda k, x: transposed_convolution(x, k, config), kernel, x)
    if wrt == "kernel":
        vjp = lambda k, x, dy: jax.vjp(lambda k: transposed_convolution(x, k, config), k)[1](dy)
    else:
        vjp = lambda k, x, dy: jax.vjp(lambda x: transposed_convolution(x, k, config), x)[1](dy)
    return _convolutions(jax.jit(vjp).lower(kernel, x, cotangent).compile().as_text())


def test_a_narrow_layer_with_several_phase_groups_has_one_weight_gradient_convolution():
    config = HLO_CONFIGS[1]  # k9 s2: 5- and 4-tap phases, two forward convolutions
    assert len(_convolutions(_forward_hlo(config, *_abstract_inputs(config, IN_CHANNELS)))) == 2
    convolutions = _vjp_convolutions(config, IN_CHANNELS, "kernel")
    assert len(convolutions) == 1
    for marker in SLOW_CONVOLUTION_MARKERS:
        assert marker not in convolutions[0]


def test_wider_layers_with_several_phase_groups_take_each_groups_weight_gradient():
    # Above ZERO_PADDED_MAX_CHANNELS the zero taps' multiply-adds cost more than the
    # second weight gradient saves.
    config = HLO_CONFIGS[1]
    assert len(_vjp_convolutions(config, ZERO_PADDED_MAX_CHANNELS + 1, "kernel")) == 2


@pytest.mark.parametrize("config", HLO_CONFIGS[:2], ids=HLO_IDS[:2])
def test_a_narrow_strided_layer_has_one_strided_convolution_of_the_cotangent_as_its_input_gradient(config):
    # HLO_CONFIGS[1] has two phase groups, each with its own forward convolution.
    convolutions = _vjp_convolutions(config, IN_CHANNELS, "input")
    assert len(convolutions) == 1 and f"stride={config.strides}" in convolutions[0]
    for marker in SLOW_CONVOLUTION_MARKERS:
        assert marker not in convolutions[0]


@pytest.mark.parametrize("config", HLO_CONFIGS, ids=HLO_IDS)
def test_wide_inputs_differentiate_through_matrix_products(config):
    assert _convolution_counts(config, 512 * config.groups) == (0, 0)


def test_grouped_layers_differentiate_through_matrix_products_whatever_their_width():
    # A grouped convolution's own weight gradient is input-dilated (the slow path).
    forward, gradient = _convolution_counts(HLO_CONFIGS[3], IN_CHANNELS)
    assert forward == 1 and gradient == 1


@pytest.mark.parametrize("config", HLO_CONFIGS, ids=HLO_IDS)
def test_vmap_adds_no_convolutions_and_no_conditional(config):
    params, x = _inputs(config)
    forward = lambda x: ct.conv1d_transpose(params, x, config)[0]
    plain = jax.jit(forward).lower(x).compile().as_text()
    mapped = jax.jit(jax.vmap(forward)).lower(jnp.stack([x, x, x])).compile().as_text()
    assert len(_convolutions(mapped)) == len(_convolutions(plain))
    assert "conditional(" not in mapped


def test_inputs_whose_tap_products_exceed_the_budget_take_the_convolution_gradients():
    config = HLO_CONFIGS[1].replace(data_format="channels_last")  # 5- and 4-tap phases: no Winograd
    # The budget is per example: one example longer than it.
    steps = GEMM_MAX_BYTES // (config.kernel_size * config.filters * 4) + 1
    small, big = (_gradient_hlo(config, *_abstract_inputs(config, 512, n, batch=1)) for n in (32, steps))
    assert len(_convolutions(small)) == 0
    # Per phase group, forward and kernel gradient; one strided input gradient for both.
    assert len(_convolutions(big)) == 5


def test_the_gemm_budget_is_per_example_whatever_the_batch():
    config = HLO_CONFIGS[1].replace(data_format="channels_last")
    fits = GEMM_MAX_BYTES // (config.kernel_size * config.filters * 4)  # steps of one example
    assert fits * config.kernel_size * config.filters * 4 <= GEMM_MAX_BYTES
    for batch in (1, 64):
        assert ct.plan(config, (batch, fits, 512), platform="cpu") == Plan.uniform("gemm")
        assert ct.plan(config, (batch, fits + 1, 512), platform="cpu") == Plan("polyphase", "lhs_dilation", "polyphase")
    # A batch of examples that each fit takes the GEMM form, though together they exceed it.
    text = _gradient_hlo(config, *_abstract_inputs(config, 512, fits // 8, batch=16))
    assert len(_convolutions(text)) == 0


@pytest.mark.parametrize(
    "field, known",
    [
        ("forward", plan_forms.FORWARD_FORMS),
        ("input_gradient", plan_forms.INPUT_GRADIENT_FORMS),
        ("kernel_gradient", plan_forms.KERNEL_GRADIENT_FORMS),
        ("correlation", plan_forms.CORRELATIONS),
    ],
)
def test_unknown_forms_are_a_value_error_listing_the_known_ones(field, known):
    with pytest.raises(ValueError, match=f"{field}='adjoint'.*" + ".*".join(known)):
        Plan(**{field: "adjoint"})


GROUPED = ct.Conv1DTransposeConfig(filters=4, kernel_size=4, strides=2, padding="same", groups=2)  # 2-tap phases
FOUR_TAPS = ct.Conv1DTransposeConfig(filters=4, kernel_size=8, strides=2, padding="same")
ONE_TAP = ct.Conv1DTransposeConfig(filters=4, kernel_size=3, strides=3)
DILATED = ct.Conv1DTransposeConfig(filters=4, kernel_size=3, strides=2, dilation_rate=2, padding=(1, 2))
WINOGRAD_LAYER = ct.Conv1DTransposeConfig(filters=4, kernel_size=4, strides=2, padding="same")


@pytest.mark.parametrize(
    "plan, config, match",
    [
        # Winograd's F(2, r), in any part of the plan: groups = 1 only ...
        (Plan.uniform("winograd"), GROUPED, r"groups=1 layers only; this layer has groups=2"),
        (Plan("winograd"), GROUPED, r"groups=1 .*groups=2"),
        (Plan("polyphase", "winograd", "polyphase"), GROUPED, r"groups=1 .*groups=2"),
        (Plan("polyphase", "polyphase", "winograd"), GROUPED, r"groups=1 .*groups=2"),
        # ... and a phase of 2 or 3 taps.
        (Plan.uniform("winograd"), FOUR_TAPS, r"needs a phase of 2 or 3 taps; this layer's phases have \[4\] taps"),
        (Plan("polyphase", "winograd", "polyphase"), FOUR_TAPS, r"2 or 3 taps.*\[4\] taps.*kernel_size=8"),
        (Plan("polyphase", "polyphase", "winograd"), ONE_TAP, r"2 or 3 taps.*\[1\] taps.*strides=3"),
        # The zero-padded kernel gradient: d = 1 only.
        (
            Plan("polyphase", "lhs_dilation", "zero_padded"),
            DILATED,
            r"kernel_gradient='zero_padded' needs dilation_rate=1.*dilation_rate=2",
        ),
        # Stacked products: the correlations of the polyphase and Winograd forward forms only.
        (
            Plan("gemm", correlation="stacked_product"),
            WINOGRAD_LAYER,
            r"correlation='stacked_product' applies to the polyphase and winograd.*forward='gemm'",
        ),
        (
            Plan("lhs_dilation", correlation="stacked_product"),
            WINOGRAD_LAYER,
            r"correlation='stacked_product'.*forward='lhs_dilation'",
        ),
    ],
    ids=[
        "winograd-groups",
        "winograd-forward-groups",
        "winograd-input-groups",
        "winograd-kernel-groups",
        "winograd-4-taps",
        "winograd-input-4-taps",
        "winograd-kernel-1-tap",
        "zero-padded-dilated",
        "stacked-gemm",
        "stacked-lhs-dilation",
    ],
)
def test_check_plan_rejects_each_inapplicable_plan_saying_why(plan, config, match):
    in_channels = 2 * config.groups
    with pytest.raises(ValueError, match=match):
        check_plan(plan, config)
    # Forced, the plan is checked: transposed_convolution and conv1d_transpose raise the same.
    shape = (1, 5, in_channels)
    kernel = jnp.ones(config.kernel_shape(in_channels))
    with pytest.raises(ValueError, match=match):
        transposed_convolution(jnp.ones(shape), kernel, config, implementation=plan)
    with pytest.raises(ValueError, match=match):
        ct.conv1d_transpose({"kernel": kernel, "bias": jnp.zeros(4)}, jnp.ones(shape), config, implementation=plan)


@pytest.mark.parametrize(
    "plan",
    [
        Plan.uniform("winograd"),
        Plan("polyphase", "winograd", "zero_padded", "stacked_product"),
        Plan("winograd", correlation="stacked_product"),
        Plan.uniform("gemm"),
        Plan.uniform("lhs_dilation"),
    ],
    ids=_plan_id,
)
def test_check_plan_accepts_what_the_layer_can_compute(plan):
    # The counterparts of the rejected plans: groups = 1 with 2-tap phases and d = 1.
    assert check_plan(plan, WINOGRAD_LAYER) is None
    assert check_plan(Plan("polyphase", "lhs_dilation", "polyphase"), DILATED) is None


def test_a_forced_winograd_plan_on_a_grouped_layer_is_a_value_error():
    params = {"kernel": jnp.ones(GROUPED.kernel_shape(4)), "bias": jnp.zeros(4)}
    with pytest.raises(ValueError, match="groups"):
        ct.conv1d_transpose(params, jnp.ones((2, 5, 4)), GROUPED, implementation=Plan.uniform("winograd"))
    # Unforced, the same layer runs.
    y, _ = ct.conv1d_transpose(params, jnp.ones((2, 5, 4)), GROUPED)
    assert y.shape == (2, 10, 4)


def test_an_unknown_implementation_is_a_value_error_listing_the_known_ones():
    config = HLO_CONFIGS[0]
    params, x = _inputs(config)
    with pytest.raises(ValueError, match=r"implementation='adjoint'.*gemm.*lhs_dilation.*polyphase.*Plan"):
        transposed_convolution(x, params["kernel"], config, implementation="adjoint")


@pytest.mark.parametrize("in_channels, groups, convolutions", [(512, 1, 0), (256, 1, 1), (1024, 2, 0)])
def test_wide_inputs_take_the_gemm_forward(in_channels, groups, convolutions):
    # Four taps per phase: Winograd's F(2, r) is used for two or three only.
    config = ct.Conv1DTransposeConfig(filters=2 * groups, kernel_size=8, strides=2, padding="same", groups=groups)
    text = _forward_hlo(config, *_abstract_inputs(config, in_channels, steps=8, batch=1))
    assert len(_convolutions(text)) == convolutions


def _instructions_of_shape(hlo, dims):
    """The opcodes of the instructions in ``hlo`` whose result has exactly these dimensions."""
    shape = re.escape("[" + ",".join(map(str, dims)) + "]")
    return re.findall(rf"= f32{shape}\{{[0-9,]*\}} ([a-z-]+)\(", hlo)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_the_gemm_forward_multiplies_by_the_kernel_where_it_lies(data_format):
    # Given a product with a batch axis XLA:CPU copies the whole kernel into (in, k * filters)
    # before multiplying; for a short input that copy costs more than the product.
    config = ct.Conv1DTransposeConfig(filters=24, kernel_size=4, strides=2, padding="same", data_format=data_format)
    kernel, x = _abstract_inputs(config, 40, steps=5, batch=1)
    forward = lambda k, x: transposed_convolution(x, k, config, implementation="gemm")
    text = jax.jit(forward).lower(kernel, x).compile().as_text()
    kernel_sized = [(4, 24, 40), (96, 40), (40, 96), (40, 4, 24), (4, 40, 24), (24, 4, 40)]
    ops = {op for dims in kernel_sized for op in _instructions_of_shape(text, dims)}
    assert ops <= {"parameter", "bitcast"}
    assert len(_convolutions(text)) == 0


def _temp_bytes_over_output(function, config, steps, in_channels=16):
    params = {"kernel": jnp.ones(config.kernel_shape(in_channels)), "bias": jnp.zeros(config.filters)}
    x = jax.ShapeDtypeStruct((1, steps, in_channels), jnp.float32)
    compiled = jax.jit(function).lower(params, x).compile()
    return compiled.memory_analysis().temp_size_in_bytes / (4 * output_length(config, steps) * config.filters)


# (config, input channels): 64 channels and two taps per phase would take Winograd's F(2, 2),
# whose temporaries (5 outputs' worth here) are what its byte budget keeps long inputs from.
LONG_INPUTS = [
    (ct.Conv1DTransposeConfig(filters=16, kernel_size=16, strides=8, padding="same"), 16),
    (ct.Conv1DTransposeConfig(filters=16, kernel_size=9, strides=2, padding="same"), 16),
    (ct.Conv1DTransposeConfig(filters=16, kernel_size=4, strides=2, padding="same"), 64),
]
LONG_IDS = ["k16-s8", "k9-s2", "k4-s2-64-channels"]


@pytest.mark.parametrize("config, in_channels", LONG_INPUTS, ids=LONG_IDS)
def test_a_long_input_needs_temporary_memory_within_twice_the_output(config, in_channels):
    forward = lambda params, x: ct.conv1d_transpose(params, x, config)[0]
    assert _temp_bytes_over_output(forward, config, 2**18, in_channels) <= 2


@pytest.mark.parametrize("config, in_channels", LONG_INPUTS, ids=LONG_IDS)
def test_the_gradients_of_a_long_input_need_temporary_memory_within_five_outputs_and_the_input(config, in_channels):
    # The input, kernel and output gradients and the saved input are about four outputs' worth
    # when the output is the larger; the 64-channel input is twice the output.
    loss = lambda params, x: jnp.sum(ct.conv1d_transpose(params, x, config)[0] ** 2)
    input_over_output = 2**18 * in_channels / (output_length(config, 2**18) * config.filters)
    assert _temp_bytes_over_output(jax.grad(loss, argnums=(0, 1)), config, 2**18, in_channels) <= 5 + input_over_output


@pytest.mark.parametrize(
    "dtype, in_channels, convolutions",
    [(jnp.bfloat16, 64, 0), (jnp.bfloat16, 16, 1), (jnp.float16, 64, 1), (jnp.float32, 64, 1)],
)
def test_on_cpu_bfloat16_with_64_channels_is_multiplied_as_a_matrix_product(dtype, in_channels, convolutions):
    # Four taps per phase, so that float32 is not computed by Winograd's F(2, r) either.
    config = ct.Conv1DTransposeConfig(filters=8, kernel_size=8, strides=2, padding="same")
    text = _forward_hlo(config, *_abstract_inputs(config, in_channels, steps=16, dtype=dtype))
    assert len(_convolutions(text)) == convolutions


# --- forward-mode and higher derivatives --------------------------------------------------------


def test_the_forward_mode_cases_run_every_plan_on_several_layers():
    for plan in PLANS:
        assert sum(_applies(plan, config) for config, _ in _grid()[::11]) >= 3, plan
        assert any(_applies(plan, config) for config in HLO_CONFIGS), plan


@functools.partial(jax.jit, static_argnums=(4, 5))
def _jvps(x, kernel, dx, dkernel, config, plans):
    """``(y, tangent)`` of the reference, then of the polyphase path under each of ``plans``, in one
    program (op by op, a jvp of a phase form is slow)."""
    primals, tangents = (x, kernel), (dx, dkernel)
    return (
        jax.jvp(lambda x, k: lhs_dilation_conv(x, k, config), primals, tangents),
        *[jax.jvp(lambda x, k, plan=plan: convolve(x, k, config, None, plan), primals, tangents) for plan in plans],
    )


@pytest.mark.parametrize("case", _grid()[::11], ids=_case_id)
def test_jvp_equals_the_reference_jvp(case):
    config, steps = case
    x, kernel = _random_inputs(config, steps)
    dx, dkernel = _random_inputs(config, steps, seed=1)
    plans = _plans_for(config)
    want, *gots = _jvps(x, kernel, dx, dkernel, config, plans)
    assert len(gots) == len(plans)
    for plan, got in zip(plans, gots):
        for name, w, g in zip(("output", "tangent"), want, got):
            np.testing.assert_allclose(g, w, err_msg=f"{name} ({plan})", **TOLERANCE)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _hessians_of_a_cubic_loss(x, kernel, config, plans):
    """d^2/dx dkernel of sum(y^3) (mixes both arguments and needs the derivative of a derivative)
    of the reference, then of the polyphase path under each of ``plans``, in one program."""

    def hessian(fn):
        loss = lambda x, k: jnp.sum(fn(x, k) ** 3)
        return jax.jacfwd(jax.grad(loss, argnums=0), argnums=1)(x, kernel)

    return (
        hessian(lambda x, k: lhs_dilation_conv(x, k, config)),
        *[hessian(lambda x, k, plan=plan: convolve(x, k, config, None, plan)) for plan in plans],
    )


# One test per layer, every plan that applies to it (the reference's Hessian compiles once).
@pytest.mark.parametrize("config", HLO_CONFIGS, ids=HLO_IDS)
def test_second_derivatives_equal_the_reference(config):
    x, kernel = _random_inputs(config, 5)
    plans = _plans_for(config)
    want, *gots = _hessians_of_a_cubic_loss(x, kernel, config, plans)
    assert len(gots) == len(plans)
    for plan, got in zip(plans, gots):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=str(plan))


def test_bfloat16_matrix_products_are_differentiated_through_convolutions():
    # Differentiated, the products would run at float32 speed plus copies of the stacked windows.
    # (Four taps per phase: two- and three-tap phases are differentiated by Winograd's products.)
    config = ct.Conv1DTransposeConfig(filters=8, kernel_size=8, strides=2, padding="same")
    text = _gradient_hlo(config, *_abstract_inputs(config, 64, steps=16, dtype=jnp.bfloat16))
    assert len(_convolutions(text)) == 2  # input and kernel gradients; the forward is a product


def test_the_bfloat16_bias_gradient_is_a_plain_float32_sum():
    # XLA:CPU lowers a bfloat16 sum over batch and steps to a slow windowed reduction.
    config = ct.Conv1DTransposeConfig(filters=8, kernel_size=4, strides=2, padding="same")
    params = {
        "kernel": jax.ShapeDtypeStruct(config.kernel_shape(64), jnp.bfloat16),
        "bias": jax.ShapeDtypeStruct((8,), jnp.bfloat16),
    }
    x = jax.ShapeDtypeStruct((4, 512, 64), jnp.bfloat16)
    loss = lambda params, x: jnp.sum(ct.conv1d_transpose(params, x, config)[0].astype(jnp.float32) ** 2)
    text = jax.jit(jax.grad(loss)).lower(params, x).compile().as_text()
    # Only float32 windowed sums (the kernel-sized one that keeps a NaN tap to its channel).
    windowed = [line for line in text.splitlines() if "reduce-window(" in line]
    assert all(re.search(r"= f32\[", line) for line in windowed), windowed


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_a_stride_one_forward_hands_its_zero_padding_to_the_convolution(data_format):
    # The same single convolution flax's ConvTranspose compiles to: no padded copy of the input.
    config = ct.Conv1DTransposeConfig(
        filters=8, kernel_size=3, dilation_rate=2, padding="same", data_format=data_format
    )
    text = _forward_hlo(config, *_abstract_inputs(config, IN_CHANNELS))
    assert len(_convolutions(text)) == 1
    assert re.search(r"window=\{size=3 pad=2_2 rhs_dilate=2\}", text), _convolutions(text)
    assert not re.search(r"= f32\[[0-9,]*\]\{[0-9,]*\} pad\(", text)

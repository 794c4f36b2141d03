"""Winograd's F(2, r) correlations: equal to the direct sum, chosen where they pay, and doing the
fewer multiplications they promise in the forward pass and in the gradients."""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

import convtrans as ct
from convtrans import Plan
from convtrans._src.api import transposed_convolution
from convtrans._src.dispatch import WINOGRAD_FORWARD_MIN_CHANNELS, WINOGRAD_MAX_BYTES, WINOGRAD_MIN_CHANNELS
from convtrans._src.kernels import winograd
from convtrans._src.kernels.polyphase import convolve
from convtrans._src.kernels.reference import lhs_dilation_conv
from tests.numpy_reference import conv1d_transpose as numpy_reference


def _direct_correlation(xp, rhs, step, channels_last):
    """``z[b, q, o] = sum_{i, c} xp[b, q + i * step, c] rhs[i, o, c]`` as a plain loop (float64)."""
    xp = np.asarray(xp, np.float64) if channels_last else np.asarray(xp, np.float64).transpose(0, 2, 1)
    taps = rhs.shape[0]
    steps = xp.shape[1] - (taps - 1) * step
    z = np.zeros((xp.shape[0], steps, rhs.shape[1]))
    for q in range(steps):
        for i in range(taps):
            z[:, q] += xp[:, q + i * step] @ np.asarray(rhs[i], np.float64).T
    return z if channels_last else z.transpose(0, 2, 1)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("taps", winograd.TAPS)
@pytest.mark.parametrize("step", [1, 2, 3])
def test_the_correlation_equals_the_direct_sum_for_every_length(data_format, taps, step):
    # Lengths from the shortest (one output step) through several whole and partial blocks.
    rng = np.random.default_rng(taps * 10 + step)
    config = ct.Conv1DTransposeConfig(filters=5, kernel_size=taps, data_format=data_format)
    rhs = rng.standard_normal((taps, 5, 3)).astype(np.float32)
    lengths = [steps + (taps - 1) * step for steps in range(1, 4 * step + 3)]
    xps = [
        rng.standard_normal((2, n, 3) if data_format == "channels_last" else (2, 3, n)).astype(np.float32)
        for n in lengths
    ]
    # Every length in one program (one compile).
    gots = jax.jit(lambda xps, rhs: [winograd.correlate(xp, rhs, step, config) for xp in xps])(xps, rhs)
    for steps, xp, got in zip(range(1, 4 * step + 3), xps, gots, strict=True):
        want = _direct_correlation(xp, rhs, step, data_format == "channels_last")
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"{steps} output steps")


def test_it_takes_floating_inputs_with_two_or_three_taps_only():
    assert winograd.applies(jnp.float32, 2) and winograd.applies(jnp.float64, 3)
    assert winograd.applies(jnp.bfloat16, 2) and winograd.applies(jnp.float16, 3)
    assert not winograd.applies(jnp.float32, 1) and not winograd.applies(jnp.float32, 4)
    assert not winograd.applies(jnp.int32, 2)


@pytest.mark.parametrize("taps", winograd.TAPS)
def test_bfloat16_is_transformed_and_multiplied_in_float32_and_rounded_once(taps):
    # A bfloat16 difference of inputs would keep 8 bits; computed in float32, the result is the
    # float32 sum rounded once: within one bfloat16 unit in the last place.
    rng = np.random.default_rng(taps)
    config = ct.Conv1DTransposeConfig(filters=8, kernel_size=taps)
    xp = jnp.asarray(rng.standard_normal((2, 40, 64)), jnp.bfloat16)
    rhs = jnp.asarray(rng.standard_normal((taps, 8, 64)), jnp.bfloat16)
    got = winograd.correlate(xp, rhs, 1, config)
    want = _direct_correlation(np.asarray(xp, np.float32), np.asarray(rhs, np.float32), 1, True)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_array_less(np.abs(np.asarray(got, np.float32) - want), 2.0**-7 * np.abs(want) + 1e-5)


def test_grouped_layers_are_a_value_error():
    config = ct.Conv1DTransposeConfig(filters=4, kernel_size=2, groups=2)
    with pytest.raises(ValueError, match=r"groups=1.*groups=2"):
        winograd.correlate(jnp.ones((1, 5, 4)), jnp.ones((2, 4, 2)), 1, config)


# --- as the default of the polyphase path -------------------------------------------------------

WIDE_CONFIGS = [
    ct.Conv1DTransposeConfig(filters=8, kernel_size=16, strides=8, padding="same"),  # HiFi-GAN, MelGAN
    ct.Conv1DTransposeConfig(
        filters=8, kernel_size=4, strides=2, padding="valid", output_padding=1, data_format="channels_first"
    ),
    ct.Conv1DTransposeConfig(filters=8, kernel_size=5, strides=2, padding="same"),  # 3- and 2-tap phases
    ct.Conv1DTransposeConfig(filters=8, kernel_size=3, dilation_rate=2, padding="same"),  # stride 1
    ct.Conv1DTransposeConfig(filters=8, kernel_size=3, strides=2, dilation_rate=2, padding=(1, 2)),
]
WIDE_IDS = ["k16-s8", "k4-s2-first", "k5-s2", "k3-s1-d2", "k3-s2-d2-torch"]
# The narrowest layers whose default plan is Winograd's for the forward pass and both gradients.
WINOGRAD_CHANNELS = max(WINOGRAD_MIN_CHANNELS, WINOGRAD_FORWARD_MIN_CHANNELS)


def _inputs(config, in_channels, steps, dtype=jnp.float32, seed=0):
    rng = np.random.default_rng(seed)
    shape = (2, steps, in_channels) if config.data_format == "channels_last" else (2, in_channels, steps)
    x = jnp.asarray(rng.standard_normal(shape), dtype)
    kernel = jnp.asarray(rng.standard_normal(config.kernel_shape(in_channels)) / np.sqrt(in_channels), dtype)
    return x, kernel


def _output_and_gradients(config, x, kernel, fn=transposed_convolution, **implementation):
    """``(y, dL/dx, dL/dkernel)`` of ``fn(x, kernel, config, **implementation)`` for a fixed
    cotangent (by default the dispatching computation, or the plan ``implementation=`` forces)."""
    y, vjp = jax.vjp(lambda x, k: fn(x, k, config, **implementation), x, kernel)
    return (y, *vjp(jnp.cos(jnp.arange(y.size, dtype=jnp.float32)).reshape(y.shape).astype(y.dtype)))


@functools.partial(jax.jit, static_argnums=0)
def _default_and_reference(config, x, kernel):
    """:func:`_output_and_gradients` of the default path and of the reference, in one program."""
    return _output_and_gradients(config, x, kernel), _output_and_gradients(config, x, kernel, fn=lhs_dilation_conv)


@pytest.mark.parametrize("config", WIDE_CONFIGS, ids=WIDE_IDS)
def test_the_default_output_and_gradients_equal_the_reference_where_winograd_computes_all_three(config):
    x, kernel = _inputs(config, WINOGRAD_CHANNELS, steps=19)
    assert ct.plan(config, x.shape, platform="cpu") == Plan.uniform("winograd")
    for name, got, want in zip(("output", "grad x", "grad kernel"), *_default_and_reference(config, x, kernel)):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5, err_msg=name)


@pytest.mark.parametrize("config", [WIDE_CONFIGS[0], WIDE_CONFIGS[3]], ids=[WIDE_IDS[0], WIDE_IDS[3]])
def test_narrower_layers_take_its_gradients_under_the_polyphase_forward(config):
    # Below WINOGRAD_FORWARD_MIN_CHANNELS the forward's kernel transform costs more than it saves.
    x, kernel = _inputs(config, WINOGRAD_MIN_CHANNELS, steps=19)
    assert ct.plan(config, x.shape, platform="cpu") == Plan("polyphase", "winograd", "winograd")
    for name, got, want in zip(("output", "grad x", "grad kernel"), *_default_and_reference(config, x, kernel)):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5, err_msg=name)


def _cpu_equations(jaxpr):
    """The equations of a traced program, those of sub-programs included, that run on CPU.

    Where the CPU plan differs from the other platforms', the program holds both, as the branches
    of a ``cond`` on ``platform_index`` (``jax.lax.platform_dependent``); only the CPU branch is
    followed there.
    """
    for eqn in jaxpr.eqns:
        yield eqn
        platforms = eqn.params.get("branches_platforms") if eqn.primitive.name == "cond" else None
        if platforms:
            cpu = [i for i, names in enumerate(platforms) if names is not None and "cpu" in names]
            default = [i for i, names in enumerate(platforms) if names is None]
            index = (cpu or default)[0]
            yield from _cpu_equations(eqn.params["branches"][index].jaxpr)
            continue
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            yield from _cpu_equations(sub)


def _multiply_adds(jaxpr):
    """Multiply-adds of the matrix products in a traced program on CPU; it must hold no
    convolution."""
    total = 0
    for eqn in _cpu_equations(jaxpr):
        assert eqn.primitive.name != "conv_general_dilated"
        if eqn.primitive.name == "dot_general":
            (contracting, _), _ = eqn.params["dimension_numbers"]
            lhs_shape = eqn.invars[0].aval.shape
            total += math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs_shape[c] for c in contracting)
    return total


@pytest.mark.parametrize("config, taps", [(WIDE_CONFIGS[0], 2), (WIDE_CONFIGS[3], 3)], ids=["2-taps", "3-taps"])
def test_the_default_does_r_plus_1_products_for_every_2r_of_the_direct_sum(config, taps):
    batch, steps, in_channels = 2, 256, WINOGRAD_CHANNELS
    x = jax.ShapeDtypeStruct((batch, steps, in_channels), jnp.float32)
    kernel = jax.ShapeDtypeStruct(config.kernel_shape(in_channels), jnp.float32)
    direct = batch * steps * config.kernel_size * in_channels * config.filters
    ratio = (taps + 1) / (2 * taps)
    slack = 1.02  # the few blocks past either end of the output that the pairs round up to
    forward = _multiply_adds(jax.make_jaxpr(lambda k, x: transposed_convolution(x, k, config))(kernel, x).jaxpr)
    assert ratio * direct <= forward <= ratio * slack * direct
    loss = lambda k, x: jnp.sum(transposed_convolution(x, k, config) ** 2)
    both = _multiply_adds(jax.make_jaxpr(jax.value_and_grad(loss, argnums=(0, 1)))(kernel, x).jaxpr)
    assert both <= 3 * ratio * slack * direct  # output, input and kernel gradients


def _assert_same(got, want):
    for name, g, w in zip(("output", "grad x", "grad kernel"), got, want):
        np.testing.assert_array_equal(np.asarray(g, np.float32), np.asarray(w, np.float32), err_msg=name)


@pytest.mark.parametrize(
    "in_channels, groups, kernel_size, cannot",
    [
        (WINOGRAD_MIN_CHANNELS // 4, 1, 16, None),  # narrow: its extra passes cost more
        (WINOGRAD_MIN_CHANNELS, 2, 16, "groups"),  # grouped
        (WINOGRAD_MIN_CHANNELS, 1, 32, "2 or 3 taps"),  # four taps per phase
    ],
    ids=["narrow", "groups2", "4-taps"],
)
def test_the_default_keeps_the_direct_sum_elsewhere(in_channels, groups, kernel_size, cannot):
    config = ct.Conv1DTransposeConfig(filters=8 * groups, kernel_size=kernel_size, strides=8, groups=groups)
    x, kernel = _inputs(config, in_channels * groups, steps=16)
    assert "winograd" not in dataclasses.astuple(ct.plan(config, x.shape, platform="cpu"))
    direct = convolve(x, kernel, config, None, Plan())
    np.testing.assert_array_equal(transposed_convolution(x, kernel, config), direct)
    # Forced, it applies to the narrow layer (the default chose against it) and to no other:
    # there forcing it is a ValueError saying why.
    if cannot is None:
        forced = transposed_convolution(x, kernel, config, implementation=Plan("winograd"))
        assert not np.array_equal(forced, direct)
        np.testing.assert_allclose(forced, direct, rtol=2e-5, atol=2e-5)
    else:
        with pytest.raises(ValueError, match=cannot):
            transposed_convolution(x, kernel, config, implementation=Plan("winograd"))


@pytest.mark.parametrize(
    "plan",
    [
        Plan("winograd"),
        Plan("polyphase", "winograd", "polyphase"),
        Plan("polyphase", "polyphase", "winograd"),
        Plan.uniform("winograd"),
    ],
    ids=["forward", "input-gradient", "kernel-gradient", "uniform"],
)
@pytest.mark.parametrize(
    "groups, kernel_size, match",
    [
        (2, 16, "groups"),  # grouped
        (1, 32, "2 or 3 taps"),  # four taps per phase
    ],
    ids=["groups2", "4-taps"],
)
def test_forcing_it_where_it_cannot_apply_is_a_value_error_saying_why(groups, kernel_size, match, plan):
    config = ct.Conv1DTransposeConfig(filters=8 * groups, kernel_size=kernel_size, strides=8, groups=groups)
    x, kernel = _inputs(config, WINOGRAD_MIN_CHANNELS * groups, steps=16)
    with pytest.raises(ValueError, match=match):
        transposed_convolution(x, kernel, config, implementation=plan)
    params = {"kernel": kernel, "bias": jnp.zeros(config.filters)}
    with pytest.raises(ValueError, match=match):
        ct.conv1d_transpose(params, x, config, implementation=plan)


def test_bfloat16_takes_it_for_the_gradients_only():
    # Its forward pass has the faster bfloat16 products; the gradients run at float32 speed
    # whichever form computes them, and this one does fewer multiplications.
    config, steps = WIDE_CONFIGS[0], 256
    x, kernel = _inputs(config, WINOGRAD_MIN_CHANNELS, steps=steps, dtype=jnp.bfloat16)
    # The forward by bfloat16 products of stacked windows (64 channels), the gradients by Winograd.
    plan = Plan("polyphase", "winograd", "winograd", "stacked_product")
    assert ct.plan(config, x.shape, dtype=x.dtype, platform="cpu") == plan
    default = _output_and_gradients(config, x, kernel)
    _assert_same(default, _output_and_gradients(config, x, kernel, implementation=plan))
    _assert_same(default, _output_and_gradients(config, x, kernel, fn=convolve, precision=None, plan=plan))
    program = jax.make_jaxpr(lambda x, k: _output_and_gradients(config, x, k))(x, kernel).jaxpr
    direct = x.shape[0] * steps * config.kernel_size * WINOGRAD_MIN_CHANNELS * config.filters
    # The forward's direct products, then 3/4 of them for each gradient; no convolution.
    assert _multiply_adds(program) <= (1 + 2 * 3 / 4) * 1.02 * direct


def test_the_default_for_a_vocoder_layer_is_winograd():
    config = WIDE_CONFIGS[0]
    x, kernel = _inputs(config, WINOGRAD_CHANNELS, steps=16)
    assert ct.plan(config, x.shape, platform="cpu") == Plan.uniform("winograd")
    np.testing.assert_array_equal(
        transposed_convolution(x, kernel, config), convolve(x, kernel, config, None, Plan.uniform("winograd"))
    )
    assert not np.array_equal(transposed_convolution(x, kernel, config), convolve(x, kernel, config, None, Plan()))


def test_a_long_example_keeps_the_convolutions_whatever_the_batch():
    # WINOGRAD_MAX_BYTES bounds the temporaries of ONE example: (r + 1) / 2 times its input plus
    # output, in the accumulation dtype. A batch of short examples is not bounded by it.
    config, in_channels = WIDE_CONFIGS[0], WINOGRAD_CHANNELS  # two taps per phase
    per_step = 3 * (config.strides * config.filters + in_channels) * 4 // 2  # bytes per input step
    fits = WINOGRAD_MAX_BYTES // per_step
    assert 3 * (ct.output_length(config, fits) * config.filters + fits * in_channels) * 4 // 2 <= WINOGRAD_MAX_BYTES
    for batch in (1, 64):
        assert ct.plan(config, (batch, fits, in_channels), platform="cpu") == Plan.uniform("winograd")
        assert "winograd" not in dataclasses.astuple(ct.plan(config, (batch, fits + 1, in_channels), platform="cpu"))
    # Compiled: one example past the budget has convolutions and no Winograd products.
    kernel = jax.ShapeDtypeStruct(config.kernel_shape(in_channels), jnp.float32)
    x = jax.ShapeDtypeStruct((1, fits + 1, in_channels), jnp.float32)
    program = jax.make_jaxpr(lambda k, x: transposed_convolution(x, k, config))(kernel, x).jaxpr
    assert any(eqn.primitive.name == "conv_general_dilated" for eqn in _cpu_equations(program))
    # ... and one that fits has Winograd's products and no convolution.
    x = jax.ShapeDtypeStruct((64, fits, in_channels), jnp.float32)
    program = jax.make_jaxpr(lambda k, x: transposed_convolution(x, k, config))(kernel, x).jaxpr
    assert _multiply_adds(program) > 0


@pytest.mark.parametrize("config", WIDE_CONFIGS, ids=WIDE_IDS)
def test_float64_takes_it_too_and_matches_the_numpy_reference_to_1e12(config):
    rng = np.random.default_rng(5)
    in_channels = WINOGRAD_CHANNELS
    shape = (2, 11, in_channels) if config.data_format == "channels_last" else (2, in_channels, 11)
    x, kernel = rng.standard_normal(shape), rng.standard_normal(config.kernel_shape(in_channels))
    want = numpy_reference(
        x,
        kernel,
        strides=config.strides,
        padding=config.padding,
        output_padding=config.output_padding,
        dilation_rate=config.dilation_rate,
        data_format=config.data_format,
    )
    with jax.enable_x64(True):
        x64, kernel64 = jnp.asarray(x, jnp.float64), jnp.asarray(kernel, jnp.float64)
        assert ct.plan(config, x64.shape, dtype=x64.dtype, platform="cpu") == Plan.uniform("winograd")
        got = transposed_convolution(x64, kernel64, config)
        forced = transposed_convolution(x64, kernel64, config, implementation=Plan.uniform("winograd"))
        assert got.dtype == jnp.float64
        got, forced = np.asarray(got), np.asarray(forced)
    np.testing.assert_array_equal(got, forced)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("config", WIDE_CONFIGS[:2], ids=WIDE_IDS[:2])
def test_jax_vmap_of_the_default_equals_the_unbatched_calls(config):
    x, kernel = _inputs(config, WINOGRAD_MIN_CHANNELS, steps=9)
    stacked = jnp.stack([x, 2 * x[::-1]])

    @jax.jit  # the mapped and the unbatched calls in one program
    def mapped_and_unbatched(stacked, kernel):
        mapped = jax.vmap(lambda x: transposed_convolution(x, kernel, config))(stacked)
        return mapped, [transposed_convolution(stacked[i], kernel, config) for i in range(2)]

    mapped, unbatched = mapped_and_unbatched(stacked, kernel)
    for i in range(2):
        np.testing.assert_allclose(mapped[i], unbatched[i], rtol=2e-5, atol=2e-5)

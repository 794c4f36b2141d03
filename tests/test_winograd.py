"""Winograd's F(2, r) correlations: equal to the direct sum, chosen where they pay, and doing the
fewer multiplications they promise in the forward pass and in the gradients."""

from __future__ import annotations

import math

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

import convtrans as ct
from convtrans import winograd
from convtrans.ops import lhs_dilation_conv
from convtrans.polyphase import WINOGRAD_MIN_CHANNELS, polyphase_conv
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
    for steps in range(1, 4 * step + 3):
        n = steps + (taps - 1) * step
        xp = rng.standard_normal((2, n, 3) if data_format == "channels_last" else (2, 3, n)).astype(np.float32)
        got = winograd.correlate(jnp.asarray(xp), jnp.asarray(rhs), step, config)
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
    with pytest.raises(ValueError, match="groups=1.*groups=2"):
        winograd.correlate(jnp.ones((1, 5, 4)), jnp.ones((2, 4, 2)), 1, config)


# --- as the default of the polyphase path -------------------------------------------------------

WIDE_CONFIGS = [
    ct.Conv1DTransposeConfig(filters=8, kernel_size=16, strides=8, padding="same"),  # HiFi-GAN, MelGAN
    ct.Conv1DTransposeConfig(filters=8, kernel_size=4, strides=2, padding="valid", output_padding=1,
                             data_format="channels_first"),
    ct.Conv1DTransposeConfig(filters=8, kernel_size=5, strides=2, padding="same"),  # 3- and 2-tap phases
    ct.Conv1DTransposeConfig(filters=8, kernel_size=3, dilation_rate=2, padding="same"),  # stride 1
    ct.Conv1DTransposeConfig(filters=8, kernel_size=3, strides=2, dilation_rate=2, padding=(1, 2)),
]
WIDE_IDS = ["k16-s8", "k4-s2-first", "k5-s2", "k3-s1-d2", "k3-s2-d2-torch"]


def _inputs(config, in_channels, steps, dtype=jnp.float32, seed=0):
    rng = np.random.default_rng(seed)
    shape = (2, steps, in_channels) if config.data_format == "channels_last" else (2, in_channels, steps)
    x = jnp.asarray(rng.standard_normal(shape), dtype)
    kernel = jnp.asarray(rng.standard_normal(config.kernel_shape(in_channels)) / np.sqrt(in_channels), dtype)
    return x, kernel


def _output_and_gradients(config, x, kernel, fn=polyphase_conv, **forms):
    """``(y, dL/dx, dL/dkernel)`` of ``fn(x, kernel, config, **forms)`` for a fixed cotangent."""
    y, vjp = jax.vjp(lambda x, k: fn(x, k, config, **forms), x, kernel)
    return (y, *vjp(jnp.cos(jnp.arange(y.size, dtype=jnp.float32)).reshape(y.shape).astype(y.dtype)))


@pytest.mark.parametrize("config", WIDE_CONFIGS, ids=WIDE_IDS)
def test_the_default_output_and_gradients_equal_the_reference_from_64_channels(config):
    x, kernel = _inputs(config, WINOGRAD_MIN_CHANNELS, steps=19)
    for name, got, want in zip(("output", "grad x", "grad kernel"), _output_and_gradients(config, x, kernel),
                               _output_and_gradients(config, x, kernel, fn=lhs_dilation_conv)):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5, err_msg=name)


def _multiply_adds(jaxpr):
    """Multiply-adds of the matrix products in a traced program; it must hold no convolution."""
    total = 0
    for eqn in jaxpr.eqns:
        assert eqn.primitive.name != "conv_general_dilated"
        if eqn.primitive.name == "dot_general":
            (contracting, _), _ = eqn.params["dimension_numbers"]
            lhs_shape = eqn.invars[0].aval.shape
            total += math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs_shape[c] for c in contracting)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            total += _multiply_adds(sub)
    return total


@pytest.mark.parametrize("config, taps", [(WIDE_CONFIGS[0], 2), (WIDE_CONFIGS[3], 3)], ids=["2-taps", "3-taps"])
def test_the_default_does_r_plus_1_products_for_every_2r_of_the_direct_sum(config, taps):
    batch, steps, in_channels = 2, 256, WINOGRAD_MIN_CHANNELS
    x = jax.ShapeDtypeStruct((batch, steps, in_channels), jnp.float32)
    kernel = jax.ShapeDtypeStruct(config.kernel_shape(in_channels), jnp.float32)
    direct = batch * steps * config.kernel_size * in_channels * config.filters
    ratio = (taps + 1) / (2 * taps)
    slack = 1.02  # the few blocks past either end of the output that the pairs round up to
    forward = _multiply_adds(jax.make_jaxpr(lambda k, x: polyphase_conv(x, k, config))(kernel, x).jaxpr)
    assert ratio * direct <= forward <= ratio * slack * direct
    loss = lambda k, x: jnp.sum(polyphase_conv(x, k, config) ** 2)
    both = _multiply_adds(jax.make_jaxpr(jax.value_and_grad(loss, argnums=(0, 1)))(kernel, x).jaxpr)
    assert both <= 3 * ratio * slack * direct  # output, input and kernel gradients


def _assert_same(got, want):
    for name, g, w in zip(("output", "grad x", "grad kernel"), got, want):
        np.testing.assert_array_equal(np.asarray(g, np.float32), np.asarray(w, np.float32), err_msg=name)


@pytest.mark.parametrize("in_channels, groups, kernel_size", [
    (WINOGRAD_MIN_CHANNELS // 4, 1, 16),  # narrow: its extra passes cost more
    (WINOGRAD_MIN_CHANNELS, 2, 16),  # grouped
    (WINOGRAD_MIN_CHANNELS, 1, 32),  # four taps per phase
], ids=["narrow", "groups2", "4-taps"])
def test_the_default_keeps_the_direct_sum_elsewhere(in_channels, groups, kernel_size):
    config = ct.Conv1DTransposeConfig(filters=8 * groups, kernel_size=kernel_size, strides=8, groups=groups)
    x, kernel = _inputs(config, in_channels * groups, steps=16)
    direct = polyphase_conv(x, kernel, config, forward="convolution")
    forced = polyphase_conv(x, kernel, config, forward="winograd")
    np.testing.assert_array_equal(polyphase_conv(x, kernel, config), direct)
    # Forced, it applies to the narrow layer (the default chose against it) and to no other.
    assert np.array_equal(forced, direct) == (in_channels >= WINOGRAD_MIN_CHANNELS)


def test_bfloat16_takes_it_for_the_gradients_only():
    # Its forward pass has the faster bfloat16 products; the gradients run at float32 speed
    # whichever form computes them, and this one does fewer multiplications.
    config, steps = WIDE_CONFIGS[0], 256
    x, kernel = _inputs(config, WINOGRAD_MIN_CHANNELS, steps=steps, dtype=jnp.bfloat16)
    default = _output_and_gradients(config, x, kernel)
    _assert_same(default, _output_and_gradients(config, x, kernel, forward="convolution", gradients="winograd"))
    program = jax.make_jaxpr(lambda x, k: _output_and_gradients(config, x, k))(x, kernel).jaxpr
    direct = x.shape[0] * steps * config.kernel_size * WINOGRAD_MIN_CHANNELS * config.filters
    # The forward's direct products, then 3/4 of them for each gradient; no convolution.
    assert _multiply_adds(program) <= (1 + 2 * 3 / 4) * 1.02 * direct


def test_the_default_for_a_vocoder_layer_is_winograd():
    config = WIDE_CONFIGS[0]
    x, kernel = _inputs(config, WINOGRAD_MIN_CHANNELS, steps=16)
    np.testing.assert_array_equal(polyphase_conv(x, kernel, config),
                                  polyphase_conv(x, kernel, config, forward="winograd", gradients="winograd"))
    assert not np.array_equal(polyphase_conv(x, kernel, config),
                              polyphase_conv(x, kernel, config, forward="convolution"))


@pytest.mark.parametrize("config", WIDE_CONFIGS, ids=WIDE_IDS)
def test_float64_takes_it_too_and_matches_the_numpy_reference_to_1e12(config):
    rng = np.random.default_rng(5)
    in_channels = WINOGRAD_MIN_CHANNELS
    shape = (2, 11, in_channels) if config.data_format == "channels_last" else (2, in_channels, 11)
    x, kernel = rng.standard_normal(shape), rng.standard_normal(config.kernel_shape(in_channels))
    want = numpy_reference(x, kernel, strides=config.strides, padding=config.padding,
                           output_padding=config.output_padding, dilation_rate=config.dilation_rate,
                           data_format=config.data_format)
    with jax.enable_x64(True):
        x64, kernel64 = jnp.asarray(x, jnp.float64), jnp.asarray(kernel, jnp.float64)
        got = polyphase_conv(x64, kernel64, config)
        forced = polyphase_conv(x64, kernel64, config, forward="winograd", gradients="winograd")
        assert got.dtype == jnp.float64
        got, forced = np.asarray(got), np.asarray(forced)
    np.testing.assert_array_equal(got, forced)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("config", WIDE_CONFIGS[:2], ids=WIDE_IDS[:2])
def test_jax_vmap_of_the_default_equals_the_unbatched_calls(config):
    x, kernel = _inputs(config, WINOGRAD_MIN_CHANNELS, steps=9)
    stacked = jnp.stack([x, 2 * x[::-1]])
    mapped = jax.vmap(lambda x: polyphase_conv(x, kernel, config))(stacked)
    for i in range(2):
        np.testing.assert_allclose(mapped[i], polyphase_conv(stacked[i], kernel, config), rtol=2e-5, atol=2e-5)

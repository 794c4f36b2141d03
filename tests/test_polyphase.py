"""The polyphase path equals the lhs_dilation reference (forward and every gradient), compiles
to ordinary convolutions, and stays within a small memory budget on long inputs."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convtrans as ct
from convtrans.geometry import output_length
from convtrans.ops import lhs_dilation_conv
from convtrans.polyphase import phase_kernel, polyphase_conv
from tests.numpy_reference import conv1d_transpose as numpy_reference

TOLERANCE = dict(rtol=2e-5, atol=2e-5)


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
            filters=2 * groups, kernel_size=k, strides=s, padding=padding, output_padding=op,
            dilation_rate=d, groups=groups, data_format=data_format,
        )
        try:
            output_length(config, steps)
        except ValueError:  # padding crops more than the result holds: a different test's concern
            steps = 7
        cases.append((config, steps))
    return cases


def _every_output_padding():
    cases = []
    for k, s, d, padding in [(4, 3, 1, "valid"), (5, 4, 1, "same"), (3, 2, 3, (1, 2)), (2, 5, 1, 1)]:
        for op in _legal_output_paddings(padding, s, d):
            for data_format in ("channels_last", "channels_first"):
                cases.append((ct.Conv1DTransposeConfig(
                    filters=3, kernel_size=k, strides=s, padding=padding, output_padding=op,
                    dilation_rate=d, data_format=data_format), 3))
    return cases


def _case_id(case):
    config, steps = case
    return (f"k{config.kernel_size}-s{config.strides}-d{config.dilation_rate}-p{config.padding}-"
            f"op{config.output_padding}-g{config.groups}-{config.data_format[9:]}-n{steps}")


@functools.partial(jax.jit, static_argnums=(3,))
def _outputs_and_gradients(x, kernel, cotangent_seed, config):
    """``(y, dL/dx, dL/dkernel)`` for both implementations, with a fixed cotangent."""

    def run(fn):
        y, vjp = jax.vjp(lambda x, kernel: fn(x, kernel, config, None), x, kernel)
        cotangent = jnp.cos(cotangent_seed + jnp.arange(y.size, dtype=y.dtype)).reshape(y.shape)
        return (y, *vjp(cotangent))

    return run(lhs_dilation_conv), run(polyphase_conv)


def _random_inputs(config, steps, seed=0):
    rng = np.random.default_rng(seed)
    in_channels = 3 * config.groups
    shape = (2, steps, in_channels) if config.data_format == "channels_last" else (2, in_channels, steps)
    x = rng.standard_normal(shape).astype(np.float32)
    kernel = rng.standard_normal(config.kernel_shape(in_channels)).astype(np.float32)
    return x, kernel


def _assert_matches_reference(config, steps):
    x, kernel = _random_inputs(config, steps)
    reference, polyphase = _outputs_and_gradients(x, kernel, 0.5, config)
    for name, want, got in zip(("output", "grad x", "grad kernel"), reference, polyphase):
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, err_msg=name, **TOLERANCE)


@pytest.mark.parametrize("case", _grid(), ids=_case_id)
def test_output_and_gradients_equal_the_reference_over_the_grid(case):
    _assert_matches_reference(*case)


@pytest.mark.parametrize("case", _every_output_padding(), ids=_case_id)
def test_output_and_gradients_equal_the_reference_for_every_output_padding(case):
    _assert_matches_reference(*case)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_stride_and_dilation_together_match_the_numpy_oracle(data_format):
    config = ct.Conv1DTransposeConfig(filters=4, kernel_size=3, strides=2, padding=(2, 1),
                                      output_padding=1, dilation_rate=3, groups=2,
                                      data_format=data_format)
    x, kernel = _random_inputs(config, 5, seed=3)
    got = polyphase_conv(jnp.asarray(x), jnp.asarray(kernel), config)
    want = numpy_reference(x, kernel, strides=2, padding=(2, 1), output_padding=1, dilation_rate=3,
                           groups=2, data_format=data_format)
    np.testing.assert_allclose(got, want, **TOLERANCE)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_an_empty_output_has_the_right_shape_and_zero_gradients(data_format):
    config = ct.Conv1DTransposeConfig(filters=2, kernel_size=2, strides=1, padding=(1, 1),
                                      data_format=data_format)
    x, kernel = _random_inputs(config, 1)
    y = polyphase_conv(jnp.asarray(x), jnp.asarray(kernel), config)
    assert y.shape == ((2, 0, 2) if data_format == "channels_last" else (2, 2, 0))
    grad_x, grad_kernel = jax.grad(
        lambda x, k: jnp.sum(polyphase_conv(x, k, config)), argnums=(0, 1))(x, kernel)
    assert not np.any(grad_x) and not np.any(grad_kernel)


def test_a_batch_of_zero_gives_an_empty_batch():
    config = ct.Conv1DTransposeConfig(filters=2, kernel_size=4, strides=2, padding="same")
    y = polyphase_conv(jnp.zeros((0, 5, 3)), jnp.ones((4, 2, 3)), config)
    assert y.shape == (0, 10, 2)


def test_the_phase_kernel_places_tap_j_at_phase_tap_jd_div_s_and_phase_jd_mod_s():
    k, s, d = 3, 2, 3  # taps at 0, 3, 6 -> (m, r) = (0, 0), (1, 1), (3, 0); M = 4
    kernel = jnp.arange(1.0, k + 1).reshape(k, 1, 1)
    flipped = phase_kernel(kernel, s, d, 1, "channels_last")
    phases = np.asarray(flipped[::-1, 0, :])  # (M, s): unflipped, one filter
    np.testing.assert_array_equal(phases, [[1, 0], [0, 2], [0, 0], [3, 0]])


def test_bfloat16_inputs_run_in_bfloat16_and_stay_close_to_float32():
    config = ct.Conv1DTransposeConfig(filters=4, kernel_size=8, strides=4, padding="same")
    x, kernel = _random_inputs(config, 6)
    y16 = polyphase_conv(jnp.asarray(x, jnp.bfloat16), jnp.asarray(kernel, jnp.bfloat16), config)
    y32 = polyphase_conv(jnp.asarray(x), jnp.asarray(kernel), config)
    assert y16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y16, np.float32), y32, rtol=0.05, atol=0.1)


# --- what the default path compiles to ------------------------------------------------------

# What XLA prints for the two slow forms (seen in the reference's compiled gradient): a
# window-reversed convolution (the weight gradient of a base-dilated one) and a base-dilated one.
SLOW_CONVOLUTION_MARKERS = ("rhs_reversal", "lhs_dilate")

HLO_CONFIGS = [
    ct.Conv1DTransposeConfig(filters=8, kernel_size=16, strides=8, padding="same"),
    ct.Conv1DTransposeConfig(filters=8, kernel_size=9, strides=2, padding=(3, 4), output_padding=1,
                             data_format="channels_first"),
    ct.Conv1DTransposeConfig(filters=8, kernel_size=3, dilation_rate=2, padding="same"),
]


def _compiled_gradient_hlo(config, implementation=None):
    in_channels = 4
    params = {"kernel": jnp.ones(config.kernel_shape(in_channels)), "bias": jnp.zeros(config.filters)}
    shape = (2, 32, in_channels) if config.data_format == "channels_last" else (2, in_channels, 32)

    def loss(params, x):
        y, _ = ct.conv1d_transpose(params, x, config, implementation=implementation)
        return jnp.sum(y * y)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    return grad.lower(params, jnp.ones(shape)).compile().as_text()


def test_the_default_on_cpu_is_polyphase():
    assert ct.default_implementation("cpu") == "polyphase"


def test_the_slow_markers_do_appear_in_the_reference_gradient():
    # Guards the next test: the strings it looks for are what XLA prints for the slow path.
    text = _compiled_gradient_hlo(HLO_CONFIGS[0], implementation="lhs_dilation")
    for marker in SLOW_CONVOLUTION_MARKERS:
        assert marker in text


@pytest.mark.parametrize("config", HLO_CONFIGS, ids=["s8", "s2-channels_first", "s1-d2"])
def test_the_default_gradient_compiles_without_reversed_or_dilated_input_convolutions(config):
    text = _compiled_gradient_hlo(config)
    assert "convolution(" in text
    for marker in SLOW_CONVOLUTION_MARKERS:
        assert marker not in text, f"{marker} in the compiled gradient of {config}"


@pytest.mark.parametrize("config", HLO_CONFIGS, ids=["s8", "s2-channels_first", "s1-d2"])
def test_the_default_gradient_convolutions_run_outside_any_conditional(config):
    # Differentiating through a lax.cond put the weight gradient inside a conditional, which
    # XLA:CPU ran ~60x slower; the backward convolutions must come from the plain path.
    convolutions = [line for line in _compiled_gradient_hlo(config).splitlines()
                    if "convolution(" in line]
    assert [line for line in convolutions if "cond/" not in line]
    assert not [line for line in convolutions if "cond/" in line and "transpose(" in line]


def test_a_long_input_needs_temporary_memory_within_twice_the_output():
    steps = 2**18
    config = ct.Conv1DTransposeConfig(filters=16, kernel_size=16, strides=8, padding="same")
    params = {"kernel": jnp.ones(config.kernel_shape(16)), "bias": jnp.zeros(16)}
    x = jax.ShapeDtypeStruct((1, steps, 16), jnp.float32)
    forward = jax.jit(lambda params, x: ct.conv1d_transpose(params, x, config)[0])
    compiled = forward.lower(params, x).compile()
    output_bytes = 4 * output_length(config, steps) * config.filters
    assert compiled.memory_analysis().temp_size_in_bytes <= 2 * output_bytes

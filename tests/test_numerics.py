"""Numerics: NaN/Inf propagate only where they belong, half precisions stay half with documented
accuracy, float64 matches the NumPy oracle tightly."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convtrans as ct
from convtrans import streaming
from tests.numpy_reference import conv1d_transpose_of

IMPLEMENTATIONS = sorted(ct.IMPLEMENTATIONS)
# Strides that do not divide the kernel, dilation, groups, crops and output padding: the shapes
# where a phase decomposition has structural zeros that must not turn NaN * 0 into NaN.
CONFIGS = {
    "k3-s2-same": dict(kernel_size=3, strides=2, padding="same"),
    "k5-s3-valid-op2-groups": dict(kernel_size=5, strides=3, padding="valid", output_padding=2, groups=2),
    "k3-s2-d2-torch": dict(kernel_size=3, strides=2, dilation_rate=2, padding=(1, 2), data_format="channels_first"),
    "k2-s4-valid": dict(kernel_size=2, strides=4, padding="valid"),
    "k3-s1-d3-same": dict(kernel_size=3, strides=1, dilation_rate=3, padding="same"),
}
IN_CHANNELS, FILTERS, STEPS = 4, 4, 9


def setup(name, rng, **overrides):
    config = ct.Conv1DTransposeConfig(filters=FILTERS, **{**CONFIGS[name], **overrides})
    kernel = rng.standard_normal(config.kernel_shape(IN_CHANNELS))
    bias = rng.standard_normal(FILTERS)
    shape = (2, STEPS, IN_CHANNELS) if config.data_format == "channels_last" else (2, IN_CHANNELS, STEPS)
    return config, kernel, bias, rng.standard_normal(shape)


def reference_for(config, x, kernel, bias=None):
    return conv1d_transpose_of(config, x, kernel, bias)


def dependents(config, kernel, index):
    """Outputs that depend on input sample ``index``: nonzero in the oracle's response to a
    one-hot input through an all-positive kernel (no cancellation possible)."""
    shape = (2, STEPS, IN_CHANNELS) if config.data_format == "channels_last" else (2, IN_CHANNELS, STEPS)
    one_hot = np.zeros(shape)
    one_hot[index] = 1.0
    return reference_for(config, one_hot, np.ones_like(kernel)) != 0


def poisoned(x, index, value):
    x = x.copy()
    x[index] = value
    return x


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_a_nonfinite_sample_reaches_exactly_the_outputs_that_depend_on_it(implementation, name, value):
    rng = np.random.default_rng(0)
    config, kernel, bias, x = setup(name, rng)
    params = {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}
    op = jax.jit(ct.conv1d_transpose, static_argnums=2, static_argnames="implementation")
    time = config.time_axis % 3
    for step in (0, STEPS // 2, STEPS - 1):
        index = [1, 0, 0]
        index[time], index[3 - time] = step, 2  # batch row 1, channel 2 (group 1 of 2 if grouped)
        index = tuple(index)
        y, _ = op(params, jnp.asarray(poisoned(x, index, value), jnp.float32), config, implementation=implementation)
        clean, _ = op(params, jnp.asarray(poisoned(x, index, 0.0), jnp.float32), config, implementation=implementation)
        hit = dependents(config, kernel, index)
        assert hit.any()
        np.testing.assert_array_equal(~np.isfinite(np.asarray(y)), hit, err_msg=f"sample {index}")
        if np.isnan(value):
            assert np.isnan(np.asarray(y)[hit]).all()
        np.testing.assert_array_equal(np.asarray(y)[~hit], np.asarray(clean)[~hit])


@pytest.mark.parametrize("name", ["k3-s2-same", "k3-s2-d2-torch"])
def test_a_nan_in_one_chunk_of_a_stream_stays_where_it_belongs(name):
    rng = np.random.default_rng(1)
    config, kernel, bias, x = setup(name, rng)
    params = {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}
    index = (0, 4, 1) if config.data_format == "channels_last" else (0, 1, 4)
    y, _ = streaming.chunked_conv1d_transpose(params, jnp.asarray(poisoned(x, index, np.nan), jnp.float32), config, 2)
    np.testing.assert_array_equal(np.isnan(np.asarray(y)), dependents(config, kernel, index))


def test_nan_inputs_raise_nothing_even_under_grad():
    config = ct.Conv1DTransposeConfig(filters=2, kernel_size=3, strides=2)
    params = {"kernel": jnp.ones((3, 2, 1)), "bias": jnp.zeros(2)}
    x = jnp.full((1, 4, 1), jnp.nan)
    grads = jax.grad(lambda p: jnp.sum(ct.conv1d_transpose(p, x, config)[0]))(params)
    assert np.isnan(np.asarray(grads["kernel"])).all()
    np.testing.assert_array_equal(grads["bias"], 9.0)  # d sum(y) / d bias: 9 output steps; no x involved


# Normwise accuracy against a float32 evaluation of the same float32 inputs, as stated in the
# README: max |y - y32| <= tol * max |y32|, and rms error <= rms_tol * rms(y32).
HALF_PRECISION = {
    "bfloat16": (jnp.bfloat16, 1e-2, 5e-3),
    "float16": (jnp.float16, 1.5e-3, 6e-4),
}
ACCURACY_SHAPES = [  # (kernel_size, strides, padding, in_channels, filters)
    (16, 8, "same", 64, 32),
    (4, 2, "same", 128, 64),
    (7, 3, (2, 2), 256, 32),
    (3, 1, "valid", 16, 16),
]


@pytest.mark.parametrize("shape", ACCURACY_SHAPES, ids=lambda s: f"k{s[0]}-s{s[1]}-{s[2]}-{s[3]}to{s[4]}")
@pytest.mark.parametrize("dtype_name", sorted(HALF_PRECISION))
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_half_precision_inputs_give_half_precision_outputs_within_the_documented_accuracy(
    implementation, dtype_name, shape
):
    dtype, max_tol, rms_tol = HALF_PRECISION[dtype_name]
    k, s, padding, cin, filters = shape
    config = ct.Conv1DTransposeConfig(filters=filters, kernel_size=k, strides=s, padding=padding)
    rng = np.random.default_rng(2)
    params = {  # float32 parameters: the op casts them to the input's dtype
        "kernel": jnp.asarray(rng.standard_normal((k, filters, cin)) / np.sqrt(k * cin / s), jnp.float32),
        "bias": jnp.asarray(0.1 * rng.standard_normal(filters), jnp.float32),
    }
    x = rng.standard_normal((4, 64, cin))

    # Both calls in one program, not op by op. Excess precision off: inside one program XLA could
    # otherwise skip the roundings to the half dtype that op by op (and the accuracy stated) has.
    @functools.partial(jax.jit, compiler_options={"xla_allow_excess_precision": False})
    def both(params, x32, x16):
        want = ct.conv1d_transpose(
            params, x32, config, precision=jax.lax.Precision.HIGHEST, implementation=implementation
        )[0]
        return want, ct.conv1d_transpose(params, x16, config, implementation=implementation)[0]

    want, y = both(params, jnp.asarray(x, jnp.float32), jnp.asarray(x, dtype))
    assert y.dtype == dtype
    want, got = np.asarray(want), np.asarray(y, np.float32)
    error = np.abs(got - want)
    assert error.max() <= max_tol * np.abs(want).max()
    assert np.sqrt(np.mean(error**2)) <= rms_tol * np.sqrt(np.mean(want**2))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bfloat16", "float16"])
def test_a_half_precision_stream_stays_in_its_dtype(dtype):
    config = ct.Conv1DTransposeConfig(filters=4, kernel_size=4, strides=2, padding="same")
    rng = np.random.default_rng(3)
    params = {"kernel": jnp.asarray(rng.standard_normal((4, 4, 3)), jnp.float32), "bias": jnp.zeros(4)}
    x = jnp.asarray(rng.standard_normal((1, 10, 3)), dtype)
    y, _ = streaming.chunked_conv1d_transpose(params, x, config, 3)
    want, _ = ct.conv1d_transpose(params, x, config)
    assert y.dtype == dtype
    np.testing.assert_allclose(
        np.asarray(y, np.float32), np.asarray(want, np.float32), rtol=1e-2, atol=1e-2 * float(jnp.abs(want).max())
    )


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_float64_under_x64_matches_the_numpy_reference_to_1e12(implementation, name):
    rng = np.random.default_rng(4)
    config, kernel, bias, x = setup(name, rng, activation=None)
    want = reference_for(config, x, kernel, bias)
    with jax.enable_x64(True):
        params = {"kernel": jnp.asarray(kernel, jnp.float64), "bias": jnp.asarray(bias, jnp.float64)}
        y, _ = ct.conv1d_transpose(params, jnp.asarray(x, jnp.float64), config, implementation=implementation)
        assert y.dtype == jnp.float64
        y = np.asarray(y)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    assert jnp.ones(()).dtype == jnp.float32  # x64 did not leak out of the context


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", ["k3-s2-same", "k3-s2-d2-torch", "k3-s1-d3-same"])
def test_winograd_phases_keep_a_nonfinite_sample_to_the_outputs_that_depend_on_it(name, value):
    # Two-tap, three-tap (phase taps one apart) and three-tap (three apart) correlations. An
    # infinity may come out as NaN there (inf - inf in the input differences), but only where
    # the direct sum is not finite either.
    from convtrans._src.dispatch import check_plan
    from convtrans._src.kernels.polyphase import convolve

    config, kernel, _, x = setup(name, np.random.default_rng(0))
    plan = ct.Plan.uniform("winograd")
    check_plan(plan, config)  # groups = 1 and phases of 2 or 3 taps: it applies
    op = jax.jit(lambda x: convolve(x, jnp.asarray(kernel, jnp.float32), config, None, plan))
    time = config.time_axis % 3
    for step in (0, STEPS // 2, STEPS - 1):
        index = [1, 0, 0]
        index[time], index[3 - time] = step, 2
        index = tuple(index)
        y = np.asarray(op(jnp.asarray(poisoned(x, index, value), jnp.float32)))
        clean = np.asarray(op(jnp.asarray(poisoned(x, index, 0.0), jnp.float32)))
        hit = dependents(config, kernel, index)
        np.testing.assert_array_equal(~np.isfinite(y), hit, err_msg=f"sample {index}")
        np.testing.assert_array_equal(y[~hit], clean[~hit])


# --- a non-finite kernel entry ---------------------------------------------------------------------


def _output_channel(config, tap_index):
    """The output channel that kernel entry ``tap_index`` feeds."""
    if isinstance(config, ct.Conv1DConfig):  # (k, in/g, filters)
        return tap_index[2]
    _, local, channel = tap_index  # (k, f/g, in): group of the input channel, then its filter
    return channel // (IN_CHANNELS // config.groups) * (config.filters // config.groups) + local


def _poisoned_channel_only(y, clean, channel, config):
    """Every output of ``channel`` is non-finite; every other output equals the clean run's."""
    y, clean = (
        np.moveaxis(np.asarray(y), config.channel_axis, 0),
        np.moveaxis(np.asarray(clean), config.channel_axis, 0),
    )
    assert not np.isfinite(y[channel]).any(), f"channel {channel} has finite outputs"
    others = np.arange(y.shape[0]) != channel
    np.testing.assert_array_equal(y[others], clean[others])


def _kernel_poisoned(config, value, tap_index):
    rng = np.random.default_rng(3)
    kernel = rng.standard_normal(config.kernel_shape(IN_CHANNELS)).astype(np.float32)
    clean = {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(rng.standard_normal(FILTERS), jnp.float32)}
    kernel[tap_index] = value
    return {**clean, "kernel": jnp.asarray(kernel)}, clean


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_nonfinite_kernel_entry_poisons_its_whole_output_channel_in_every_implementation(name, value):
    # The documented rule: whether a NaN tap also meets padding or inserted zeros is a detail of
    # each plan, so the op makes the whole channel non-finite in all of them.
    config, _, _, x = setup(name, np.random.default_rng(0))
    plans = [*IMPLEMENTATIONS, *([ct.Plan.uniform("winograd")] if config.groups == 1 and name != "k2-s4-valid" else [])]
    for tap_index in [(0, 1, 0), (config.kernel_size - 1, 0, IN_CHANNELS - 1)]:
        poisoned_params, clean = _kernel_poisoned(config, value, tap_index)
        for implementation in plans:
            op = jax.jit(
                lambda p, implementation=implementation: ct.conv1d_transpose(
                    p, jnp.asarray(x, jnp.float32), config, implementation=implementation
                )[0]
            )
            _poisoned_channel_only(op(poisoned_params), op(clean), _output_channel(config, tap_index), config)


def test_a_nonfinite_kernel_entry_poisons_its_channel_in_streams_too():
    config, _, _, x = setup("k5-s3-valid-op2-groups", np.random.default_rng(0))
    tap_index = (4, 0, 3)
    poisoned_params, clean = _kernel_poisoned(config, np.nan, tap_index)
    channel = _output_channel(config, tap_index)
    x = jnp.asarray(x, jnp.float32)

    def streamed(params):
        state = streaming.init(config, 2)
        state, first = streaming.step(params, state, x[:, :4], config)
        state, second = streaming.step(params, state, x[:, 4:], config)
        return jnp.concatenate([first, second, streaming.finish(params, state, config)], axis=1)[
            :, streaming.latency(config) :
        ]

    _poisoned_channel_only(streamed(poisoned_params), streamed(clean), channel, config)
    chunked = lambda p: streaming.chunked_conv1d_transpose(p, x, config, 2)[0]
    _poisoned_channel_only(chunked(poisoned_params), chunked(clean), channel, config)


@pytest.mark.parametrize("padding", ["same", "causal", (2, 0)])
def test_a_nonfinite_kernel_entry_poisons_its_whole_channel_in_conv1d(padding):
    config = ct.Conv1DConfig(FILTERS, 3, strides=2, padding=padding, groups=2)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, STEPS, IN_CHANNELS)), jnp.float32)
    tap_index = (0, 1, 3)
    poisoned_params, clean = _kernel_poisoned(config, np.nan, tap_index)
    op = jax.jit(lambda p: ct.conv1d(p, x, config)[0])
    _poisoned_channel_only(op(poisoned_params), op(clean), _output_channel(config, tap_index), config)

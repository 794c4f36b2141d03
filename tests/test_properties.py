"""Property-based tests: random configurations, lengths and data formats against the NumPy oracle.

Example counts add up to 154 per run (op 100 over the registered implementations, streaming 40,
gradients 14). Shapes are small and channel counts few, so compiled functions are reused across
examples and the file runs in well under a minute.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import convtrans as ct
from convtrans import streaming
from tests.numpy_reference import conv1d_transpose_of

ACTIVATIONS = {None: None, "relu": lambda y: np.maximum(y, 0.0), "tanh": np.tanh}


def _fits(config, steps):
    try:
        ct.output_length(config, steps)
    except ValueError:
        return False
    return True


@st.composite
def cases(draw, max_steps=8):
    """A valid (config, in_channels, steps) triple; every padding family, both data formats."""
    family = draw(st.sampled_from(["valid", "same", "int", "pair"]))
    kernel_size = draw(st.integers(1, 5))
    strides = draw(st.integers(1, 4))
    dilation = draw(st.integers(1, 3))
    if family in ("valid", "same") and strides > 1:
        dilation = 1  # Keras's rule: not both
    if family == "int":
        padding = draw(st.integers(0, 3))
    elif family == "pair":
        padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    else:
        padding = family.upper() if draw(st.booleans()) else family
    limit = strides if family in ("valid", "same") else max(strides, dilation)
    output_padding = draw(st.one_of(st.none(), st.integers(0, limit - 1)))
    groups = draw(st.sampled_from([1, 2]))
    config = ct.Conv1DTransposeConfig(
        filters=2 * groups,
        kernel_size=kernel_size,
        strides=strides,
        padding=padding,
        output_padding=output_padding,
        dilation_rate=dilation,
        groups=groups,
        data_format=draw(st.sampled_from(["channels_last", "channels_first"])),
        activation=draw(st.sampled_from(sorted(ACTIVATIONS, key=str))),
        use_bias=draw(st.booleans()),
    )
    in_channels = 2 * groups
    shortest = next(n for n in range(1, 10) if _fits(config, n))  # crops may need a few steps
    steps = draw(st.integers(shortest, max(shortest, max_steps)))
    return config, in_channels, steps


def arrays(config, in_channels, steps, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    kernel = rng.standard_normal(config.kernel_shape(in_channels)).astype(dtype)
    bias = rng.standard_normal(config.filters).astype(dtype) if config.use_bias else None
    shape = (2, steps, in_channels) if config.data_format == "channels_last" else (2, in_channels, steps)
    return kernel, bias, rng.standard_normal(shape).astype(dtype)


def oracle(config, kernel, bias, x):
    activation = ACTIVATIONS[None if config.activation == "linear" else config.activation]
    return conv1d_transpose_of(config, x, kernel, bias, activation)


def params_of(kernel, bias):
    return {"kernel": jnp.asarray(kernel)} | ({} if bias is None else {"bias": jnp.asarray(bias)})


op = jax.jit(ct.conv1d_transpose, static_argnums=2, static_argnames="implementation")
chunked = jax.jit(streaming.chunked_conv1d_transpose, static_argnums=(2, 3), static_argnames="implementation")


@settings(max_examples=100, database=None)
@given(case=cases(), seed=st.integers(0, 2**16), implementation=st.sampled_from(sorted(ct.IMPLEMENTATIONS)))
def test_op_matches_the_numpy_oracle_on_random_configurations(case, seed, implementation):
    config, in_channels, steps = case
    kernel, bias, x = arrays(config, in_channels, steps, seed)
    y, _ = op(params_of(kernel, bias), jnp.asarray(x), config, implementation=implementation)
    want = oracle(config, kernel, bias, x)
    out = ct.output_length(config, steps)
    assert (
        y.shape
        == want.shape
        == ((2, out, config.filters) if config.data_format == "channels_last" else (2, config.filters, out))
    )
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)


@settings(max_examples=40, database=None)
@given(
    case=cases(max_steps=12),
    seed=st.integers(0, 2**16),
    chunk_size=st.integers(1, 5),
    implementation=st.sampled_from(sorted(ct.IMPLEMENTATIONS)),
)
def test_streaming_matches_the_numpy_oracle_on_random_configurations(case, seed, chunk_size, implementation):
    config, in_channels, steps = case
    kernel, bias, x = arrays(config, in_channels, steps, seed)
    y, _ = chunked(params_of(kernel, bias), jnp.asarray(x), config, chunk_size, implementation=implementation)
    np.testing.assert_allclose(y, oracle(config, kernel, bias, x), rtol=1e-4, atol=1e-4)


@settings(max_examples=14, database=None)
@given(case=cases(max_steps=5), seed=st.integers(0, 2**16), implementation=st.sampled_from(sorted(ct.IMPLEMENTATIONS)))
def test_gradients_match_finite_differences_on_random_configurations(case, seed, implementation):
    config, in_channels, steps = case
    config = config.replace(activation="tanh")  # smooth everywhere, unlike relu
    kernel, bias, x = arrays(config, in_channels, steps, seed, np.float64)

    @jax.jit  # one compile per example; check_grads evaluates f many times
    def f(params, x):
        return ct.conv1d_transpose(params, x, config, implementation=implementation)[0]

    with jax.enable_x64(True):
        # eps=1e-6: with jax's default step of 1e-4 the central difference's own truncation
        # error exceeded 1e-6 for some configurations, for every implementation alike (float64
        # rounding at this step is ~1e-10).
        check_grads(
            f, (params_of(kernel, bias), jnp.asarray(x)), order=1, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6, eps=1e-6
        )

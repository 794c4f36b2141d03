"""``Conv1D``: Keras 3's ``Conv1D`` (JAX backend) as the oracle, PyTorch's ``conv1d`` for integer
padding, and the linen and nnx modules built on the pure function."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
import torch
from flax import nnx

import convtrans as ct

ACTIVATIONS = ["linear", "relu", "tanh", "gelu", "leaky_relu", "sigmoid"]


def _keras_cases():
    """Kernel 1-5, strides 1-3 (dilation 1-2 at stride 1), valid/same/causal, groups 1-2, both
    data formats, lengths that do and do not divide the stride; settings rotate."""
    cases = []
    rotation = itertools.count()
    for k, s, padding in itertools.product(range(1, 6), range(1, 4), ["valid", "same", "causal"]):
        for d in [1, 2] if s == 1 else [1]:
            i = next(rotation)
            steps = (7, 8, 9)[i % 3]
            if padding == "valid" and steps < (k - 1) * d + 1:
                steps = 9
            cases.append(
                dict(
                    kernel_size=k,
                    strides=s,
                    padding=padding,
                    dilation_rate=d,
                    groups=(1, 2)[(i // 2) % 2],
                    data_format=("channels_last", "channels_first")[i % 2],
                    activation=ACTIVATIONS[i % len(ACTIVATIONS)],
                    use_bias=i % 5 != 4,
                    steps=steps,
                )
            )
    return cases


def _case_id(case):
    return "-".join(f"{key}={value}" for key, value in case.items())


@pytest.mark.parametrize("case", _keras_cases(), ids=_case_id)
def test_conv1d_is_bit_exact_with_keras(case):
    case = dict(case)
    steps = case.pop("steps")
    layer = keras.layers.Conv1D(filters=4, **case)
    shape = (2, steps, 6) if case["data_format"] == "channels_last" else (2, 6, steps)
    x = np.random.default_rng(steps).standard_normal(shape).astype(np.float32)
    layer.build(shape)
    params = {"kernel": np.asarray(layer.kernel)}
    if case["use_bias"]:
        layer.bias.assign(np.random.default_rng(1).standard_normal(4).astype(np.float32))
        params["bias"] = np.asarray(layer.bias)
    config = ct.Conv1DConfig(filters=4, **case)
    y, _ = ct.conv1d(params, jnp.asarray(x), config)
    np.testing.assert_array_equal(y, np.asarray(layer(x)))


@pytest.mark.parametrize(
    "padding, strides, dilation, groups",
    [(0, 1, 1, 1), (2, 1, 1, 1), ((3, 1), 2, 1, 2), (1, 3, 2, 1), ((0, 4), 2, 3, 2)],
)
def test_integer_padding_is_pytorchs(padding, strides, dilation, groups):
    rng = np.random.default_rng(0)
    config = ct.Conv1DConfig(
        6, 3, strides=strides, padding=padding, dilation_rate=dilation, groups=groups, data_format="channels_first"
    )
    x = rng.standard_normal((2, 4, 11)).astype(np.float32)
    kernel = rng.standard_normal(config.kernel_shape(4)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    left, right = (padding, padding) if isinstance(padding, int) else padding
    want = torch.nn.functional.conv1d(
        torch.nn.functional.pad(torch.from_numpy(x), (left, right)),
        torch.from_numpy(kernel.transpose(2, 1, 0).copy()),
        torch.from_numpy(bias),
        stride=strides,
        dilation=dilation,
        groups=groups,
    ).numpy()
    got, _ = ct.conv1d({"kernel": kernel, "bias": bias}, jnp.asarray(x), config)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_causal_output_step_depends_only_on_past_inputs():
    config = ct.Conv1DConfig(2, 4, padding="causal", dilation_rate=2, use_bias=False)
    kernel = jnp.ones(config.kernel_shape(1))
    grad = jax.jacobian(lambda x: ct.conv1d({"kernel": kernel}, x, config)[0][0, :, 0])(jnp.ones((1, 12, 1)))
    dependence = np.asarray(jnp.abs(grad[:, 0, :, 0]) > 0)
    assert not np.triu(dependence, 1).any() and dependence.diagonal().all()


def test_any_rank_and_regularization_follow_conv1d_transpose():
    config = ct.Conv1DConfig(3, 3, padding="same", activity_regularizer="l2", kernel_regularizer="l1")
    params = {"kernel": jnp.ones(config.kernel_shape(2)), "bias": jnp.zeros(3)}
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 5, 2)), jnp.float32)
    y, aux = ct.conv1d(params, x, config)
    flat, flat_aux = ct.conv1d(params, x.reshape(6, 5, 2), config)
    np.testing.assert_array_equal(y, flat.reshape(2, 3, 5, 3))
    np.testing.assert_allclose(aux["activity"], flat_aux["activity"], rtol=1e-6)
    np.testing.assert_allclose(aux["kernel"], 0.01 * 18, rtol=1e-6)
    np.testing.assert_allclose(ct.conv1d(params, x[0, 0], config)[0], flat[0], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(padding="full"), ValueError, "expected 'valid', 'same' or 'causal'"),
        (dict(strides=2, dilation_rate=2, padding="same"), ValueError, "Keras's rule"),
        (dict(groups=3), ValueError, "groups=3 must divide filters=4"),
        (dict(kernel_size=0), ValueError, "kernel_size must be an integer >= 1"),
    ],
)
def test_the_config_validates_like_keras(kwargs, error, message):
    arguments = dict(filters=4, kernel_size=3) | kwargs
    with pytest.raises(error, match=message):
        ct.Conv1DConfig(**arguments)


def test_inputs_are_checked_with_the_kernel_layout_in_the_message():
    config = ct.Conv1DConfig(4, 3)
    with pytest.raises(ValueError, match=r"\(kernel_size, in_channels // groups, filters\).*built for 5 input"):
        ct.conv1d({"kernel": jnp.ones((3, 5, 4)), "bias": jnp.zeros(4)}, jnp.ones((1, 6, 2)), config)
    with pytest.raises(ValueError, match="shorter than the kernel's span 3"):
        ct.conv1d({"kernel": jnp.ones((3, 2, 4)), "bias": jnp.zeros(4)}, jnp.ones((1, 2, 2)), config)
    with pytest.raises(TypeError, match="config must be a Conv1DConfig"):
        ct.conv1d({"kernel": jnp.ones((3, 2, 4))}, jnp.ones((1, 6, 2)), ct.Conv1DTransposeConfig(4, 3))


def test_the_linen_module_creates_keras_parameters_and_calls_the_pure_function():
    model = ct.Conv1D(8, 5, strides=2, padding="causal", groups=2, activation="relu", kernel_regularizer="l2")
    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 20, 6)), jnp.float32)
    variables = model.init(jax.random.key(0), x)
    params = variables["params"]
    assert params["kernel"].shape == (5, 3, 8) and params["bias"].shape == (8,)
    # Glorot uniform over Keras's fans: fan_in = 5 * 3, fan_out = 5 * 8.
    assert np.abs(params["kernel"]).max() <= np.sqrt(6 / (15 + 40))
    y, state = model.apply(variables, x, mutable=["losses"])
    np.testing.assert_array_equal(y, ct.conv1d(params, x, model.config)[0])
    assert set(state["losses"]) == {"kernel_regularization"}
    with pytest.raises(ValueError, match="built for 6"):
        model.apply(variables, jnp.ones((1, 20, 4)))


def test_the_nnx_module_matches_the_linen_module():
    model = ct.nnx.Conv1D(4, 6, 3, padding=(2, 0), dilation_rate=2, data_format="channels_first", rngs=nnx.Rngs(0))
    assert model.kernel.shape == (3, 4, 6)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 4, 9)), jnp.float32)
    np.testing.assert_array_equal(model(x), ct.conv1d(model.params, x, model.config)[0])
    again = ct.nnx.Conv1D.from_config(model.config, 4, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(again.kernel[...], model.kernel[...])

"""The flax.linen module: Keras's arguments and parameters, conv1d_transpose inside, sown losses."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest

import convtrans as ct
from convtrans import constraints, regularizers

KEY = jax.random.PRNGKey(0)


def _keras_layer(config, in_channels, kernel, bias):
    layer = keras.layers.Conv1DTranspose.from_config(config.to_keras())
    shape = (None, None, in_channels) if config.data_format == "channels_last" else (None, in_channels, None)
    layer.build(shape)
    layer.set_weights([np.asarray(kernel)] + ([np.asarray(bias)] if config.use_bias else []))
    return layer


def test_defaults_are_the_configs_defaults():
    module_fields = {f.name: f.default for f in dataclasses.fields(ct.Conv1DTranspose)}
    for field in dataclasses.fields(ct.Conv1DTransposeConfig):
        if field.default is not dataclasses.MISSING:
            assert module_fields[field.name] == field.default, field.name
    assert module_fields["param_dtype"] == jnp.float32
    assert module_fields["dtype"] is None


def test_config_property_returns_the_validated_config():
    module = ct.Conv1DTranspose(8, (4,), strides=(2,), padding="SAME", kernel_regularizer="l2")
    assert module.config == ct.Conv1DTransposeConfig(8, 4, strides=2, padding="same", kernel_regularizer="l2")


def test_from_config_round_trips():
    config = ct.Conv1DTransposeConfig(6, 3, strides=2, groups=2, activation="tanh", kernel_constraint="max_norm")
    assert ct.Conv1DTranspose.from_config(config, name="up").config == config


def test_parameters_have_keras_layout_and_initializers():
    module = ct.Conv1DTranspose(
        6, 5, groups=3, kernel_initializer="ones", bias_initializer={"class_name": "Constant", "config": {"value": 0.5}}
    )
    params = module.init(KEY, jnp.zeros((2, 7, 9)))["params"]
    np.testing.assert_array_equal(params["kernel"], np.ones((5, 2, 9), np.float32))
    np.testing.assert_array_equal(params["bias"], np.full((6,), 0.5, np.float32))
    assert params["kernel"].dtype == jnp.float32


def test_no_bias_parameter_without_use_bias():
    params = ct.Conv1DTranspose(4, 3, use_bias=False).init(KEY, jnp.zeros((1, 5, 2)))["params"]
    assert set(params) == {"kernel"}


def test_output_equals_the_pure_function():
    module = ct.Conv1DTranspose(4, 3, strides=2, padding="same", activation="relu", data_format="channels_first")
    x = jax.random.normal(KEY, (2, 5, 7))
    params = module.init(KEY, x)["params"]
    y, _ = ct.conv1d_transpose(params, x, module.config)
    np.testing.assert_array_equal(module.apply({"params": params}, x), y)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(filters=5, kernel_size=4, strides=3, padding="same", activation="relu"),
        dict(filters=3, kernel_size=5, dilation_rate=2, output_padding=None, data_format="channels_first"),
        dict(filters=4, kernel_size=2, strides=2, output_padding=1, use_bias=False),
    ],
)
def test_output_matches_keras_with_the_same_weights(kwargs):
    module = ct.Conv1DTranspose(**kwargs, bias_initializer="random_normal")
    shape = (3, 6, 7) if module.config.data_format == "channels_last" else (3, 7, 6)
    x = jax.random.normal(jax.random.PRNGKey(1), shape)
    params = module.init(KEY, x)["params"]
    layer = _keras_layer(module.config, 7, params["kernel"], params.get("bias"))
    np.testing.assert_allclose(module.apply({"params": params}, x), layer(np.asarray(x)), rtol=1e-5, atol=1e-6)


def test_regularization_terms_are_sown_and_match_keras_losses():
    module = ct.Conv1DTranspose(
        4,
        3,
        strides=2,
        kernel_regularizer="l2",
        bias_regularizer={"class_name": "L1", "config": {"l1": 0.3}},
        activity_regularizer=regularizers.L1L2(l1=0.01, l2=0.02),
        bias_initializer="random_uniform",
    )
    x = jax.random.normal(KEY, (3, 5, 2))
    params = module.init(KEY, x)["params"]
    _y, state = module.apply({"params": params}, x, mutable=["losses"])
    losses = state["losses"]
    assert set(losses) == {"kernel_regularization", "bias_regularization", "activity_regularization"}
    layer = _keras_layer(module.config, 2, params["kernel"], params["bias"])
    layer(np.asarray(x))
    np.testing.assert_allclose(sum(jax.tree.leaves(losses)), sum(float(loss) for loss in layer.losses), rtol=1e-5)


def test_nothing_is_sown_during_init_or_without_regularizers():
    x = jnp.zeros((1, 4, 2))
    assert set(ct.Conv1DTranspose(3, 2, kernel_regularizer="l2").init(KEY, x)) == {"params"}
    module = ct.Conv1DTranspose(3, 2)
    _, state = module.apply(module.init(KEY, x), x, mutable=["losses"])
    assert jax.tree.leaves(state) == []


def test_sown_losses_are_differentiable_and_add_to_the_loss():
    module = ct.Conv1DTranspose(3, 2, kernel_regularizer=regularizers.L2(0.5))
    x = jnp.zeros((1, 4, 2))
    params = module.init(KEY, x)["params"]

    def loss(p):
        _, state = module.apply({"params": p}, x, mutable=["losses"])
        return sum(jax.tree.leaves(state["losses"]))

    np.testing.assert_allclose(jax.grad(loss)(params)["kernel"], params["kernel"], rtol=1e-6)


def test_bfloat16_dtype_gives_bfloat16_outputs_with_float32_parameters():
    module = ct.Conv1DTranspose(4, 3, strides=2, dtype=jnp.bfloat16)
    x = jax.random.normal(KEY, (2, 5, 3))
    y, variables = module.init_with_output(KEY, x)
    assert y.dtype == jnp.bfloat16
    assert {p.dtype for p in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    full = ct.Conv1DTranspose(4, 3, strides=2).apply(variables, x)
    np.testing.assert_allclose(np.asarray(y, np.float32), full, rtol=5e-2, atol=5e-2)


def test_default_dtype_promotes_input_and_parameters():
    module = ct.Conv1DTranspose(4, 3)
    y, _ = module.init_with_output(KEY, jnp.ones((1, 5, 3), jnp.bfloat16))
    assert y.dtype == jnp.float32


def test_constrained_parameters_are_boxed_and_apply_unboxes_them():
    module = ct.Conv1DTranspose(4, 3, kernel_constraint="max_norm", bias_constraint=constraints.NonNeg())
    x = jnp.ones((1, 5, 2))
    params = module.init(KEY, x)["params"]
    assert isinstance(params["kernel"], ct.Constrained)
    assert params["kernel"].constraint == constraints.MaxNorm()
    assert params["bias"].constraint == constraints.NonNeg()
    y, _ = ct.conv1d_transpose(nn.unbox(params), x, module.config)
    np.testing.assert_array_equal(module.apply({"params": params}, x), y)


def test_jax_initializer_callables_are_accepted():
    module = ct.Conv1DTranspose(4, 3, kernel_initializer=jax.nn.initializers.ones)
    params = module.init(KEY, jnp.ones((1, 5, 2)))["params"]
    np.testing.assert_array_equal(params["kernel"], np.ones((3, 4, 2)))


def test_jit_and_grad_through_the_module():
    module = ct.Conv1DTranspose(4, 3, strides=2, padding="same")
    x = jax.random.normal(KEY, (2, 5, 3))
    params = module.init(KEY, x)["params"]
    grads = jax.jit(jax.grad(lambda p: jnp.sum(module.apply({"params": p}, x) ** 2)))(params)
    assert jax.tree.map(jnp.shape, grads) == jax.tree.map(jnp.shape, params)


def test_invalid_arguments_raise_naming_the_argument():
    with pytest.raises(ValueError, match="padding"):
        ct.Conv1DTranspose(4, 3, padding="causal").init(KEY, jnp.ones((1, 5, 2)))
    with pytest.raises(ValueError, match="rank >= 2"):
        ct.Conv1DTranspose(4, 3).init(KEY, jnp.ones((2,)))

"""The flax.nnx module: same parameters and outputs as the linen module and Keras."""

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
from flax import nnx

import convtrans as ct
from convtrans import constraints, regularizers
from convtrans.nnx import Conv1DTranspose, RegularizationLoss, with_regularization_loss

KEY = jax.random.PRNGKey(0)


def test_parameters_are_nnx_params_in_keras_layout():
    module = Conv1DTranspose(9, 6, 5, groups=3, rngs=nnx.Rngs(0))
    assert isinstance(module.kernel, nnx.Param) and isinstance(module.bias, nnx.Param)
    assert module.kernel.shape == (5, 2, 9)
    assert module.bias.shape == (6,)
    assert module.kernel[...].dtype == jnp.float32


def test_no_bias_without_use_bias():
    module = Conv1DTranspose(2, 4, 3, use_bias=False, rngs=nnx.Rngs(0))
    assert module.bias is None
    assert set(nnx.state(module, nnx.Param)) == {"kernel"}


def test_config_holds_the_keras_arguments():
    module = Conv1DTranspose(3, 8, (4,), strides=(2,), padding="SAME", kernel_constraint="max_norm", rngs=nnx.Rngs(0))
    assert module.config == ct.Conv1DTransposeConfig(8, 4, strides=2, padding="same", kernel_constraint="max_norm")


def test_initializers_come_from_the_config():
    module = Conv1DTranspose(
        2,
        4,
        3,
        kernel_initializer="ones",
        bias_initializer={"class_name": "Constant", "config": {"value": 2.0}},
        rngs=nnx.Rngs(0),
    )
    np.testing.assert_array_equal(module.kernel[...], np.ones((3, 4, 2)))
    np.testing.assert_array_equal(module.bias[...], np.full((4,), 2.0))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(filters=5, kernel_size=4, strides=3, padding="same", activation="relu"),
        dict(filters=3, kernel_size=5, dilation_rate=2, data_format="channels_first"),
        dict(filters=4, kernel_size=2, strides=2, output_padding=1, use_bias=False),
    ],
)
def test_output_matches_keras_with_the_same_weights(kwargs):
    module = Conv1DTranspose(7, **kwargs, bias_initializer="random_normal", rngs=nnx.Rngs(1))
    shape = (3, 6, 7) if module.config.data_format == "channels_last" else (3, 7, 6)
    x = np.asarray(jax.random.normal(KEY, shape))
    layer = keras.layers.Conv1DTranspose.from_config(module.config.to_keras())
    layer.build(shape)
    layer.set_weights([np.asarray(v) for v in module.params.values()])
    np.testing.assert_allclose(module(x), layer(x), rtol=1e-5, atol=1e-6)


def test_output_equals_the_pure_function():
    module = Conv1DTranspose(4, 6, 3, strides=2, groups=2, activation="tanh", rngs=nnx.Rngs(0))
    x = jax.random.normal(KEY, (2, 5, 4))
    np.testing.assert_array_equal(module(x), ct.conv1d_transpose(module.params, x, module.config)[0])


def test_regularization_is_captured_and_matches_keras_losses():
    module = Conv1DTranspose(
        2,
        4,
        3,
        kernel_regularizer="l2",
        bias_regularizer=regularizers.L1(0.2),
        activity_regularizer="l1",
        bias_initializer="random_uniform",
        rngs=nnx.Rngs(0),
    )
    x = np.asarray(jax.random.normal(KEY, (3, 5, 2)))
    _, sown = nnx.capture(module, RegularizationLoss)(x)
    assert set(sown) == {"kernel_regularization", "bias_regularization", "activity_regularization"}
    layer = keras.layers.Conv1DTranspose.from_config(module.config.to_keras())
    layer.build(x.shape)
    layer.set_weights([np.asarray(v) for v in module.params.values()])
    layer(x)
    _, penalty = with_regularization_loss(module)(x)
    np.testing.assert_allclose(penalty, sum(float(loss) for loss in layer.losses), rtol=1e-5)


def test_regularization_of_a_whole_model_sums_every_layer():
    class Model(nnx.Module):
        def __init__(self, rngs):
            self.up1 = Conv1DTranspose(2, 3, 2, strides=2, kernel_regularizer="l2", rngs=rngs)
            self.up2 = Conv1DTranspose(3, 1, 2, kernel_regularizer="l1", rngs=rngs)

        def __call__(self, x):
            return self.up2(self.up1(x))

    model = Model(nnx.Rngs(0))
    _, penalty = with_regularization_loss(lambda m, x: m(x))(model, jnp.ones((1, 4, 2)))
    np.testing.assert_allclose(
        penalty, model.up1.weight_regularization() + model.up2.weight_regularization(), rtol=1e-6
    )


def test_nothing_is_stored_outside_a_capture():
    module = Conv1DTranspose(2, 3, 2, kernel_regularizer="l2", rngs=nnx.Rngs(0))
    module(jnp.ones((1, 4, 2)))
    assert len(nnx.state(module, RegularizationLoss)) == 0


def test_weight_regularization_is_the_kernel_and_bias_penalty():
    module = Conv1DTranspose(
        2,
        4,
        3,
        kernel_regularizer=regularizers.L2(0.5),
        bias_regularizer="l1",
        bias_initializer="ones",
        rngs=nnx.Rngs(0),
    )
    expected = 0.5 * np.sum(np.square(module.kernel[...])) + 0.01 * 4
    np.testing.assert_allclose(module.weight_regularization(), expected, rtol=1e-6)


def test_regularization_gradient_flows_through_nnx_grad():
    module = Conv1DTranspose(2, 3, 2, kernel_regularizer=regularizers.L2(0.5), rngs=nnx.Rngs(0))
    x = jnp.zeros((1, 4, 2))

    forward = with_regularization_loss(lambda m, x: m(x))
    grads = nnx.grad(lambda m: forward(m, x)[1])(module)
    np.testing.assert_allclose(grads.kernel[...], module.kernel[...], rtol=1e-6)


def test_bfloat16_dtype_gives_bfloat16_outputs_with_float32_parameters():
    module = Conv1DTranspose(3, 4, 3, strides=2, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    x = jax.random.normal(KEY, (2, 5, 3))
    y = module(x)
    assert y.dtype == jnp.bfloat16
    assert {p.dtype for p in jax.tree.leaves(nnx.state(module, nnx.Param))} == {jnp.dtype(jnp.float32)}
    reference = ct.conv1d_transpose(module.params, x, module.config)[0]
    np.testing.assert_allclose(np.asarray(y, np.float32), reference, rtol=5e-2, atol=5e-2)


def test_constraint_is_variable_metadata():
    module = Conv1DTranspose(
        2,
        4,
        3,
        kernel_constraint={"class_name": "MaxNorm", "config": {"max_value": 1.5, "axis": 0}},
        bias_constraint=constraints.NonNeg(),
        rngs=nnx.Rngs(0),
    )
    assert module.kernel.get_metadata()["constraint"] == constraints.MaxNorm(1.5)
    assert module.bias.get_metadata()["constraint"] == constraints.NonNeg()


def test_from_config_builds_the_same_layer():
    config = ct.Conv1DTransposeConfig(6, 3, strides=2, groups=3, kernel_initializer="ones")
    module = Conv1DTranspose.from_config(config, 3, rngs=nnx.Rngs(0))
    assert module.config == config and module.kernel.shape == (3, 2, 3)


def test_jit_through_the_module():
    module = Conv1DTranspose(3, 4, 3, strides=2, padding="same", rngs=nnx.Rngs(0))
    x = jax.random.normal(KEY, (2, 5, 3))
    np.testing.assert_allclose(nnx.jit(lambda m, x: m(x))(module, x), module(x), rtol=1e-6)


def test_invalid_in_channels_raise():
    with pytest.raises(ValueError, match="in_channels"):
        Conv1DTranspose(0, 4, 3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="groups"):
        Conv1DTranspose(3, 4, 3, groups=2, rngs=nnx.Rngs(0))

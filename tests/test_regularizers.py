"""The ``aux`` terms: their sum is Keras's ``sum(layer.losses)`` for the same weights and input."""

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest

import convtrans as ct
from convtrans import regularizers

CASES = [
    dict(kernel_regularizer="l2"),
    dict(kernel_regularizer="l1", bias_regularizer="l2"),
    dict(activity_regularizer="l1"),
    dict(
        kernel_regularizer=keras.regularizers.L1L2(l1=0.03, l2=0.2),
        bias_regularizer="l1",
        activity_regularizer=keras.regularizers.L2(0.5),
        activation="tanh",
    ),
    dict(
        activity_regularizer=keras.regularizers.L1L2(l1=0.1, l2=0.1),
        padding="same",
        strides=3,
        data_format="channels_first",
    ),
    dict(kernel_regularizer="l1l2", bias_regularizer=keras.regularizers.L1(0.3), use_bias=True),
]


@pytest.mark.parametrize("kwargs", CASES)
@pytest.mark.parametrize("batch", [1, 3])
def test_sum_of_aux_equals_keras_layer_losses(kwargs, batch):
    layer = keras.layers.Conv1DTranspose(4, 3, **kwargs)
    shape = (batch, 6, 2) if layer.data_format == "channels_last" else (batch, 2, 6)
    x = np.random.default_rng(batch).standard_normal(shape).astype(np.float32)
    layer.build(shape)
    layer.bias.assign(np.linspace(-1, 1, 4).astype(np.float32))
    layer(x)
    expected = float(sum(np.asarray(loss) for loss in layer.losses))
    config = ct.Conv1DTransposeConfig.from_keras(layer.get_config())
    params = {"kernel": np.asarray(layer.kernel.value), "bias": np.asarray(layer.bias.value)}
    _, aux = ct.conv1d_transpose(params, x, config)
    assert float(sum(aux.values())) == pytest.approx(expected, rel=1e-5)


def test_aux_has_the_same_keys_with_or_without_regularizers():
    params = {"kernel": jnp.ones((3, 4, 2)), "bias": jnp.ones(4)}
    x = jnp.ones((2, 5, 2))
    plain = ct.conv1d_transpose(params, x, ct.Conv1DTransposeConfig(4, 3))[1]
    regularized = ct.conv1d_transpose(params, x, ct.Conv1DTransposeConfig(4, 3, kernel_regularizer="l2"))[1]
    assert set(plain) == set(regularized) == {"kernel", "bias", "activity"}
    assert all(float(v) == 0.0 for v in plain.values())
    assert jax.tree.structure(plain) == jax.tree.structure(regularized)


@pytest.mark.parametrize(
    "identifier, l1, l2",
    [
        ("l1", 0.01, 0.0),
        ("l2", 0.0, 0.01),
        ("l1l2", 0.0, 0.0),
        ("l1_l2", 0.01, 0.01),
        ({"class_name": "L1L2", "config": {"l1": 0.5, "l2": None}}, 0.5, 0.0),
        (regularizers.L1L2(0.2, 0.3), 0.2, 0.3),
    ],
)
def test_regularizer_identifiers_and_their_penalties(identifier, l1, l2):
    w = jnp.asarray([[-2.0, 1.0], [0.5, 3.0]])
    penalty = regularizers.get(identifier)(w)
    assert float(penalty) == pytest.approx(l1 * 6.5 + l2 * 14.25)


def test_activity_term_is_divided_by_the_batch_size():
    config = ct.Conv1DTransposeConfig(1, 1, use_bias=False, activity_regularizer=regularizers.L1(1.0))
    params = {"kernel": jnp.ones((1, 1, 1))}
    _, aux = ct.conv1d_transpose(params, jnp.ones((4, 3, 1)), config)
    assert float(aux["activity"]) == pytest.approx(12.0 / 4)


def test_orthogonal_regularizer_is_refused_for_the_rank_3_kernel():
    with pytest.raises(ValueError, match="OrthogonalRegularizer needs a rank-2 weight"):
        ct.Conv1DTransposeConfig(4, 3, kernel_regularizer={"class_name": "OrthogonalRegularizer", "config": {}})


def test_aux_trains_with_value_and_grad_has_aux():
    config = ct.Conv1DTransposeConfig(4, 3, strides=2, kernel_regularizer="l2", activity_regularizer="l1")
    params = {"kernel": jnp.full((3, 4, 2), 0.1), "bias": jnp.zeros(4)}

    def loss(params, x):
        y, aux = ct.conv1d_transpose(params, x, config)
        return jnp.mean(y**2) + sum(aux.values()), aux

    (_value, aux), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params, jnp.ones((2, 5, 2)))
    assert set(aux) == {"kernel", "bias", "activity"}
    expected_kernel_grad = jax.grad(lambda p: loss(p, jnp.ones((2, 5, 2)))[0])(params)["kernel"]
    np.testing.assert_allclose(grads["kernel"], expected_kernel_grad)
    assert float(aux["kernel"]) == pytest.approx(0.01 * 24 * 0.01)


@pytest.mark.parametrize("batch", [1, 4])
def test_each_term_equals_the_keras_regularizer_of_its_weight_or_output(batch):
    kernel_reg, bias_reg, activity_reg = (
        keras.regularizers.L1L2(0.02, 0.03),
        keras.regularizers.L2(0.4),
        keras.regularizers.L1(0.05),
    )
    layer = keras.layers.Conv1DTranspose(
        3,
        4,
        strides=2,
        padding="same",
        activation="sigmoid",
        kernel_regularizer=kernel_reg,
        bias_regularizer=bias_reg,
        activity_regularizer=activity_reg,
    )
    x = np.random.default_rng(5).standard_normal((batch, 5, 2)).astype(np.float32)
    layer.build(x.shape)
    layer.bias.assign(np.array([0.5, -1.0, 2.0], np.float32))
    y = np.asarray(layer(x))
    # Objects of Keras itself are accepted too, read through their get_config.
    config = ct.Conv1DTransposeConfig(
        3,
        4,
        strides=2,
        padding="same",
        activation="sigmoid",
        kernel_regularizer=kernel_reg,
        bias_regularizer=bias_reg,
        activity_regularizer=activity_reg,
    )
    params = {"kernel": np.asarray(layer.kernel.value), "bias": np.asarray(layer.bias.value)}
    _, aux = ct.conv1d_transpose(params, x, config)
    assert float(aux["kernel"]) == pytest.approx(float(kernel_reg(params["kernel"])), rel=1e-6)
    assert float(aux["bias"]) == pytest.approx(float(bias_reg(params["bias"])), rel=1e-6)
    assert float(aux["activity"]) == pytest.approx(float(activity_reg(y)) / batch, rel=1e-5)


def test_an_empty_batch_has_zero_activity_term_as_keras_divide_no_nan():
    config = ct.Conv1DTransposeConfig(2, 3, activity_regularizer="l2")
    params = {"kernel": jnp.ones((3, 2, 1)), "bias": jnp.ones(2)}
    y, aux = ct.conv1d_transpose(params, jnp.ones((0, 4, 1)), config)
    assert y.shape == (0, 6, 2)
    assert float(aux["activity"]) == 0.0


def test_aux_is_the_same_under_jit_and_its_terms_are_float32_scalars():
    config = ct.Conv1DTransposeConfig(4, 3, kernel_regularizer="l1", bias_regularizer="l2", activity_regularizer="l2")
    params = {"kernel": jnp.full((3, 4, 2), 0.3), "bias": jnp.full(4, -0.2)}
    x = jnp.linspace(-1, 1, 20).reshape(2, 5, 2)
    eager = ct.conv1d_transpose(params, x, config)[1]
    jitted = jax.jit(ct.conv1d_transpose, static_argnums=2)(params, x, config)[1]
    for key in ("kernel", "bias", "activity"):
        assert eager[key].shape == () and eager[key].dtype == jnp.float32
        np.testing.assert_allclose(jitted[key], eager[key], rtol=1e-6)


@pytest.mark.parametrize("cls, field", [(regularizers.L1, "l1"), (regularizers.L2, "l2")])
def test_negative_or_non_numeric_factors_are_refused(cls, field):
    with pytest.raises(ValueError, match=f"{field} must be >= 0.0"):
        cls(-0.1)
    with pytest.raises(TypeError, match=f"{field} must be a number"):
        cls("0.1")


def test_regularizers_round_trip_through_keras():
    w = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    for regularizer in [regularizers.L1(0.2), regularizers.L2(0.3), regularizers.L1L2(0.1, 0.5)]:
        keras_object = keras.regularizers.get(regularizer.to_keras())
        assert float(keras_object(w)) == pytest.approx(float(regularizer(w)), rel=1e-6)
        back = regularizers.get(keras_object)  # Keras may store the factor rounded to float32
        assert type(back) is type(regularizer)
        assert float(back(w)) == pytest.approx(float(regularizer(w)), rel=1e-6)

"""Every Keras 3 activation name gives exactly Keras's function."""

import functools

import jax
import keras
import numpy as np
import pytest

import convtrans as ct
from convtrans import activations

# Even last axis (glu halves it); the points -1, -0.5, 0.5, 1 are the kinks of the piecewise ones,
# and the large magnitudes probe overflow and saturation (exp, softplus, log_sigmoid, selu, ...).
X = (
    np.concatenate(
        [
            np.linspace(-4, 4, 35),
            [-1.0, -0.5, 0.5, 1.0, 0.0],
            [-100.0, -30.0, -10.0, -3.0, 3.0, 10.0, 30.0, 100.0, -1e-3, 1e-3, 88.0, -88.0, 0.25, -0.25, 2.5, -2.5],
        ]
    )
    .astype(np.float32)
    .reshape(4, 14)
)


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_activation_equals_keras(name):
    expected = np.asarray(keras.activations.get(name)(X))
    np.testing.assert_allclose(np.asarray(activations.get(name)(X)), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_activation_equals_keras_under_jit(name):
    expected = np.asarray(jax.jit(keras.activations.get(name))(X))
    np.testing.assert_allclose(np.asarray(jax.jit(activations.get(name))(X)), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_kerass_own_activation_functions_are_stored_as_an_equivalent_name(name):
    stored = activations.validate(keras.activations.get(name))
    assert isinstance(stored, str)
    np.testing.assert_array_equal(np.asarray(activations.get(stored)(X)), np.asarray(activations.get(name)(X)))


def test_every_keras_activation_name_is_covered():
    from keras.src.activations import ALL_OBJECTS_DICT

    assert set(ALL_OBJECTS_DICT) - set(activations.ACTIVATIONS) == {"threshold"}


def test_threshold_needs_its_arguments_and_works_as_a_partial():
    with pytest.raises(ValueError, match=r"threshold.*default_value"):
        ct.Conv1DTransposeConfig(4, 3, activation="threshold")
    fn = functools.partial(activations.threshold, threshold=0.5, default_value=-1.0)
    expected = np.asarray(keras.activations.threshold(X, 0.5, -1.0))
    np.testing.assert_array_equal(np.asarray(fn(X)), expected)


def test_none_means_linear():
    assert ct.Conv1DTransposeConfig(4, 3, activation=None).activation == "linear"


def test_any_callable_is_applied_after_the_bias():
    config = ct.Conv1DTransposeConfig(2, 1, activation=lambda y: 2 * y)
    params = {"kernel": np.ones((1, 2, 1), np.float32), "bias": np.full(2, 0.5, np.float32)}
    y, _ = ct.conv1d_transpose(params, np.ones((1, 3, 1), np.float32), config)
    np.testing.assert_array_equal(np.asarray(y), np.full((1, 3, 2), 3.0))


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "sparsemax"])
def test_normalizing_activations_act_on_the_last_axis_even_for_channels_first(name):
    layer = keras.layers.Conv1DTranspose(3, 2, strides=2, activation=name, data_format="channels_first")
    x = np.random.default_rng(0).standard_normal((2, 4, 5)).astype(np.float32)
    expected = np.asarray(layer(x))
    config = ct.Conv1DTransposeConfig.from_keras(layer.get_config())
    y, _ = ct.conv1d_transpose(
        {"kernel": np.asarray(layer.kernel.value), "bias": np.asarray(layer.bias.value)}, x, config
    )
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-6, atol=1e-6)


def test_sparsemax_follows_keras_where_it_departs_from_the_textbook_projection():
    x = np.array([[0.5, 0.4, -1.0]], np.float32)
    np.testing.assert_allclose(np.asarray(activations.sparsemax(x)), [[0.3, 0.2, 0.0]], atol=1e-6)

"""Conv1DTransposeConfig: accepted forms, hashability, Keras config round trips."""

import json

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest

import convtrans as ct
from convtrans import constraints, initializers, regularizers


def test_defaults_follow_keras():
    config = ct.Conv1DTransposeConfig(filters=8, kernel_size=3)
    assert (config.strides, config.padding, config.output_padding) == (1, "valid", None)
    assert (config.data_format, config.dilation_rate, config.activation) == ("channels_last", 1, "linear")
    assert config.use_bias is True and config.groups == 1
    assert config.kernel_initializer == initializers.GlorotUniform()
    assert config.bias_initializer == initializers.Zeros()
    assert config.kernel_regularizer is config.bias_regularizer is config.activity_regularizer is None
    assert config.kernel_constraint is config.bias_constraint is None


def test_sizes_accept_an_int_or_a_one_element_tuple_or_list():
    a = ct.Conv1DTransposeConfig(4, (3,), strides=[2], dilation_rate=(1,), output_padding=(1,))
    b = ct.Conv1DTransposeConfig(4, 3, strides=2, dilation_rate=1, output_padding=1)
    assert a == b and hash(a) == hash(b)


@pytest.mark.parametrize("padding, stored", [("VALID", "valid"), ("Same", "same"), (2, (2, 2)), ((1, 3), (1, 3)), ([0, 2], (0, 2))])
def test_padding_accepts_keras_names_in_any_case_and_pytorch_integers(padding, stored):
    assert ct.Conv1DTransposeConfig(4, 3, padding=padding).padding == stored


def test_data_format_accepts_any_case():
    assert ct.Conv1DTransposeConfig(4, 3, data_format="Channels_First").data_format == "channels_first"


def test_objects_names_and_keras_dicts_are_stored_as_the_same_hashable_objects():
    by_name = ct.Conv1DTransposeConfig(
        4, 3, kernel_initializer="he_normal", kernel_regularizer="l2", kernel_constraint="max_norm"
    )
    by_dict = ct.Conv1DTransposeConfig(
        4, 3,
        kernel_initializer={"class_name": "HeNormal", "config": {"seed": None}},
        kernel_regularizer={"class_name": "L2", "config": {"l2": 0.01}},
        kernel_constraint={"class_name": "MaxNorm", "config": {"max_value": 2, "axis": 0}},
    )
    by_object = ct.Conv1DTransposeConfig(
        4, 3, kernel_initializer=initializers.HeNormal(), kernel_regularizer=regularizers.L2(0.01),
        kernel_constraint=constraints.MaxNorm(2.0, 0),
    )
    assert by_name == by_dict == by_object
    assert len({by_name, by_dict, by_object}) == 1


def test_a_config_is_a_static_argument_of_jit():
    calls = []

    def f(params, x, config):
        calls.append(config)
        return ct.conv1d_transpose(params, x, config)[0]

    jitted = jax.jit(f, static_argnums=2)
    params = {"kernel": jnp.ones((3, 4, 2)), "bias": jnp.zeros(4)}
    x = jnp.ones((1, 5, 2))
    jitted(params, x, ct.Conv1DTransposeConfig(4, 3, strides=2))
    jitted(params, x, ct.Conv1DTransposeConfig(4, (3,), strides=[2]))  # equal config: no retrace
    assert len(calls) == 1
    jitted(params, x, ct.Conv1DTransposeConfig(4, 3, strides=3))
    assert len(calls) == 2


def test_config_is_frozen():
    config = ct.Conv1DTransposeConfig(4, 3)
    with pytest.raises(AttributeError):
        config.filters = 5  # type: ignore[misc]


def test_replace_validates_again():
    config = ct.Conv1DTransposeConfig(4, 3, strides=2)
    assert config.replace(strides=3).strides == 3
    with pytest.raises(ValueError, match="output_padding"):
        config.replace(output_padding=2)


KERAS_LAYERS = [
    dict(filters=4, kernel_size=3),
    dict(filters=6, kernel_size=5, strides=3, padding="same", output_padding=1, data_format="channels_first",
         activation="relu", use_bias=False),
    dict(filters=2, kernel_size=(4,), dilation_rate=2, kernel_initializer="he_uniform",
         bias_initializer="ones", kernel_regularizer="l1", bias_regularizer="l2",
         activity_regularizer=keras.regularizers.L1L2(l1=0.1, l2=0.2)),
    dict(filters=3, kernel_size=2, strides=2, kernel_constraint=keras.constraints.MinMaxNorm(0.5, 1.5, 0.7, axis=[0, 1]),
         bias_constraint="non_neg", kernel_initializer=keras.initializers.VarianceScaling(2.0, "fan_out", "uniform"),
         bias_initializer=keras.initializers.Constant(0.3)),
    dict(filters=3, kernel_size=7, strides=4, padding="valid", output_padding=3, activation="gelu",
         kernel_initializer=keras.initializers.RandomNormal(0.1, 0.2), kernel_constraint="unit_norm"),
]


def _keras_outputs(layer, x):
    layer.build(x.shape)
    return np.asarray(layer(x))


@pytest.mark.parametrize("kwargs", KERAS_LAYERS)
@pytest.mark.parametrize("through_json", [False, True])
def test_from_keras_then_to_keras_builds_an_identical_layer(kwargs, through_json):
    layer = keras.layers.Conv1DTranspose(**kwargs)
    keras_config = layer.get_config()
    if through_json:
        keras_config = json.loads(json.dumps(keras_config))
    config = ct.Conv1DTransposeConfig.from_keras(keras_config)
    rebuilt = keras.layers.Conv1DTranspose.from_config(config.to_keras())
    original = {k: v for k, v in layer.get_config().items() if k != "name"}
    assert {k: v for k, v in rebuilt.get_config().items() if k != "name"} == original

    x = np.random.default_rng(0).standard_normal(
        (2, 7, 3) if layer.data_format == "channels_last" else (2, 3, 7)).astype(np.float32)
    _keras_outputs(layer, x)
    rebuilt.build(x.shape)
    rebuilt.set_weights(layer.get_weights())
    np.testing.assert_array_equal(np.asarray(rebuilt(x)), np.asarray(layer(x)))
    assert ct.Conv1DTransposeConfig.from_keras(config.to_keras()) == config


def test_from_keras_accepts_a_tf2_style_config():
    tf2 = {
        "name": "conv1d_transpose", "trainable": True, "dtype": "float32", "filters": 8,
        "kernel_size": [3], "strides": [2], "padding": "same", "output_padding": None,
        "data_format": "channels_last", "dilation_rate": [1], "groups": 1, "activation": "relu",
        "use_bias": True,
        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "bias_initializer": {"class_name": "Zeros", "config": {}},
        "kernel_regularizer": {"class_name": "L2", "config": {"l2": 0.009999999776482582}},
        "bias_regularizer": None, "activity_regularizer": None,
        "kernel_constraint": {"class_name": "MaxNorm", "config": {"max_value": 2, "axis": 0}},
        "bias_constraint": None,
    }
    config = ct.Conv1DTransposeConfig.from_keras(tf2)
    assert (config.filters, config.kernel_size, config.strides, config.padding) == (8, 3, 2, "same")
    assert config.kernel_regularizer == regularizers.L2(0.009999999776482582)
    assert config.kernel_constraint == constraints.MaxNorm(2.0, 0)
    assert config.activation == "relu"


def test_to_keras_refuses_what_keras_cannot_express():
    with pytest.raises(ValueError, match="groups"):
        ct.Conv1DTransposeConfig(4, 3, groups=2).to_keras()
    with pytest.raises(ValueError, match="padding"):
        ct.Conv1DTransposeConfig(4, 3, padding=1).to_keras()
    with pytest.raises(ValueError, match="activation"):
        ct.Conv1DTransposeConfig(4, 3, activation=jnp.tanh).to_keras()
    with pytest.raises(ValueError, match="kernel_initializer"):
        ct.Conv1DTransposeConfig(4, 3, kernel_initializer=jax.nn.initializers.zeros).to_keras()


def test_from_keras_rejects_keys_keras_does_not_have():
    with pytest.raises(ValueError, match="filterz"):
        ct.Conv1DTransposeConfig.from_keras({"filters": 2, "kernel_size": 3, "filterz": 1})

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


@pytest.mark.parametrize(
    "padding, stored", [("VALID", "valid"), ("Same", "same"), (2, (2, 2)), ((1, 3), (1, 3)), ([0, 2], (0, 2))]
)
def test_padding_accepts_keras_names_in_any_case_and_pytorch_integers(padding, stored):
    assert ct.Conv1DTransposeConfig(4, 3, padding=padding).padding == stored


def test_data_format_accepts_any_case():
    assert ct.Conv1DTransposeConfig(4, 3, data_format="Channels_First").data_format == "channels_first"


def test_objects_names_and_keras_dicts_are_stored_as_the_same_hashable_objects():
    by_name = ct.Conv1DTransposeConfig(
        4, 3, kernel_initializer="he_normal", kernel_regularizer="l2", kernel_constraint="max_norm"
    )
    by_dict = ct.Conv1DTransposeConfig(
        4,
        3,
        kernel_initializer={"class_name": "HeNormal", "config": {"seed": None}},
        kernel_regularizer={"class_name": "L2", "config": {"l2": 0.01}},
        kernel_constraint={"class_name": "MaxNorm", "config": {"max_value": 2, "axis": 0}},
    )
    by_object = ct.Conv1DTransposeConfig(
        4,
        3,
        kernel_initializer=initializers.HeNormal(),
        kernel_regularizer=regularizers.L2(0.01),
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
    dict(
        filters=6,
        kernel_size=5,
        strides=3,
        padding="same",
        output_padding=1,
        data_format="channels_first",
        activation="relu",
        use_bias=False,
    ),
    dict(
        filters=2,
        kernel_size=(4,),
        dilation_rate=2,
        kernel_initializer="he_uniform",
        bias_initializer="ones",
        kernel_regularizer="l1",
        bias_regularizer="l2",
        activity_regularizer=keras.regularizers.L1L2(l1=0.1, l2=0.2),
    ),
    dict(
        filters=3,
        kernel_size=2,
        strides=2,
        kernel_constraint=keras.constraints.MinMaxNorm(0.5, 1.5, 0.7, axis=[0, 1]),
        bias_constraint="non_neg",
        kernel_initializer=keras.initializers.VarianceScaling(2.0, "fan_out", "uniform"),
        bias_initializer=keras.initializers.Constant(0.3),
    ),
    dict(
        filters=3,
        kernel_size=7,
        strides=4,
        padding="valid",
        output_padding=3,
        activation="gelu",
        kernel_initializer=keras.initializers.RandomNormal(0.1, 0.2),
        kernel_constraint="unit_norm",
    ),
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

    x = (
        np.random.default_rng(0)
        .standard_normal((2, 7, 3) if layer.data_format == "channels_last" else (2, 3, 7))
        .astype(np.float32)
    )
    _keras_outputs(layer, x)
    rebuilt.build(x.shape)
    rebuilt.set_weights(layer.get_weights())
    np.testing.assert_array_equal(np.asarray(rebuilt(x)), np.asarray(layer(x)))
    assert ct.Conv1DTransposeConfig.from_keras(config.to_keras()) == config


def test_from_keras_accepts_a_tf2_style_config():
    tf2 = {
        "name": "conv1d_transpose",
        "trainable": True,
        "dtype": "float32",
        "filters": 8,
        "kernel_size": [3],
        "strides": [2],
        "padding": "same",
        "output_padding": None,
        "data_format": "channels_last",
        "dilation_rate": [1],
        "groups": 1,
        "activation": "relu",
        "use_bias": True,
        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "bias_initializer": {"class_name": "Zeros", "config": {}},
        "kernel_regularizer": {"class_name": "L2", "config": {"l2": 0.009999999776482582}},
        "bias_regularizer": None,
        "activity_regularizer": None,
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


def test_keras_objects_are_read_through_their_config():
    from_keras_objects = ct.Conv1DTransposeConfig(
        4,
        3,
        kernel_initializer=keras.initializers.HeNormal(),
        bias_initializer=keras.initializers.Constant(0.5),
        kernel_regularizer=keras.regularizers.L2(0.01),
        activity_regularizer=keras.regularizers.L1L2(l1=0.25, l2=0.5),
        kernel_constraint=keras.constraints.MaxNorm(2.0, axis=0),
        bias_constraint=keras.constraints.NonNeg(),
    )
    by_name = ct.Conv1DTransposeConfig(
        4,
        3,
        kernel_initializer="he_normal",
        bias_initializer=initializers.Constant(0.5),
        kernel_regularizer="l2",
        activity_regularizer=regularizers.L1L2(0.25, 0.5),
        kernel_constraint="max_norm",
        bias_constraint="non_neg",
    )
    assert from_keras_objects == by_name and hash(from_keras_objects) == hash(by_name)


def test_keras_activation_functions_are_stored_by_name_and_serialize():
    config = ct.Conv1DTransposeConfig(4, 3, activation=keras.activations.gelu)
    assert config.activation == "gelu"
    assert config.to_keras()["activation"] == "gelu"
    assert ct.Conv1DTransposeConfig(4, 3, activation=keras.activations.get("swish")).activation == "silu"


def test_numpy_integers_and_bools_are_stored_as_python_values():
    config = ct.Conv1DTransposeConfig(
        np.int64(4),
        np.int32(3),
        strides=np.int64(2),
        output_padding=np.int8(1),
        dilation_rate=np.uint8(1),
        groups=np.int16(2),
        padding=(np.int64(1), 2),
        use_bias=np.bool_(False),
    )
    plain = ct.Conv1DTransposeConfig(4, 3, strides=2, output_padding=1, groups=2, padding=(1, 2), use_bias=False)
    assert config == plain and hash(config) == hash(plain)
    assert all(
        type(v) is int
        for v in (
            config.filters,
            config.kernel_size,
            config.strides,
            config.output_padding,
            config.dilation_rate,
            config.groups,
            *config.padding,
        )
    )
    assert config.use_bias is False


@pytest.mark.parametrize(
    "field, forms",
    [
        ("bias_initializer", ["ones", "Ones", {"class_name": "Ones", "config": {}}, initializers.Ones()]),
        ("bias_regularizer", ["l1", {"class_name": "L1", "config": {"l1": 0.01}}, regularizers.L1(0.01)]),
        (
            "activity_regularizer",
            [
                "l2",
                {"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.01}, "registered_name": None},
                regularizers.L2(),
            ],
        ),
        (
            "bias_constraint",
            ["unit_norm", "UnitNorm", {"class_name": "UnitNorm", "config": {"axis": 0}}, constraints.UnitNorm()],
        ),
    ],
)
def test_every_object_field_accepts_names_dicts_and_objects(field, forms):
    configs = {ct.Conv1DTransposeConfig(4, 3, **{field: form}) for form in forms}
    assert len(configs) == 1


def test_to_keras_is_json_serializable_and_reads_back_equal():
    config = ct.Conv1DTransposeConfig(
        4,
        5,
        strides=3,
        padding="same",
        output_padding=2,
        activation="selu",
        kernel_regularizer="l1",
        activity_regularizer=regularizers.L2(0.3),
        kernel_constraint=constraints.MinMaxNorm(0.1, 0.9, 0.5, [0, 1]),
    )
    text = json.dumps(config.to_keras())
    assert ct.Conv1DTransposeConfig.from_keras(json.loads(text)) == config


@pytest.mark.parametrize("tf_groups", [1, 2])
def test_tf2_groups_key_is_ignored_as_tf_does(tf_groups):
    tf2 = {"name": "t", "trainable": True, "dtype": "float32", "filters": 4, "kernel_size": [3], "groups": tf_groups}
    assert ct.Conv1DTransposeConfig.from_keras(tf2).groups == 1


def test_a_tf2_config_and_the_keras_layer_it_becomes_compute_the_same_outputs():
    tf2 = {
        "name": "up",
        "trainable": True,
        "dtype": "float32",
        "batch_input_shape": [None, None, 3],
        "filters": 5,
        "kernel_size": [4],
        "strides": [3],
        "padding": "valid",
        "output_padding": [2],
        "data_format": "channels_first",
        "dilation_rate": [1],
        "groups": 1,
        "activation": "tanh",
        "use_bias": True,
        "kernel_initializer": {
            "class_name": "VarianceScaling",
            "config": {"scale": 2.0, "mode": "fan_in", "distribution": "truncated_normal", "seed": None},
        },
        "bias_initializer": {"class_name": "Zeros", "config": {}},
        "kernel_regularizer": {"class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.009999999776482582}},
        "bias_regularizer": None,
        "activity_regularizer": {"class_name": "L1", "config": {"l1": 0.01}},
        "kernel_constraint": None,
        "bias_constraint": None,
    }
    config = ct.Conv1DTransposeConfig.from_keras(json.loads(json.dumps(tf2)))
    layer = keras.layers.Conv1DTranspose.from_config(config.to_keras())
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 6)).astype(np.float32)
    params = {
        "kernel": rng.standard_normal((4, 5, 3)).astype(np.float32),
        "bias": rng.standard_normal(5).astype(np.float32),
    }
    layer.build(x.shape)
    layer.set_weights([params["kernel"], params["bias"]])
    y, aux = ct.conv1d_transpose(params, x, config, implementation="lhs_dilation")
    assert y.shape == (2, 5, (6 - 1) * 3 + 4 + 2)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(layer(x)))
    assert float(sum(aux.values())) == pytest.approx(float(sum(np.asarray(v) for v in layer.losses)), rel=1e-6)

"""The errors issue 2 lists: each names the argument, the value given and what was expected."""

import re

import jax.numpy as jnp
import numpy as np
import pytest

import convtrans as ct


def config(**kwargs):
    kwargs.setdefault("filters", 4)
    kwargs.setdefault("kernel_size", 3)
    return ct.Conv1DTransposeConfig(**kwargs)


@pytest.mark.parametrize("padding", ["causal", "CAUSAL", "full", "circular", ""])
def test_unknown_padding_is_a_value_error_naming_it(padding):
    with pytest.raises(ValueError, match=f"padding={padding!r}.*'valid' or 'same'"):
        config(padding=padding)


def test_negative_integer_padding_is_a_value_error():
    with pytest.raises(ValueError, match=r"padding.*>= 0, got -1"):
        config(padding=-1)


def test_stride_with_dilation_is_a_value_error_for_keras_paddings():
    with pytest.raises(ValueError, match="strides=2 and dilation_rate=2"):
        config(strides=2, dilation_rate=2, padding="same")


@pytest.mark.parametrize("strides, output_padding", [(1, 1), (2, 2), (3, 5)])
def test_output_padding_not_below_strides_is_a_value_error(strides, output_padding):
    with pytest.raises(ValueError, match=f"output_padding={output_padding} must be smaller than strides={strides}"):
        config(strides=strides, output_padding=output_padding)


def test_negative_output_padding_is_a_value_error():
    with pytest.raises(ValueError, match="output_padding must be an integer >= 0, got -1"):
        config(strides=2, output_padding=-1)


@pytest.mark.parametrize("field", ["filters", "kernel_size", "strides", "dilation_rate", "groups"])
@pytest.mark.parametrize("value", [0, -2])
def test_non_positive_sizes_are_value_errors(field, value):
    with pytest.raises(ValueError, match=f"{field} must be an integer >= 1, got {value}"):
        config(**{field: value})


@pytest.mark.parametrize("field", ["filters", "kernel_size", "strides", "dilation_rate", "groups"])
@pytest.mark.parametrize("value", [2.0, "3", True, None])
def test_non_integer_sizes_are_type_errors(field, value):
    with pytest.raises(TypeError, match=f"{field} must be an integer, got {value!r}"):
        config(**{field: value})


def test_groups_must_divide_filters():
    with pytest.raises(ValueError, match="groups=3 must divide filters=4"):
        config(groups=3)


def test_groups_must_divide_the_input_channels():
    cfg = config(groups=2)
    with pytest.raises(ValueError, match="groups=2 must divide the input's 3 channels"):
        ct.conv1d_transpose({"kernel": jnp.ones((3, 2, 3)), "bias": jnp.zeros(4)}, jnp.ones((1, 5, 3)), cfg)


@pytest.mark.parametrize("data_format", ["NWC", "channels_middle", None])
def test_unknown_data_format_is_a_value_error(data_format):
    with pytest.raises(ValueError, match=f"data_format={data_format!r}.*'channels_last'"):
        config(data_format=data_format)


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("activation", "relu7", "activation='relu7' is not a Keras activation"),
        ("kernel_initializer", "glorot", "kernel_initializer='glorot' is not a known initializer"),
        ("bias_initializer", {"class_name": "Fancy", "config": {}}, "class_name='Fancy'"),
        ("kernel_regularizer", "l3", "kernel_regularizer='l3' is not a known regularizer"),
        ("activity_regularizer", {"class_name": "L7"}, "class_name='L7'"),
        ("kernel_constraint", "max", "kernel_constraint='max' is not a known constraint"),
        ("bias_constraint", {"class_name": "Positive", "config": {}}, "class_name='Positive'"),
    ],
)
def test_unknown_names_are_value_errors_naming_the_argument(field, value, fragment):
    with pytest.raises(ValueError, match=fragment):
        config(**{field: value})


@pytest.mark.parametrize("field", ["activation", "kernel_regularizer", "kernel_constraint", "kernel_initializer"])
def test_objects_of_the_wrong_kind_are_type_errors(field):
    with pytest.raises(TypeError, match=field):
        config(**{field: 3.5})


PARAMS = {"kernel": jnp.ones((3, 4, 2)), "bias": jnp.zeros(4)}


@pytest.mark.parametrize("shape", [(2,), ()])
def test_input_of_rank_below_2_is_a_value_error(shape):
    with pytest.raises(ValueError, match=f"x must have rank >= 2.*got shape {re.escape(str(shape))}"):
        ct.conv1d_transpose(PARAMS, jnp.ones(shape), config())


def test_input_channels_must_match_the_kernel():
    with pytest.raises(
        ValueError, match=r"must have shape \(3, 4, 5\).*got \(3, 4, 2\).*built for 2 input channels, but x has 5"
    ):
        ct.conv1d_transpose(PARAMS, jnp.ones((1, 6, 5)), config())


def test_channels_first_takes_channels_from_axis_1():
    with pytest.raises(ValueError, match="x has 6"):
        ct.conv1d_transpose(PARAMS, jnp.ones((1, 6, 2)), config(data_format="channels_first"))


@pytest.mark.parametrize(
    "params, fragment",
    [
        ({"bias": jnp.zeros(4)}, "params lacks 'kernel'"),
        ({"kernel": jnp.ones((3, 4, 2))}, "params lacks 'bias'"),
        ({"kernel": jnp.ones((3, 2, 4)), "bias": jnp.zeros(4)}, r"params\['kernel'\] must have shape \(3, 4, 2\)"),
        ({"kernel": jnp.ones((3, 4, 2)), "bias": jnp.zeros(3)}, r"params\['bias'\] must have shape \(4,\), got \(3,\)"),
        ({"kernel": jnp.ones((4, 2)), "bias": jnp.zeros(4)}, r"params\['kernel'\] must have shape"),
    ],
)
def test_missing_or_misshapen_parameters_are_value_errors(params, fragment):
    with pytest.raises(ValueError, match=fragment):
        ct.conv1d_transpose(params, jnp.ones((1, 5, 2)), config())


def test_a_bias_without_use_bias_is_a_value_error():
    with pytest.raises(ValueError, match="use_bias is False"):
        ct.conv1d_transpose(PARAMS, jnp.ones((1, 5, 2)), config(use_bias=False))


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_, jnp.uint8, jnp.complex64])
def test_non_floating_input_is_a_type_error(dtype):
    with pytest.raises(TypeError, match=f"floating dtype.*got {np.dtype(dtype)}"):
        ct.conv1d_transpose(PARAMS, jnp.ones((1, 5, 2), dtype), config())


def test_padding_that_crops_everything_is_a_value_error():
    with pytest.raises(ValueError, match="crops more than the full output holds"):
        ct.conv1d_transpose(PARAMS, jnp.ones((1, 1, 2)), config(padding=(2, 2)))


def test_stride_with_dilation_is_allowed_with_pytorch_padding():
    assert config(strides=2, dilation_rate=2, padding=1).padding == (1, 1)


def test_output_padding_with_pytorch_padding_follows_pytorchs_rule():
    assert config(strides=2, dilation_rate=3, padding=0, output_padding=2).output_padding == 2
    with pytest.raises(ValueError, match=r"output_padding=3 must be smaller than max\(strides, dilation_rate\)=3"):
        config(strides=2, dilation_rate=3, padding=0, output_padding=3)


@pytest.mark.parametrize("value", [1.5, "1", True])
def test_non_integer_output_padding_is_a_type_error(value):
    with pytest.raises(TypeError, match=f"output_padding must be an integer, got {re.escape(repr(value))}"):
        config(strides=2, output_padding=value)


@pytest.mark.parametrize("field", ["kernel_size", "strides", "dilation_rate"])
def test_sizes_with_more_than_one_element_are_value_errors(field):
    with pytest.raises(ValueError, match=re.escape(f"{field}=(2, 2)") + ".*1-element"):
        config(**{field: (2, 2)})


@pytest.mark.parametrize(
    "padding, error, fragment",
    [
        ((1, 2, 3), ValueError, r"padding=\(1, 2, 3\): expected a pair"),
        ((1, -1), ValueError, r"padding\[1\] must be an integer >= 0, got -1"),
        (1.5, TypeError, "padding must be 'valid', 'same', a non-negative int or a pair.*got 1.5"),
        (None, TypeError, "padding must be.*got None"),
    ],
)
def test_malformed_integer_padding_is_refused(padding, error, fragment):
    with pytest.raises(error, match=fragment):
        config(padding=padding)


def test_causal_padding_explains_the_alternative():
    with pytest.raises(ValueError, match="does not support causal padding"):
        config(padding="causal")


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_use_bias_must_be_a_bool(value):
    with pytest.raises(TypeError, match=f"use_bias must be a bool, got {re.escape(repr(value))}"):
        config(use_bias=value)


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        (
            "kernel_regularizer",
            {"class_name": "L2", "config": {"l2": -1}},
            r"kernel_regularizer: bad config.*l2 must be >= 0",
        ),
        (
            "bias_regularizer",
            {"class_name": "L1", "config": {"l3": 1}},
            r"bias_regularizer: bad config \{'l3': 1\} for L1",
        ),
        ("kernel_regularizer", {"config": {}}, "kernel_regularizer=.*is not a Keras regularizer dict"),
        ("kernel_regularizer", "orthogonal_regularizer", "OrthogonalRegularizer needs a rank-2 weight"),
        ("kernel_initializer", None, "kernel_initializer must be an initializer, got None"),
        ("activation", "threshold", "threshold.*default_value"),
    ],
)
def test_bad_object_configs_name_the_argument(field, value, fragment):
    with pytest.raises((ValueError, TypeError), match=fragment):
        config(**{field: value})


@pytest.mark.parametrize(
    "keras_config, error, fragment",
    [
        ([("filters", 2)], TypeError, "config must be a dict from layer.get_config"),
        ({"filters": 2}, ValueError, r"lacks the required keys \['kernel_size'\]"),
        ({"filters": 2, "kernel_size": 3, "padding": "causal"}, ValueError, "padding='causal'"),
    ],
)
def test_from_keras_errors(keras_config, error, fragment):
    with pytest.raises(error, match=fragment):
        ct.Conv1DTransposeConfig.from_keras(keras_config)


def test_non_floating_parameters_are_type_errors():
    with pytest.raises(TypeError, match=r"params\['kernel'\] must be floating, got dtype int32"):
        ct.conv1d_transpose(
            {"kernel": jnp.ones((3, 4, 2), jnp.int32), "bias": jnp.zeros(4)}, jnp.ones((1, 5, 2)), config()
        )
    with pytest.raises(TypeError, match=r"params\['bias'\] must be floating, got dtype int32"):
        ct.conv1d_transpose(
            {"kernel": jnp.ones((3, 4, 2)), "bias": jnp.zeros(4, jnp.int32)}, jnp.ones((1, 5, 2)), config()
        )


@pytest.mark.parametrize(
    "params, x, cfg, error, fragment",
    [
        ([1], jnp.ones((1, 5, 2)), config(), TypeError, "params must be a mapping"),
        (PARAMS, [[1.0]], config(), TypeError, "x must be an array, got list"),
        (PARAMS, jnp.ones((1, 5, 2)), {"filters": 4}, TypeError, "config must be a Conv1DTransposeConfig, got dict"),
        ({**PARAMS, "gamma": jnp.ones(1)}, jnp.ones((1, 5, 2)), config(), ValueError, r"unknown keys \['gamma'\]"),
        (PARAMS, jnp.ones((1, 0, 2)), config(), ValueError, "input length must be a positive integer, got 0"),
    ],
)
def test_call_time_argument_errors(params, x, cfg, error, fragment):
    with pytest.raises(error, match=fragment):
        ct.conv1d_transpose(params, x, cfg)


def test_unknown_implementation_is_a_value_error():
    with pytest.raises(ValueError, match="implementation='nope' is unknown; expected one of"):
        ct.conv1d_transpose(PARAMS, jnp.ones((1, 5, 2)), config(), implementation="nope")


def test_errors_are_raised_at_trace_time_under_jit():
    import jax

    with pytest.raises(ValueError, match="x must have rank >= 2"):
        jax.jit(ct.conv1d_transpose, static_argnums=2)(PARAMS, jnp.ones((2,)), config())

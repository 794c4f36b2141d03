"""Keras 3's ``Conv1DTranspose`` (JAX backend) as the oracle, over a generated grid.

The grid: kernel 1-9, stride 1-5, dilation 1-3 at stride 1, valid/same, output_padding None and
every legal value, both data formats, bias on/off and a rotation of activations. The
``lhs_dilation`` reference must reproduce Keras bit for bit (it is the same computation); every
other registered implementation must agree to float32 rounding.
"""

import itertools

import keras
import numpy as np
import pytest

import convtrans as ct

ACTIVATIONS = ["linear", "relu", "tanh", "gelu", "leaky_relu", "hard_sigmoid", "selu", "softmax", "sigmoid", "glu"]
DATA_FORMATS = ["channels_last", "channels_first"]
IN_CHANNELS, BATCH, STEPS = 3, 2, 6


def _grid(kernel_size):
    cases = []
    for strides in range(1, 6):
        for dilation in ([1, 2, 3] if strides == 1 else [1]):
            for padding, output_padding, data_format in itertools.product(
                ["valid", "same"], [None, *range(strides)], DATA_FORMATS
            ):
                cases.append((strides, dilation, padding, output_padding, data_format))
    return cases


def _keras_layer(kernel_size, strides, dilation, padding, output_padding, data_format, activation, use_bias, rng):
    layer = keras.layers.Conv1DTranspose(
        filters=4, kernel_size=kernel_size, strides=strides, padding=padding,
        output_padding=output_padding, data_format=data_format, dilation_rate=dilation,
        activation=activation, use_bias=use_bias,
    )
    shape = (BATCH, STEPS, IN_CHANNELS) if data_format == "channels_last" else (BATCH, IN_CHANNELS, STEPS)
    layer.build(shape)
    if use_bias:
        layer.bias.assign(rng.standard_normal(layer.bias.shape).astype(np.float32))
    return layer, rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("kernel_size", range(1, 10))
def test_every_implementation_matches_keras_over_the_grid(kernel_size):
    rng = np.random.default_rng(kernel_size)
    for index, (strides, dilation, padding, output_padding, data_format) in enumerate(_grid(kernel_size)):
        activation = ACTIVATIONS[index % len(ACTIVATIONS)]
        if activation == "glu" and data_format == "channels_first":
            activation = "silu"  # glu halves the last axis, here the (odd-length) time axis
        use_bias = index % 3 != 2
        layer, x = _keras_layer(kernel_size, strides, dilation, padding, output_padding, data_format,
                                activation, use_bias, rng)
        expected = np.asarray(layer(x))
        config = ct.Conv1DTransposeConfig.from_keras(layer.get_config())
        params = {w.path.split("/")[-1]: np.asarray(w.value) for w in layer.weights}
        where = f"k={kernel_size} s={strides} d={dilation} {padding} op={output_padding} {data_format} {activation} bias={use_bias}"
        for name in ct.IMPLEMENTATIONS:
            y, _ = ct.conv1d_transpose(params, x, config, implementation=name)
            assert y.shape == expected.shape, where
            if name == "lhs_dilation":
                np.testing.assert_array_equal(np.asarray(y), expected, err_msg=where)
            else:
                np.testing.assert_allclose(np.asarray(y), expected, rtol=2e-5, atol=2e-5, err_msg=f"{name}: {where}")


def test_output_length_matches_keras_compute_output_shape():
    for k, s, n, padding in itertools.product(range(1, 8), range(1, 5), [1, 2, 7], ["valid", "same"]):
        for op in [None, *range(s)]:
            layer = keras.layers.Conv1DTranspose(2, k, strides=s, padding=padding, output_padding=op)
            expected = layer.compute_output_shape((1, n, 3))[1]
            config = ct.Conv1DTransposeConfig(2, k, strides=s, padding=padding, output_padding=op)
            assert ct.output_length(config, n) == expected, (k, s, n, padding, op)


def test_a_zero_length_result_is_an_empty_axis_as_in_keras():
    layer = keras.layers.Conv1DTranspose(3, 2, strides=1, padding="same", output_padding=0)
    x = np.ones((2, 1, 4), np.float32)
    expected = np.asarray(layer(x))
    config = ct.Conv1DTransposeConfig.from_keras(layer.get_config())
    params = {"kernel": np.asarray(layer.kernel.value), "bias": np.asarray(layer.bias.value)}
    for name in ct.IMPLEMENTATIONS:
        y, aux = ct.conv1d_transpose(params, x, config, implementation=name)
        assert y.shape == expected.shape == (2, 0, 3)

"""Keras 3's ``Conv1DTranspose`` (JAX backend) as the oracle, over a generated grid.

The grid: kernel 1-9, stride 1-5, dilation 1-3 at stride 1, valid/same, output_padding None and
every legal value (432 geometries), each in one of the two data formats (alternating, so every
geometry meets both across kernel sizes), bias on/off and a rotation of activations. The
``lhs_dilation`` reference must reproduce Keras bit for bit (it is the same computation); every
other registered implementation must agree to float32 rounding (on an alternating half of the grid:
they are also checked against the NumPy reference and by the property tests).

Cost: XLA compiles dominate, so each kernel size's layers run in one jitted Keras call
(``stateless_call``, what ``model.predict`` runs) and one jitted call of ours with the configs as
a static argument. A smaller set also checks eager Keras, op by op, against eager convtrans.
"""

import functools
import itertools

import jax
import keras
import numpy as np
import pytest

import convtrans as ct

ACTIVATIONS = ["linear", "relu", "tanh", "gelu", "leaky_relu", "hard_sigmoid", "selu", "softmax", "sigmoid", "glu"]
DATA_FORMATS = ["channels_last", "channels_first"]
IN_CHANNELS, BATCH, STEPS = 3, 2, 6


def _grid(kernel_size):
    """(strides, dilation, padding, output_padding, data_format) for one kernel size: 48 cases.

    Every geometry (strides, dilation, padding, output_padding) appears once per kernel size; the
    data format, a pure change of layout, alternates along the list and with the kernel size, so
    each geometry meets both formats across the kernel sizes.
    """
    cases = []
    for strides in range(1, 6):
        for dilation in [1, 2, 3] if strides == 1 else [1]:
            for padding, output_padding in itertools.product(["valid", "same"], [None, *range(strides)]):
                data_format = DATA_FORMATS[(len(cases) + kernel_size) % 2]
                cases.append((strides, dilation, padding, output_padding, data_format))
    return cases


def _keras_layer(
    rng,
    *,
    kernel_size,
    strides=1,
    dilation=1,
    padding="valid",
    output_padding=None,
    data_format="channels_last",
    activation=None,
    use_bias=True,
    **kwargs,
):
    """A built Keras layer with a random bias (Keras starts it at zero), and an input for it."""
    layer = keras.layers.Conv1DTranspose(
        filters=4,
        kernel_size=kernel_size,
        strides=strides,
        padding=padding,
        output_padding=output_padding,
        data_format=data_format,
        dilation_rate=dilation,
        activation=activation,
        use_bias=use_bias,
        **kwargs,
    )
    shape = (BATCH, STEPS, IN_CHANNELS) if data_format == "channels_last" else (BATCH, IN_CHANNELS, STEPS)
    layer.build(shape)
    if use_bias:
        layer.bias.assign(rng.standard_normal(layer.bias.shape).astype(np.float32))
    return layer, rng.standard_normal(shape).astype(np.float32)


def _params(layer):
    return {w.path.split("/")[-1]: np.asarray(w.value) for w in layer.weights}


class _Layers(tuple):
    """Keras layers as a static argument of jit: hashed and compared by identity."""

    __hash__ = object.__hash__

    def __eq__(self, other):
        return self is other


# XLA's default LLVM optimization level, which the test suite lowers (conftest): Keras's layers
# and ours are compiled into one program, whose two halves XLA fuses differently, and at level 0
# they round a few elements differently (tanh outputs 1-2 ulp apart, measured).
DEFAULT_OPTIMIZATION = {"xla_backend_optimization_level": 3}


@functools.partial(jax.jit, static_argnums=(0, 1, 2), compiler_options=DEFAULT_OPTIMIZATION)
def _keras_and_ours(layers, configs, subsets, variables, params, xs):
    """Keras's output of every layer and ours by ``lhs_dilation``, then ours by each other
    implementation on its subset of the layers (``subsets``: ``(name, indices)`` pairs), all in one
    program: one compile per kernel size."""
    keras_ys = [layer.stateless_call(v, [], x)[0] for layer, v, x in zip(layers, variables, xs)]

    def ours(name, indices):
        return [ct.conv1d_transpose(params[i], xs[i], configs[i], implementation=name)[0] for i in indices]

    return keras_ys, ours("lhs_dilation", range(len(layers))), {name: ours(name, indices) for name, indices in subsets}


@pytest.mark.parametrize("kernel_size", range(1, 10))
def test_reference_is_bit_exact_with_keras_and_every_implementation_agrees(kernel_size):
    rng = np.random.default_rng(kernel_size)
    layers, xs, labels = [], [], []
    for index, (strides, dilation, padding, output_padding, data_format) in enumerate(_grid(kernel_size)):
        activation = ACTIVATIONS[index % len(ACTIVATIONS)]
        if activation == "glu" and data_format == "channels_first":
            activation = "silu"  # glu halves the last axis, here the (odd-length) time axis
        use_bias = index % 3 != 2
        layer, x = _keras_layer(
            rng,
            kernel_size=kernel_size,
            strides=strides,
            dilation=dilation,
            padding=padding,
            output_padding=output_padding,
            data_format=data_format,
            activation=activation,
            use_bias=use_bias,
        )
        layers.append(layer)
        xs.append(x)
        labels.append(
            f"k={kernel_size} s={strides} d={dilation} {padding} op={output_padding} {data_format} "
            f"{activation} bias={use_bias}"
        )
    configs = tuple(ct.Conv1DTransposeConfig.from_keras(layer.get_config()) for layer in layers)
    # The other implementations: a quarter of the cases per kernel size, in consecutive pairs (so
    # both data formats) rotating with it, so every geometry meets two or three kernel sizes (the
    # implementations are compared with the reference over wider grids in test_polyphase.py).
    subset = tuple(i for i in range(len(layers)) if (i // 2) % 4 == kernel_size % 4)
    others = tuple((name, subset) for name in sorted(set(ct.IMPLEMENTATIONS) - {"lhs_dilation"}))
    expected, reference, ours = _keras_and_ours(
        _Layers(layers),
        configs,
        others,
        [[v.value for v in layer.trainable_variables] for layer in layers],
        [_params(layer) for layer in layers],
        xs,
    )
    for y, want, label in zip(reference, expected, labels):
        assert y.shape == want.shape, label
        np.testing.assert_array_equal(np.asarray(y), np.asarray(want), err_msg=label)
    assert sorted(ours) == sorted(set(ct.IMPLEMENTATIONS) - {"lhs_dilation"})
    for name, ys in ours.items():
        for i, y in zip(subset, ys, strict=True):
            assert y.shape == expected[i].shape, labels[i]
            np.testing.assert_allclose(
                np.asarray(y), np.asarray(expected[i]), rtol=2e-5, atol=2e-5, err_msg=f"{name}: {labels[i]}"
            )


EAGER_CASES = [
    dict(kernel_size=k, strides=s, padding=p, output_padding=op, data_format=f, activation=a, use_bias=b)
    for (k, s, p, op, f, a, b) in [
        (1, 1, "valid", None, "channels_last", "linear", True),
        (2, 1, "same", 0, "channels_first", "relu", True),
        (3, 2, "same", None, "channels_last", "gelu", False),
        (4, 3, "valid", 2, "channels_first", "tanh", True),
        (5, 4, "same", 3, "channels_last", "softmax", True),
        (9, 5, "valid", None, "channels_first", "leaky_relu", False),
        (6, 5, "same", 1, "channels_last", "selu", True),
    ]
] + [
    dict(kernel_size=3, dilation=3, padding="same", activation="sigmoid"),
    dict(kernel_size=4, dilation=2, padding="valid", output_padding=0, data_format="channels_first"),
]


@pytest.mark.parametrize("case", EAGER_CASES, ids=lambda c: "-".join(map(str, c.values())))
def test_reference_is_bit_exact_with_eager_keras(case):
    layer, x = _keras_layer(np.random.default_rng(0), **case)
    y, _ = ct.conv1d_transpose(
        _params(layer), x, ct.Conv1DTransposeConfig.from_keras(layer.get_config()), implementation="lhs_dilation"
    )
    np.testing.assert_array_equal(np.asarray(y), np.asarray(layer(x)))


def test_output_length_matches_keras_compute_output_shape():
    for k, s, d, n, padding in itertools.product(range(1, 8), range(1, 5), [1, 2, 3], [1, 2, 7], ["valid", "same"]):
        if s > 1 and d > 1:
            continue
        for op in [None, *range(s)]:
            layer = keras.layers.Conv1DTranspose(2, k, strides=s, dilation_rate=d, padding=padding, output_padding=op)
            expected = layer.compute_output_shape((1, n, 3))[1]
            config = ct.Conv1DTransposeConfig(2, k, strides=s, dilation_rate=d, padding=padding, output_padding=op)
            assert ct.output_length(config, n) == expected, (k, s, d, n, padding, op)


def test_a_zero_length_result_is_an_empty_axis_as_in_keras():
    layer = keras.layers.Conv1DTranspose(3, 2, strides=1, padding="same", output_padding=0)
    x = np.ones((2, 1, 4), np.float32)
    expected = np.asarray(layer(x))
    config = ct.Conv1DTransposeConfig.from_keras(layer.get_config())
    for name in ct.IMPLEMENTATIONS:
        y, aux = ct.conv1d_transpose(_params(layer), x, config, implementation=name)
        assert y.shape == expected.shape == (2, 0, 3)
        assert all(float(v) == 0.0 for v in aux.values())


# Configs written in convtrans's own forms; to_keras() must build a Keras layer that computes
# the same outputs and the same losses from the same weights.
OUR_CONFIGS = [
    ct.Conv1DTransposeConfig(4, [5], strides=(3,), padding="SAME", activation="relu", kernel_regularizer="l2"),
    ct.Conv1DTransposeConfig(
        4,
        3,
        strides=2,
        padding="Valid",
        output_padding=[1],
        data_format="Channels_First",
        activation=keras.activations.gelu,
        bias_regularizer=ct.regularizers.L1(0.3),
        activity_regularizer={"class_name": "L2", "config": {"l2": 0.05}},
    ),
    ct.Conv1DTransposeConfig(
        4,
        4,
        dilation_rate=2,
        padding="same",
        output_padding=0,
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.L1L2(0.01, 0.02),
        kernel_constraint=keras.constraints.MaxNorm(1.5),
        activation="hard_sigmoid",
    ),
    ct.Conv1DTransposeConfig(
        4,
        2,
        strides=4,
        output_padding=3,
        activation="log_softmax",
        bias_initializer=ct.initializers.Constant(0.2),
        bias_constraint="non_neg",
    ),
]


@pytest.mark.parametrize("config", OUR_CONFIGS)
def test_to_keras_builds_a_layer_with_our_outputs_and_losses(config):
    layer = keras.layers.Conv1DTranspose.from_config(config.to_keras())
    rng = np.random.default_rng(1)
    shape = (BATCH, STEPS, IN_CHANNELS) if config.data_format == "channels_last" else (BATCH, IN_CHANNELS, STEPS)
    x = rng.standard_normal(shape).astype(np.float32)
    layer.build(shape)
    params = {"kernel": rng.standard_normal(config.kernel_shape(IN_CHANNELS)).astype(np.float32)}
    if config.use_bias:
        params["bias"] = rng.standard_normal(config.filters).astype(np.float32)
    layer.set_weights([params["kernel"]] + ([params["bias"]] if config.use_bias else []))
    y, aux = ct.conv1d_transpose(params, x, config, implementation="lhs_dilation")
    np.testing.assert_array_equal(np.asarray(y), np.asarray(layer(x)))
    assert float(sum(aux.values())) == pytest.approx(float(sum(np.asarray(v) for v in layer.losses)), rel=1e-6)

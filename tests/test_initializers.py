"""Keras initializers: distributions by formula and against Keras's own samples, fan rules."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
from flax import nnx
from scipy import stats

import convtrans as ct
from convtrans import initializers

KEY = jax.random.PRNGKey(0)
# (kernel_size, filters, in_channels): fan_in = k * filters = 512 and fan_out = k * in = 64 differ
# by 8x, so a wrong fan rule shows up in every moment.
SHAPE = (8, 64, 8)
FAN_IN, FAN_OUT = 8 * 64, 8 * 8
TRUNC = 0.87962566103423978  # stddev of a unit normal truncated to [-2, 2]

# name -> (stddev of the distribution, bound of |w| or None, truncated?)
VARIANCE_SCALING = {
    "glorot_uniform": (math.sqrt(2.0 / (FAN_IN + FAN_OUT)), math.sqrt(6.0 / (FAN_IN + FAN_OUT)), False),
    "glorot_normal": (math.sqrt(2.0 / (FAN_IN + FAN_OUT)), 2 * math.sqrt(2.0 / (FAN_IN + FAN_OUT)) / TRUNC, True),
    "he_uniform": (math.sqrt(2.0 / FAN_IN), math.sqrt(6.0 / FAN_IN), False),
    "he_normal": (math.sqrt(2.0 / FAN_IN), 2 * math.sqrt(2.0 / FAN_IN) / TRUNC, True),
    "lecun_uniform": (math.sqrt(1.0 / FAN_IN), math.sqrt(3.0 / FAN_IN), False),
    "lecun_normal": (math.sqrt(1.0 / FAN_IN), 2 * math.sqrt(1.0 / FAN_IN) / TRUNC, True),
}
KERAS_CLASS = {
    "glorot_uniform": "GlorotUniform",
    "glorot_normal": "GlorotNormal",
    "he_uniform": "HeUniform",
    "he_normal": "HeNormal",
    "lecun_uniform": "LecunUniform",
    "lecun_normal": "LecunNormal",
    "random_normal": "RandomNormal",
    "random_uniform": "RandomUniform",
    "truncated_normal": "TruncatedNormal",
    "variance_scaling": "VarianceScaling",
    "orthogonal": "Orthogonal",
    "zeros": "Zeros",
    "ones": "Ones",
    "constant": "Constant",
}
RANDOM = list(VARIANCE_SCALING) + [
    "random_normal",
    "random_uniform",
    "truncated_normal",
    "variance_scaling",
    "orthogonal",
]


def _ours(identifier, shape=SHAPE):
    return np.asarray(initializers.get(identifier)(KEY, shape, jnp.float32)).ravel()


def _keras(identifier, shape=SHAPE):
    return np.asarray(keras.initializers.get(identifier)(shape)).ravel()


@pytest.mark.parametrize("name", list(VARIANCE_SCALING))
def test_variance_scaling_family_moments_and_bounds_follow_the_formula(name):
    stddev, bound, _truncated = VARIANCE_SCALING[name]
    w = _ours(name)
    assert abs(w.mean()) < 5 * stddev / math.sqrt(w.size)
    np.testing.assert_allclose(w.std(), stddev, rtol=0.03)
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    assert np.abs(w).max() > 0.9 * bound  # the distribution reaches its bound: no extra scaling


@pytest.mark.parametrize("name", RANDOM)
@pytest.mark.parametrize("form", ["name", "dict"])
def test_samples_follow_the_same_distribution_as_keras(name, form):
    seeded = {"class_name": KERAS_CLASS[name], "config": {"seed": 3}}  # Keras's draw must be repeatable
    ours, theirs = _ours(name if form == "name" else seeded), _keras(seeded)
    assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    np.testing.assert_allclose(ours.std(), theirs.std(), rtol=0.05)
    np.testing.assert_allclose(np.abs(ours).max(), np.abs(theirs).max(), rtol=0.1)


def test_fan_in_of_the_kernel_is_kernel_size_times_filters():
    assert initializers.compute_fans(SHAPE) == (FAN_IN, FAN_OUT)
    assert initializers.compute_fans(SHAPE) == keras.src.initializers.random_initializers.compute_fans(SHAPE)
    he = initializers.get("he_normal")
    assert he.fan_scale(SHAPE) == 2.0 / FAN_IN
    np.testing.assert_allclose(_ours("he_normal").std(), math.sqrt(2.0 / FAN_IN), rtol=0.03)


def test_fan_rules_of_the_bias_use_its_length():
    assert initializers.compute_fans((64,)) == (64, 64)
    np.testing.assert_allclose(_ours("he_uniform", (4096,)).std(), math.sqrt(2.0 / 4096), rtol=0.05)


def test_variance_scaling_options_match_keras():
    config = {"scale": 3.0, "mode": "fan_out", "distribution": "untruncated_normal", "seed": 1}
    identifier = {"class_name": "VarianceScaling", "config": config}
    ours = _ours(identifier)
    np.testing.assert_allclose(ours.std(), math.sqrt(3.0 / FAN_OUT), rtol=0.03)
    assert np.abs(ours).max() > 3 * math.sqrt(3.0 / FAN_OUT)  # untruncated
    assert stats.ks_2samp(ours, _keras(identifier)).pvalue > 1e-3


def test_variance_scaling_explicit_axes_match_keras():
    config = {
        "scale": 1.0,
        "mode": "fan_in",
        "distribution": "uniform",
        "input_axes": [2],
        "output_axes": [0, 1],
        "seed": 2,
    }
    identifier = {"class_name": "VarianceScaling", "config": config}
    np.testing.assert_allclose(np.abs(_ours(identifier)).max(), math.sqrt(3.0 / 8), rtol=0.02)
    assert stats.ks_2samp(_ours(identifier), _keras(identifier)).pvalue > 1e-3


def test_truncated_normal_is_cut_at_two_standard_deviations_without_correction():
    w = _ours({"class_name": "TruncatedNormal", "config": {"mean": 0.5, "stddev": 0.2}})
    assert w.min() >= 0.5 - 0.4 - 1e-6 and w.max() <= 0.5 + 0.4 + 1e-6
    np.testing.assert_allclose(w.std(), 0.2 * TRUNC, rtol=0.03)
    np.testing.assert_allclose(w.mean(), 0.5, atol=0.01)


def test_random_normal_and_uniform_take_keras_parameters():
    w = _ours({"class_name": "RandomNormal", "config": {"mean": -1.0, "stddev": 0.3}})
    np.testing.assert_allclose([w.mean(), w.std()], [-1.0, 0.3], rtol=0.03)
    u = _ours({"class_name": "RandomUniform", "config": {"minval": 2.0, "maxval": 3.0}})
    assert u.min() >= 2.0 and u.max() <= 3.0
    np.testing.assert_allclose(u.mean(), 2.5, rtol=0.01)


@pytest.mark.parametrize("gain", [1.0, 0.5])
def test_orthogonal_columns_are_orthonormal_over_taps_and_filters(gain):
    ours = initializers.Orthogonal(gain=gain)(KEY, SHAPE).reshape(-1, SHAPE[-1])
    theirs = np.asarray(keras.initializers.Orthogonal(gain=gain)(SHAPE)).reshape(-1, SHAPE[-1])
    for matrix in (np.asarray(ours), theirs):
        np.testing.assert_allclose(matrix.T @ matrix, gain**2 * np.eye(SHAPE[-1]), atol=1e-5)


def test_orthogonal_wide_kernel_has_orthonormal_rows():
    shape = (2, 3, 16)  # 6 rows, 16 columns
    matrix = np.asarray(initializers.Orthogonal()(KEY, shape)).reshape(6, 16)
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(6), atol=1e-5)


@pytest.mark.parametrize(
    "identifier",
    [
        "zeros",
        "ones",
        "zero",
        "one",
        {"class_name": "Constant", "config": {"value": -0.25}},
        {"class_name": "Zeros", "config": {}},
        {"class_name": "Ones", "config": {}},
    ],
)
def test_deterministic_initializers_equal_keras(identifier):
    np.testing.assert_array_equal(_ours(identifier), _keras(identifier))


def test_identity_is_allowed_only_where_keras_allows_it():
    np.testing.assert_array_equal(
        initializers.get({"class_name": "Identity", "config": {"gain": 2.0}})(KEY, (3, 4)),
        keras.initializers.Identity(gain=2.0)((3, 4)),
    )
    with pytest.raises(ValueError, match="rank-2"):
        initializers.get("identity")(KEY, SHAPE)
    with pytest.raises(ValueError):
        keras.initializers.Identity()(SHAPE)
    with pytest.raises(ValueError, match="rank-2"):
        ct.Conv1DTranspose(4, 3, kernel_initializer="identity").init(KEY, jnp.ones((1, 5, 2)))


@pytest.mark.parametrize("name", list(KERAS_CLASS))
def test_keras_serialization_round_trips(name):
    # Keras's own round trip of a bare "constant" fails, so that one is built with a value.
    theirs = keras.initializers.Constant(0.3) if name == "constant" else keras.initializers.get(name)
    ours = initializers.get(keras.initializers.serialize(theirs))
    assert ours == (initializers.Constant(0.3) if name == "constant" else initializers.get(name))
    assert keras.initializers.deserialize(ours.to_keras()).get_config() == theirs.get_config()


def test_seed_is_kept_for_the_config_but_randomness_comes_from_the_key():
    init = initializers.get({"class_name": "HeNormal", "config": {"seed": 7}})
    assert init.seed == 7 and init.get_config()["seed"] == 7
    a, b = init(jax.random.PRNGKey(1), (3, 4, 5)), init(jax.random.PRNGKey(2), (3, 4, 5))
    assert not np.array_equal(a, b)


def test_jax_initializers_are_accepted_by_config_and_modules():
    config = ct.Conv1DTransposeConfig(
        4, 3, kernel_initializer=jax.nn.initializers.lecun_normal(in_axis=(0, 1), out_axis=2)
    )
    linen = ct.Conv1DTranspose.from_config(config).init(KEY, jnp.ones((1, 5, 2)))["params"]["kernel"]
    module = ct.nnx.Conv1DTranspose.from_config(config, 2, rngs=nnx.Rngs(0))
    assert linen.shape == module.kernel.shape == (3, 4, 2)


def test_modules_draw_the_kernel_with_the_configured_distribution():
    module = ct.Conv1DTranspose(64, 8, kernel_initializer="he_uniform")
    kernel = nn.unbox(module.init(KEY, jnp.ones((1, 3, 8)))["params"]["kernel"])
    assert kernel.shape == SHAPE
    assert np.abs(kernel).max() <= math.sqrt(6.0 / FAN_IN)
    np.testing.assert_allclose(np.std(kernel), math.sqrt(2.0 / FAN_IN), rtol=0.03)
    nnx_kernel = ct.nnx.Conv1DTranspose(8, 64, 8, kernel_initializer="he_uniform", rngs=nnx.Rngs(0)).kernel[...]
    np.testing.assert_allclose(np.std(nnx_kernel), math.sqrt(2.0 / FAN_IN), rtol=0.03)


def test_unknown_initializer_raises_naming_the_argument():
    with pytest.raises(ValueError, match="kernel_initializer"):
        ct.Conv1DTransposeConfig(4, 3, kernel_initializer="glorot")
    with pytest.raises(ValueError, match="STFT"):
        ct.Conv1DTransposeConfig(4, 3, kernel_initializer={"class_name": "STFT", "config": {}})

"""conv1d_transpose under jax.jit, jax.vmap and jax.grad, with gradients checked numerically."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import convtrans as ct

CONFIGS = [
    ct.Conv1DTransposeConfig(3, 4, strides=2, padding="same", activation="tanh"),
    ct.Conv1DTransposeConfig(
        4,
        3,
        strides=3,
        padding="valid",
        output_padding=1,
        data_format="channels_first",
        kernel_regularizer="l2",
        activity_regularizer="l1",
    ),
    ct.Conv1DTransposeConfig(4, 3, dilation_rate=2, padding=(1, 2), groups=2, activation="softplus"),
]


def _inputs(config, key=0, batch=2, steps=5, in_channels=2):
    # NumPy draws: jax.random compiles a program per shape drawn (about half a second each).
    rng = np.random.default_rng(key)
    shape = (batch, steps, in_channels) if config.data_format == "channels_last" else (batch, in_channels, steps)
    params = {
        "kernel": 0.5 * rng.standard_normal(config.kernel_shape(in_channels), np.float32),
        "bias": rng.standard_normal((config.filters,), np.float32),
    }
    return params, rng.standard_normal(shape, np.float32)


@pytest.mark.parametrize("config", CONFIGS)
def test_jit_with_a_static_config_equals_eager(config):
    params, x = _inputs(config)
    eager = ct.conv1d_transpose(params, x, config)
    jitted = jax.jit(ct.conv1d_transpose, static_argnums=2)(params, x, config)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), eager, jitted)


@pytest.mark.parametrize("config", CONFIGS)
def test_vmap_over_an_extra_leading_axis_equals_a_loop(config):
    params, x = _inputs(config)
    xs = jnp.stack([x, 2 * x, -x])
    ys, auxes = jax.vmap(lambda x: ct.conv1d_transpose(params, x, config))(xs)
    for i in range(3):
        y, aux = ct.conv1d_transpose(params, xs[i], config)
        np.testing.assert_allclose(ys[i], y, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(auxes["activity"][i], aux["activity"], rtol=1e-5)


def test_vmap_over_parameters_of_an_ensemble():
    config = CONFIGS[0]
    params = jax.tree.map(lambda *members: np.stack(members), *[_inputs(config, key=k)[0] for k in range(4)])
    x = _inputs(config)[1]
    ys = jax.vmap(lambda p: ct.conv1d_transpose(p, x, config)[0])(params)
    for i in range(4):
        np.testing.assert_allclose(
            ys[i], ct.conv1d_transpose(jax.tree.map(lambda a, i=i: a[i], params), x, config)[0], rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("name", sorted(ct.IMPLEMENTATIONS))
def test_gradients_match_finite_differences(config, name):
    params, x = _inputs(config)

    @jax.jit  # one compile per derivative order instead of one per eager op
    def loss(params, x):
        y, aux = ct.conv1d_transpose(params, x, config, implementation=name)
        return jnp.sum(jnp.sin(y)) + sum(aux.values())

    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
        check_grads(loss, (params64, np.asarray(x, np.float64)), order=2, modes=("fwd", "rev"))


def test_grad_under_jit_has_the_shapes_of_the_parameters():
    config = CONFIGS[1]
    params, x = _inputs(config)
    grads = jax.jit(jax.grad(lambda p, x: jnp.sum(ct.conv1d_transpose(p, x, config)[0] ** 2)))(params, x)
    assert jax.tree.map(jnp.shape, grads) == jax.tree.map(jnp.shape, params)


def test_no_host_callbacks_or_transfers_in_the_compiled_op():
    config = CONFIGS[0]
    params, x = _inputs(config)
    hlo = jax.jit(ct.conv1d_transpose, static_argnums=2).lower(params, x, config).as_text()
    assert "callback" not in hlo and "infeed" not in hlo and "outfeed" not in hlo

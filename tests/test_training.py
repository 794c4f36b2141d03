"""A real training check: a two-layer upsampler trained with optax, L2 penalties and max_norm.

The same model, built in Keras from the converted configs with the same initial weights and
trained with plain SGD, must end at the same parameters.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import keras
import numpy as np
import optax
import pytest

import convtrans as ct
from convtrans import interop

MAX_NORM = 0.5
FACTOR = 4  # two layers of stride 2


_COMMON = dict(
    padding="same", kernel_regularizer=ct.regularizers.L2(1e-3), kernel_constraint=ct.constraints.MaxNorm(MAX_NORM)
)
CONFIGS = {
    "up1": ct.Conv1DTransposeConfig(8, 4, strides=2, activation="tanh", **_COMMON),
    "up2": ct.Conv1DTransposeConfig(1, 4, strides=2, **_COMMON),
}


class Upsampler(nn.Module):
    @nn.compact
    def __call__(self, x):
        for name, config in CONFIGS.items():
            x = ct.Conv1DTranspose.from_config(config, name=name)(x)
        return x


def _task(seed, batch=8, steps=12):
    """Smooth random low-rate signals and their linear interpolation at FACTOR times the rate."""
    rng = np.random.default_rng(seed)
    coarse = np.cumsum(rng.standard_normal((batch, steps + 2)), axis=1) * 0.3
    coarse -= coarse.mean(axis=1, keepdims=True)
    t_low = np.arange(steps)
    t_high = (np.arange(steps * FACTOR) + 0.5) / FACTOR - 0.5
    x = coarse[:, :steps]
    y = np.stack([np.interp(t_high, t_low, row) for row in x])
    return x[..., None].astype(np.float32), y[..., None].astype(np.float32)


def _loss_fn(model, x, target):
    def loss(params):
        y, state = model.apply({"params": params}, x, mutable=["losses"])
        return jnp.mean((y - target) ** 2) + sum(jax.tree.leaves(state["losses"]))

    return loss


def _kernel_norms(params):
    return {name: np.sqrt(np.sum(np.square(nn.unbox(params)[name]["kernel"]), axis=0)) for name in ("up1", "up2")}


def test_loss_falls_and_max_norm_holds_after_every_step():
    model, (x, target) = Upsampler(), _task(0)
    params = model.init(jax.random.PRNGKey(0), x)["params"]
    tx = optax.chain(optax.adam(2e-2), ct.keras_constraints())
    opt_state = tx.init(params)
    loss = _loss_fn(model, x, target)

    @jax.jit
    def step(params, opt_state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    losses, largest = [], 0.0
    for _ in range(150):
        params, opt_state, value = step(params, opt_state)
        losses.append(float(value))
        for norms in _kernel_norms(params).values():
            assert norms.max() <= MAX_NORM * (1 + 1e-6)
            largest = max(largest, float(norms.max()))
    assert largest > 0.99 * MAX_NORM, "the constraint never bound, so the test checks nothing"
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:5])


@pytest.mark.parametrize("learning_rate", [0.5])
def test_keras_with_the_converted_config_and_plain_sgd_reaches_the_same_parameters(learning_rate):
    model, (x, target) = Upsampler(), _task(1, batch=4, steps=6)
    params = model.init(jax.random.PRNGKey(1), x)["params"]
    # Start near the constraint so that it binds during the comparison.
    params = jax.tree.map(lambda p: p * 1.3, params)
    params = ct.apply_constraints(params)

    keras_model = keras.Sequential(
        [keras.Input(x.shape[1:])]
        + [interop.to_keras(config, params[name], name=name) for name, config in CONFIGS.items()]
    )
    keras_model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")

    initial = params
    tx = optax.chain(optax.sgd(learning_rate), ct.keras_constraints())
    opt_state = tx.init(params)
    loss = jax.jit(jax.value_and_grad(_loss_fn(model, x, target)))
    for _ in range(5):
        value, grads = loss(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        keras_value = keras_model.train_on_batch(x, target)
        np.testing.assert_allclose(value, keras_value, rtol=1e-5)

    for name in ("up1", "up2"):
        keras_kernel, keras_bias = keras_model.get_layer(name).get_weights()
        np.testing.assert_allclose(nn.unbox(params)[name]["kernel"], keras_kernel, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(params[name]["bias"], keras_bias, rtol=1e-5, atol=1e-6)
    assert max(n.max() for n in _kernel_norms(params).values()) > 0.99 * MAX_NORM
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), nn.unbox(params), nn.unbox(initial))
    assert min(jax.tree.leaves(moved)) > 1e-4, moved

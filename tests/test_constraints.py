"""Keras's weight constraints and the optax transform that applies them after each update."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import keras
import numpy as np
import optax
import pytest
from flax import nnx

import convtrans as ct
from convtrans import constraints

KEY = jax.random.PRNGKey(0)
KERNEL_SHAPE = (5, 4, 3)  # (kernel_size, filters, in_channels)

# (our identifier, the Keras constraint it names)
CASES = [
    ("max_norm", keras.constraints.MaxNorm()),
    ("unit_norm", keras.constraints.UnitNorm()),
    ("min_max_norm", keras.constraints.MinMaxNorm()),
    ("non_neg", keras.constraints.NonNeg()),
    ({"class_name": "MaxNorm", "config": {"max_value": 0.7, "axis": 1}}, keras.constraints.MaxNorm(0.7, axis=1)),
    (
        {"class_name": "MaxNorm", "config": {"max_value": 1.1, "axis": [0, 1]}},
        keras.constraints.MaxNorm(1.1, axis=[0, 1]),
    ),
    ({"class_name": "UnitNorm", "config": {"axis": -1}}, keras.constraints.UnitNorm(axis=-1)),
    (
        {"class_name": "MinMaxNorm", "config": {"min_value": 0.5, "max_value": 0.9, "rate": 0.3, "axis": 2}},
        keras.constraints.MinMaxNorm(0.5, 0.9, rate=0.3, axis=2),
    ),
    (constraints.MaxNorm(max_value=0.3, axis=(1, 2)), keras.constraints.MaxNorm(0.3, axis=[1, 2])),
    (constraints.MinMaxNorm(min_value=1.0, max_value=2.0, axis=0), keras.constraints.MinMaxNorm(1.0, 2.0)),
    (constraints.NonNeg(), keras.constraints.NonNeg()),
]


def _ids(case):
    identifier = case[0]
    return identifier if isinstance(identifier, str) else repr(identifier)[:40]


@pytest.mark.parametrize("identifier, keras_constraint", CASES, ids=[_ids(c) for c in CASES])
def test_constraint_matches_keras_on_a_kernel(identifier, keras_constraint):
    w = np.asarray(jax.random.normal(KEY, KERNEL_SHAPE)) * 0.8
    ours = constraints.get(identifier)
    np.testing.assert_allclose(ours(jnp.asarray(w)), keras_constraint(w), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("identifier, keras_constraint", CASES[:4], ids=[_ids(c) for c in CASES[:4]])
def test_keras_serialization_round_trips(identifier, keras_constraint):
    ours = constraints.get(identifier)
    assert constraints.get(keras.constraints.serialize(keras_constraint)) == ours
    assert keras.constraints.deserialize(ours.to_keras()).get_config() == keras_constraint.get_config()


def test_axis_zero_normalizes_each_filter_input_pair_over_taps():
    w = jax.random.normal(KEY, KERNEL_SHAPE)
    norms = jnp.sqrt(jnp.sum(constraints.UnitNorm(axis=0)(w) ** 2, axis=0))
    np.testing.assert_allclose(norms, np.ones(KERNEL_SHAPE[1:]), rtol=1e-6)


def test_max_norm_leaves_small_weights_unchanged_up_to_epsilon():
    w = jnp.full(KERNEL_SHAPE, 0.01)
    np.testing.assert_allclose(constraints.MaxNorm(2.0)(w), w, rtol=1e-5)


def test_unknown_constraint_raises_naming_the_argument():
    with pytest.raises(ValueError, match="kernel_constraint"):
        ct.Conv1DTransposeConfig(4, 3, kernel_constraint="max_norms")


# --- the optax transform -------------------------------------------------------------------


class TwoLayers(nn.Module):
    """Two convtrans layers with different constraints and an unconstrained dense head."""

    @nn.compact
    def __call__(self, x):
        x = ct.Conv1DTranspose(
            6,
            4,
            strides=2,
            padding="same",
            activation="relu",
            kernel_constraint=constraints.MaxNorm(0.5),
            bias_constraint="non_neg",
        )(x)
        x = ct.Conv1DTranspose(
            3, 3, strides=2, kernel_constraint={"class_name": "UnitNorm", "config": {"axis": [0, 1]}}
        )(x)
        return nn.Dense(2)(x)


KERAS_OF_LAYER = {
    ("Conv1DTranspose_0", "kernel"): keras.constraints.MaxNorm(0.5),
    ("Conv1DTranspose_0", "bias"): keras.constraints.NonNeg(),
    ("Conv1DTranspose_1", "kernel"): keras.constraints.UnitNorm(axis=[0, 1]),
}


def _loss(model, x):
    def loss(params):
        y = model.apply({"params": params}, x)
        return jnp.mean((y - 1.0) ** 2)

    return loss


@pytest.mark.parametrize("optimizer", [optax.sgd(0.5), optax.adam(0.05)], ids=["sgd", "adam"])
def test_transform_projects_every_constrained_parameter_of_a_linen_model_like_keras(optimizer):
    model, x = TwoLayers(), jax.random.normal(KEY, (2, 5, 3))
    params = model.init(KEY, x)["params"]
    loss = _loss(model, x)
    plain, constrained = optimizer, optax.chain(optimizer, ct.keras_constraints())
    plain_state, state = plain.init(params), constrained.init(params)
    for _ in range(3):
        grads = jax.grad(loss)(params)
        raw_updates, plain_state = plain.update(grads, plain_state, params)
        updates, state = jax.jit(constrained.update)(grads, state, params)
        new_params = optax.apply_updates(params, updates)
        for (layer, name), keras_constraint in KERAS_OF_LAYER.items():
            w = np.asarray(nn.unbox(params)[layer][name]) + np.asarray(nn.unbox(raw_updates)[layer][name])
            np.testing.assert_allclose(nn.unbox(new_params)[layer][name], keras_constraint(w), rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(
            new_params["Dense_0"]["kernel"], optax.apply_updates(params, raw_updates)["Dense_0"]["kernel"]
        )
        params = new_params


def test_transform_finds_constraints_at_init_even_if_update_gets_unboxed_params():
    model, x = TwoLayers(), jax.random.normal(KEY, (2, 5, 3))
    boxed = model.init(KEY, x)["params"]
    tx = optax.chain(optax.sgd(0.5), ct.keras_constraints())
    state = tx.init(boxed)
    params = nn.unbox(boxed)
    grads = jax.grad(_loss(model, x))(params)
    updates, _ = tx.update(grads, state, params)
    new = optax.apply_updates(params, updates)
    norms = jnp.sqrt(jnp.sum(new["Conv1DTranspose_0"]["kernel"] ** 2, axis=0))
    assert float(norms.max()) <= 0.5 * (1 + 1e-6)


def test_transform_without_params_raises():
    tx = ct.keras_constraints()
    params = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="params"):
        tx.update(params, tx.init(params))


def test_transform_leaves_unconstrained_trees_unchanged():
    params = {"w": jnp.ones(3)}
    tx = ct.keras_constraints()
    updates, _ = tx.update({"w": jnp.full(3, -5.0)}, tx.init(params), params)
    np.testing.assert_array_equal(updates["w"], np.full(3, -5.0))


class NnxTwoLayers(nnx.Module):
    def __init__(self, rngs):
        self.up1 = ct.nnx.Conv1DTranspose(
            3,
            6,
            4,
            strides=2,
            padding="same",
            activation="relu",
            kernel_constraint=constraints.MaxNorm(0.5),
            bias_constraint="non_neg",
            rngs=rngs,
        )
        self.up2 = ct.nnx.Conv1DTranspose(6, 3, 3, strides=2, kernel_constraint="unit_norm", rngs=rngs)
        self.head = nnx.Linear(3, 2, rngs=rngs)

    def __call__(self, x):
        return self.head(self.up2(self.up1(x)))


def test_transform_projects_every_constrained_parameter_of_an_nnx_model_like_keras():
    model, x = NnxTwoLayers(nnx.Rngs(0)), jax.random.normal(KEY, (2, 5, 3))
    adam = optax.adam(0.05)
    optimizer = nnx.Optimizer(model, optax.chain(adam, ct.keras_constraints()), wrt=nnx.Param)
    keras_of = {
        ("up1", "kernel"): keras.constraints.MaxNorm(0.5),
        ("up1", "bias"): keras.constraints.NonNeg(),
        ("up2", "kernel"): keras.constraints.UnitNorm(),
    }

    def loss(m):
        return jnp.mean((m(x) - 1.0) ** 2)

    for _ in range(3):
        before = {k: np.asarray(getattr(getattr(model, k[0]), k[1])[...]) for k in keras_of}
        grads = nnx.grad(loss)(model)
        adam_state = nnx.as_pure(optimizer.opt_state)[0]
        raw_updates, _ = adam.update(
            nnx.as_pure(nnx.state(grads, nnx.Param)), adam_state, nnx.as_pure(nnx.state(model, nnx.Param))
        )
        optimizer.update(model, grads)
        for (layer, name), keras_constraint in keras_of.items():
            expected = keras_constraint(before[(layer, name)] + np.asarray(raw_updates[layer][name]))
            np.testing.assert_allclose(getattr(getattr(model, layer), name)[...], expected, rtol=1e-6, atol=1e-7)


def test_apply_constraints_projects_boxed_parameters_directly():
    model, x = TwoLayers(), jnp.ones((1, 4, 3))
    params = model.init(KEY, x)["params"]
    params = jax.tree.map(lambda p: p * 10.0, params)
    projected = ct.apply_constraints(params)
    kernel = nn.unbox(projected)["Conv1DTranspose_0"]["kernel"]
    np.testing.assert_allclose(
        kernel, keras.constraints.MaxNorm(0.5)(np.asarray(nn.unbox(params)["Conv1DTranspose_0"]["kernel"])), rtol=1e-6
    )
    np.testing.assert_array_equal(projected["Dense_0"]["kernel"], params["Dense_0"]["kernel"])


class ScannedLayers(nn.Module):
    """Four layers stacked by nn.scan: one kernel of shape (4, k, filters, in)."""

    @nn.compact
    def __call__(self, x):
        def body(module, carry):
            layer = ct.Conv1DTranspose(3, 2, padding="same", kernel_constraint=constraints.MaxNorm(0.3))
            return layer(carry), None

        scan = nn.scan(body, variable_axes={"params": 0}, split_rngs={"params": True}, length=4)
        return scan(self, x)[0]


def test_transform_constrains_each_layer_of_an_nn_scan_stack_separately():
    model, x = ScannedLayers(), jax.random.normal(KEY, (2, 5, 3))
    params = model.init(KEY, x)["params"]
    tx = optax.chain(optax.sgd(1.0), ct.keras_constraints())
    grads = jax.grad(lambda p: jnp.sum(model.apply({"params": p}, x) ** 2))(params)
    updates, _ = tx.update(grads, tx.init(params), params)
    new = nn.unbox(optax.apply_updates(params, updates))["Conv1DTranspose_0"]["kernel"]
    raw = nn.unbox(params)["Conv1DTranspose_0"]["kernel"] - nn.unbox(grads)["Conv1DTranspose_0"]["kernel"]
    for i in range(4):
        np.testing.assert_allclose(new[i], keras.constraints.MaxNorm(0.3)(np.asarray(raw[i])), rtol=1e-6, atol=1e-7)


def test_transform_finds_linen_constraints_through_the_nnx_bridge():
    from flax.nnx import bridge

    x = jnp.ones((1, 5, 2))
    model = bridge.ToNNX(ct.Conv1DTranspose(4, 3, kernel_constraint=constraints.MaxNorm(0.2)), rngs=nnx.Rngs(0))
    bridge.lazy_init(model, x)
    kernel = np.asarray(nnx.state(model, nnx.Param)["kernel"][...])
    optimizer = nnx.Optimizer(model, optax.chain(optax.sgd(1.0), ct.keras_constraints()), wrt=nnx.Param)
    grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)
    optimizer.update(model, grads)
    expected = keras.constraints.MaxNorm(0.2)(kernel - np.asarray(nnx.state(grads, nnx.Param)["kernel"][...]))
    np.testing.assert_allclose(nnx.state(model, nnx.Param)["kernel"][...], expected, rtol=1e-6, atol=1e-7)


def test_with_constraint_lets_other_flax_layers_be_projected_too():
    dense = nn.Dense(4, kernel_init=ct.with_constraint(nn.initializers.lecun_normal(), "non_neg"))
    x = jnp.ones((2, 3))
    params = dense.init(KEY, x)["params"]
    assert params["kernel"].constraint == constraints.NonNeg()
    tx = optax.chain(optax.sgd(1.0), ct.keras_constraints())
    grads = jax.grad(lambda p: jnp.sum(dense.apply({"params": p}, x)))(params)
    updates, _ = tx.update(grads, tx.init(params), params)
    new = nn.unbox(optax.apply_updates(params, updates))["kernel"]
    np.testing.assert_array_equal(
        new, keras.constraints.NonNeg()(np.asarray(nn.unbox(params)["kernel"] - nn.unbox(grads)["kernel"]))
    )

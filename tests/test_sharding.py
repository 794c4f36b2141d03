"""The op on a mesh of 8 simulated CPU devices (tests/conftest.py sets XLA_FLAGS): sharded over
the batch or over time, it gives one device's values and gradients, sharded like its input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import convtrans as ct

DEVICES = 8
IMPLEMENTATIONS = sorted(ct.IMPLEMENTATIONS)
# Output lengths divisible by 8 for 64 input steps, so a time-sharded output tiles evenly.
CONFIGS = {
    "same-s3-channels_last": dict(kernel_size=5, strides=3, padding="same", activation="tanh"),
    "valid-s2-channels_first-groups": dict(
        kernel_size=2, strides=2, padding="valid", data_format="channels_first", groups=2
    ),
    "torch-s4-d2": dict(kernel_size=3, strides=4, dilation_rate=2, padding=(1, 3), output_padding=3),
}


def mesh(axis_type=AxisType.Auto):
    assert jax.device_count() >= DEVICES, "tests/conftest.py must set 8 host devices"
    return jax.make_mesh((DEVICES,), ("data",), axis_types=(axis_type,))


def setup(name, steps=64, batch=8):
    config = ct.Conv1DTransposeConfig(filters=4, **CONFIGS[name])
    rng = np.random.default_rng(0)
    params = {
        "kernel": jnp.asarray(rng.standard_normal(config.kernel_shape(6)), jnp.float32),
        "bias": jnp.asarray(rng.standard_normal(4), jnp.float32),
    }
    shape = (batch, steps, 6) if config.data_format == "channels_last" else (batch, 6, steps)
    return config, params, jnp.asarray(rng.standard_normal(shape), jnp.float32)


def time_spec(config):
    return P(None, "data", None) if config.data_format == "channels_last" else P(None, None, "data")


def forward_and_grad(config, implementation):
    def forward(params, x):
        return ct.conv1d_transpose(params, x, config, implementation=implementation)[0]

    def loss(params, x):
        return jnp.sum(jnp.sin(forward(params, x)))

    return forward, jax.grad(loss, argnums=(0, 1))


def assert_same_values(got, want):
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_batch_sharded_input_gives_batch_sharded_output_values_and_gradients(name, implementation):
    config, params, x = setup(name)
    forward, grad = forward_and_grad(config, implementation)
    want_y, want_grads = jax.jit(forward)(params, x), jax.jit(grad)(params, x)

    m = mesh()
    batch = NamedSharding(m, P("data"))
    xs = jax.device_put(x, batch)
    ps = jax.device_put(params, NamedSharding(m, P()))
    y = jax.jit(forward)(ps, xs)  # no annotation: propagation keeps the batch sharding
    grads = jax.jit(grad)(ps, xs)

    assert y.sharding.is_equivalent_to(batch, y.ndim), y.sharding
    assert grads[1].sharding.is_equivalent_to(batch, x.ndim), grads[1].sharding
    assert grads[0]["kernel"].sharding.is_fully_replicated
    assert_same_values(y, want_y)
    assert_same_values(grads, want_grads)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_time_sharded_long_signal_gives_time_sharded_output_values_and_gradients(name, implementation):
    config, params, x = setup(name, steps=512, batch=2)
    forward, grad = forward_and_grad(config, implementation)
    want_y, want_grads = jax.jit(forward)(params, x), jax.jit(grad)(params, x)

    m = mesh()
    time = NamedSharding(m, time_spec(config))
    replicated = NamedSharding(m, P())
    xs, ps = jax.device_put(x, time), jax.device_put(params, replicated)
    # The halo exchange between neighbouring shards is XLA's; out_shardings pins the layout.
    y = jax.jit(forward, out_shardings=time)(ps, xs)
    grads = jax.jit(grad, out_shardings=({"kernel": replicated, "bias": replicated}, time))(ps, xs)

    assert y.sharding.is_equivalent_to(time, y.ndim), y.sharding
    assert grads[1].sharding.is_equivalent_to(time, x.ndim), grads[1].sharding
    assert_same_values(y, want_y)
    assert_same_values(grads, want_grads)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_explicit_sharding_mesh_keeps_the_batch_sharding_in_the_types(implementation):
    config, params, x = setup("same-s3-channels_last")
    forward, grad = forward_and_grad(config, implementation)
    want_y, want_grads = jax.jit(forward)(params, x), jax.jit(grad)(params, x)

    m = mesh(AxisType.Explicit)
    with jax.set_mesh(m):
        xs = jax.device_put(x, P("data"))
        ps = jax.device_put(params, P())
        y = jax.jit(forward)(ps, xs)
        grads = jax.jit(grad)(ps, xs)
        assert jax.typeof(y).sharding.spec == P("data", None, None)
    assert y.sharding.is_equivalent_to(NamedSharding(m, P("data")), y.ndim)
    assert_same_values(y, want_y)
    assert_same_values(grads, want_grads)


def test_sharded_batch_of_streams_keeps_its_sharding_through_scan():
    from convtrans import streaming

    config, params, x = setup("same-s3-channels_last", steps=24)
    m = mesh()
    batch = NamedSharding(m, P("data"))
    xs, ps = jax.device_put(x, batch), jax.device_put(params, NamedSharding(m, P()))
    y, _ = jax.jit(streaming.chunked_conv1d_transpose, static_argnums=(2, 3))(ps, xs, config, 8)
    want, _ = jax.jit(ct.conv1d_transpose, static_argnums=2)(params, x, config)
    assert y.sharding.is_equivalent_to(batch, y.ndim), y.sharding
    assert_same_values(y, want)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_explicit_sharding_mesh_shards_time_through_auto_axes(implementation):
    config, params, x = setup("torch-s4-d2", steps=512, batch=2)
    forward, _ = forward_and_grad(config, implementation)
    want = jax.jit(forward)(params, x)

    m = mesh(AxisType.Explicit)
    spec = time_spec(config)
    with jax.set_mesh(m):
        xs = jax.device_put(x, spec)
        ps = jax.device_put(params, P())
        # As the README says: the intermediate lengths are not multiples of 8, so let XLA's
        # propagation place them and fix only the output's layout.
        y = jax.jit(jax.sharding.auto_axes(forward, out_sharding=spec))(ps, xs)
    assert y.sharding.is_equivalent_to(NamedSharding(m, spec), y.ndim), y.sharding
    assert_same_values(y, want)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_time_sharding_exchanges_halos_instead_of_gathering_the_signal(implementation):
    config = ct.Conv1DTransposeConfig(filters=4, kernel_size=16, strides=8, padding="same")
    m = mesh()
    time = NamedSharding(m, P(None, "data"))
    params = {
        "kernel": jax.ShapeDtypeStruct((16, 4, 6), jnp.float32, sharding=NamedSharding(m, P())),
        "bias": jax.ShapeDtypeStruct((4,), jnp.float32, sharding=NamedSharding(m, P())),
    }
    x = jax.ShapeDtypeStruct((2, 4096, 6), jnp.float32, sharding=time)
    forward = jax.jit(
        lambda p, x: ct.conv1d_transpose(p, x, config, implementation=implementation)[0], out_shardings=time
    )
    hlo = forward.lower(params, x).compile().as_text()
    assert "all-gather(" not in hlo and "collective-permute(" in hlo


# 64 input channels and two-tap phases: the default computes these by Winograd's F(2, 2), whose
# products merge the (sharded) batch with time into the rows of one matrix.
WINOGRAD_CONFIGS = {
    "k16-s8": dict(kernel_size=16, strides=8, padding="same"),
    "k4-s2-channels_first": dict(kernel_size=4, strides=2, padding="same", data_format="channels_first"),
}


def winograd_setup(name, batch=8, steps=32):
    config = ct.Conv1DTransposeConfig(filters=4, **WINOGRAD_CONFIGS[name])
    rng = np.random.default_rng(1)
    params = {
        "kernel": jnp.asarray(rng.standard_normal(config.kernel_shape(64)) / 8, jnp.float32),
        "bias": jnp.asarray(rng.standard_normal(4), jnp.float32),
    }
    shape = (batch, steps, 64) if config.data_format == "channels_last" else (batch, 64, steps)
    return config, params, jnp.asarray(rng.standard_normal(shape), jnp.float32)


def assert_same_values_normwise(got, want):
    # Sums of 64 channels times the batch and time: the shards add them in another order, so
    # the error is relative to the largest value, not to each one.
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        w = np.asarray(w)
        np.testing.assert_allclose(np.asarray(g), w, rtol=0, atol=1e-5 * np.abs(w).max())


@pytest.mark.parametrize("name", sorted(WINOGRAD_CONFIGS))
def test_a_batch_sharded_winograd_layer_gives_one_devices_values_and_gradients(name):
    config, params, x = winograd_setup(name)
    forward, grad = forward_and_grad(config, None)
    want_y, want_grads = jax.jit(forward)(params, x), jax.jit(grad)(params, x)

    m = mesh()
    batch = NamedSharding(m, P("data"))
    xs, ps = jax.device_put(x, batch), jax.device_put(params, NamedSharding(m, P()))
    y, grads = jax.jit(forward)(ps, xs), jax.jit(grad)(ps, xs)

    assert y.sharding.is_equivalent_to(batch, y.ndim), y.sharding
    assert grads[1].sharding.is_equivalent_to(batch, x.ndim), grads[1].sharding
    assert_same_values_normwise((y, grads), (want_y, want_grads))


def test_an_explicitly_batch_sharded_winograd_layer_keeps_the_sharding_in_the_types():
    config, params, x = winograd_setup("k16-s8")
    forward, grad = forward_and_grad(config, None)
    want_y, want_grads = jax.jit(forward)(params, x), jax.jit(grad)(params, x)

    with jax.set_mesh(mesh(AxisType.Explicit)):
        xs, ps = jax.device_put(x, P("data")), jax.device_put(params, P())
        y, grads = jax.jit(forward)(ps, xs), jax.jit(grad)(ps, xs)
        assert jax.typeof(y).sharding.spec == P("data", None, None)
    assert_same_values_normwise((y, grads), (want_y, want_grads))

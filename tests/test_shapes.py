"""Shapes flax accepts work here too: symbolic batch and length under jax.export, and inputs of
any rank >= 2 in the pure function, the modules and streaming."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import export

import convtrans as ct
from convtrans import streaming

C = ct.Conv1DTransposeConfig
PADDINGS = ["valid", "same", 2, (1, 3)]
LAYERS = [(4, 2, 1), (5, 3, 1), (16, 8, 1), (3, 1, 2), (9, 2, 1)]  # (kernel_size, strides, dilation)
DTYPES = ["float32", "bfloat16", "float16", "float64"]
TOLERANCE = {"float32": 1e-5, "float64": 1e-12, "bfloat16": 2e-2, "float16": 2e-3}


def _symbolic_cases():
    """Every padding and data format with every dtype and group count, the layers rotating through
    them: each (padding, data format, groups) takes two dtypes, the other two go with the other
    group count (and data format), so every pair of those meets every dtype."""
    cases = []
    rotation = itertools.count()
    for padding, data_format, groups, dtype in itertools.product(
        PADDINGS, ["channels_last", "channels_first"], [1, 2], DTYPES
    ):
        if (DTYPES.index(dtype) + groups + (data_format == "channels_first")) % 2:
            continue
        i = next(rotation)
        k, s, d = LAYERS[i % len(LAYERS)]
        if isinstance(padding, str) and s > 1 and d > 1:
            d = 1
        in_channels = (4, 64)[(i // 5) % 2] * groups
        cases.append(
            pytest.param(
                C(4 * groups, k, strides=s, padding=padding, data_format=data_format, dilation_rate=d, groups=groups),
                in_channels,
                dtype,
                id=f"k{k}s{s}d{d}-p{padding}-{data_format[9:]}-g{groups}-c{in_channels}-{dtype}",
            )
        )
    return cases


def _x_shape(config, batch, steps, channels):
    return (batch, steps, channels) if config.data_format == "channels_last" else (batch, channels, steps)


def _params(config, in_channels, dtype=jnp.float32, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "kernel": jnp.asarray(rng.standard_normal(config.kernel_shape(in_channels)) / 4, dtype),
        "bias": jnp.asarray(rng.standard_normal(config.filters), dtype),
    }


def _x(shape, dtype, seed=1):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


@pytest.mark.parametrize("config, in_channels, dtype", _symbolic_cases())
def test_an_export_with_symbolic_batch_and_length_equals_the_concrete_computation(config, in_channels, dtype):
    with jax.enable_x64(dtype == "float64"):
        params = _params(config, in_channels, dtype)
        fn = lambda params, x: ct.conv1d_transpose(params, x, config)
        batch, steps = export.symbolic_shape("b, t")
        spec = jax.ShapeDtypeStruct(_x_shape(config, batch, steps, in_channels), dtype)
        exported = export.export(jax.jit(fn))(params, spec)
        for b, n in [(1, 3), (3, 8)]:
            x = _x(_x_shape(config, b, n, in_channels), dtype)
            (got, got_aux), (want, want_aux) = exported.call(params, x), jax.jit(fn)(params, x)
            assert got.shape == want.shape == _x_shape(config, b, ct.output_length(config, n), config.filters)
            np.testing.assert_allclose(
                np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype]
            )
            assert jax.tree.map(jnp.shape, got_aux) == jax.tree.map(jnp.shape, want_aux)


@pytest.mark.parametrize(
    "config, in_channels",
    [
        (C(4, 16, strides=8, padding="same"), 64),  # Winograd when concrete
        (C(4, 9, strides=2, padding="same"), 16),  # dilated-input and zero-padded gradients
        (C(4, 9, strides=2, padding="same", groups=2), 512),  # GEMM gradients when concrete
        (C(4, 3, padding="valid", dilation_rate=2, data_format="channels_first"), 8),
    ],
)
def test_an_exported_gradient_with_symbolic_shapes_equals_the_concrete_gradient(config, in_channels):
    params = _params(config, in_channels)
    grad = jax.grad(lambda p, x: jnp.sum(jnp.sin(ct.conv1d_transpose(p, x, config)[0])), argnums=(0, 1))
    batch, steps = export.symbolic_shape("b, t")
    spec = jax.ShapeDtypeStruct(_x_shape(config, batch, steps, in_channels), jnp.float32)
    exported = export.export(jax.jit(grad))(params, spec)
    # The concrete gradient under jit too: one compile per shape where op by op it compiled hundreds.
    concrete = jax.jit(grad)
    for b, n in [(1, 2), (2, 9)]:
        x = _x(_x_shape(config, b, n, in_channels), jnp.float32)
        for got, want in zip(jax.tree.leaves(exported.call(params, x)), jax.tree.leaves(concrete(params, x))):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("padding", PADDINGS)
def test_output_length_of_a_symbolic_length_is_the_concrete_one_at_every_size(padding):
    config = C(2, 5, strides=3, padding=padding, output_padding=1)
    (steps,) = export.symbolic_shape("t")
    length = ct.output_length(config, steps)
    exported = export.export(jax.jit(lambda x: jnp.zeros(ct.output_length(config, x.shape[0]))))(
        jax.ShapeDtypeStruct((steps,), jnp.float32)
    )
    assert not isinstance(length, int)
    for n in (1, 2, 7, 100):
        assert exported.call(jnp.zeros(n)).shape == (ct.output_length(config, n),)


def test_the_linen_module_exports_with_symbolic_shapes():
    model = ct.Conv1DTranspose(6, 4, strides=2, padding="same", activation="relu")
    variables = model.init(jax.random.key(0), jnp.ones((1, 5, 3)))
    batch, steps = export.symbolic_shape("b, t")
    exported = export.export(jax.jit(model.apply))(variables, jax.ShapeDtypeStruct((batch, steps, 3), jnp.float32))
    x = _x((2, 7, 3), jnp.float32)
    np.testing.assert_allclose(exported.call(variables, x), model.apply(variables, x), rtol=1e-6, atol=1e-6)


def test_the_nnx_module_exports_with_symbolic_shapes():
    model = ct.nnx.Conv1DTranspose(3, 6, 4, strides=2, padding="same", data_format="channels_first", rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    apply = lambda state, x: nnx.merge(graphdef, state)(x)
    batch, steps = export.symbolic_shape("b, t")
    exported = export.export(jax.jit(apply))(state, jax.ShapeDtypeStruct((batch, 3, steps), jnp.float32))
    x = _x((2, 3, 7), jnp.float32)
    np.testing.assert_allclose(exported.call(state, x), model(x), rtol=1e-6, atol=1e-6)


# --- any rank >= 2 ----------------------------------------------------------------------------

RANK_CONFIGS = [
    C(4, 5, strides=3, padding="same", activity_regularizer="l2"),
    C(4, 4, strides=2, padding="valid", data_format="channels_first", groups=2, activity_regularizer="l1"),
]


@pytest.mark.parametrize("config", RANK_CONFIGS, ids=["channels_last", "channels_first"])
def test_leading_axes_are_batch_axes_and_an_unbatched_input_is_one_example(config):
    params = _params(config, 4)
    x = _x((2, 3) + _x_shape(config, 1, 6, 4)[1:], jnp.float32)
    flat = x.reshape((6,) + x.shape[2:])

    # Every call in one program: one compile where op by op each call compiled its own dozens.
    @jax.jit
    def calls(params, x, flat):
        return [ct.conv1d_transpose(params, inputs, config) for inputs in (flat, x, flat[0], flat[:1])]

    (want, want_aux), (got, got_aux), (single, single_aux), (_, one) = calls(params, x, flat)
    np.testing.assert_array_equal(got, want.reshape((2, 3) + want.shape[1:]))
    np.testing.assert_allclose(got_aux["activity"], want_aux["activity"], rtol=1e-6)
    np.testing.assert_allclose(single, want[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(single_aux["activity"], one["activity"], rtol=1e-6)


def test_a_per_example_vmap_equals_the_batched_call():
    config = C(8, 16, strides=8, padding="same")
    params, x = _params(config, 64), _x((3, 10, 64), jnp.float32)
    batched = lambda x: ct.conv1d_transpose(params, x, config)[0]
    mapped, want = jax.jit(lambda x: (jax.vmap(batched)(x), batched(x)))(x)
    np.testing.assert_allclose(mapped, want, rtol=1e-6, atol=1e-5)
    loss = lambda x: jnp.sum(ct.conv1d_transpose(params, x, config)[0])
    grads = jax.jit(jax.vmap(jax.grad(loss)))(x)
    want = jax.jit(jax.grad(loss))(x)
    np.testing.assert_allclose(grads, want, rtol=1e-5, atol=1e-4)


def test_the_linen_module_takes_any_rank():
    model = ct.Conv1DTranspose(4, 3, strides=2)
    variables = jax.jit(model.init)(jax.random.key(0), jnp.ones((5, 2)))
    x = _x((2, 3, 5, 2), jnp.float32)
    # One program for the three calls, not op by op.
    want, got, single = jax.jit(lambda v, x: [model.apply(v, inputs) for inputs in (x.reshape(6, 5, 2), x, x[0, 0])])(
        variables, x
    )
    np.testing.assert_array_equal(got, want.reshape((2, 3) + want.shape[1:]))
    np.testing.assert_allclose(single, want[0], rtol=1e-6, atol=1e-6)


def test_the_nnx_module_takes_any_rank():
    model = ct.nnx.Conv1DTranspose(2, 4, 3, strides=2, rngs=nnx.Rngs(0))
    x = _x((2, 3, 5, 2), jnp.float32)
    # One program for the three calls, not op by op.
    want, got, single = nnx.jit(lambda model, x: [model(inputs) for inputs in (x.reshape(6, 5, 2), x, x[1, 2])])(
        model, x
    )
    np.testing.assert_array_equal(got, want.reshape((2, 3) + want.shape[1:]))
    np.testing.assert_allclose(single, want[5], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("batch", [(), (2, 3)], ids=["unbatched", "two_batch_axes"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_streaming_takes_any_rank(batch, data_format):
    config = C(4, 5, strides=3, padding="same", data_format=data_format)
    params = _params(config, 2)
    time = -2 if data_format == "channels_last" else -1
    x = _x(batch + ((11, 2) if data_format == "channels_last" else (2, 11)), jnp.float32)

    # The stream, the whole-signal call and the chunked call in one program: one compile where
    # each step's chunk length, the finish and the glue compiled their own.
    @jax.jit
    def run(params, x):
        state = streaming.init(config, batch)
        pieces = []
        for start, stop in [(0, 4), (4, 5), (5, 11)]:
            state, y = streaming.step(params, state, jax.lax.slice_in_dim(x, start, stop, axis=time % x.ndim), config)
            pieces.append(y)
        pieces.append(streaming.finish(params, state, config))
        whole = ct.conv1d_transpose(params, x, config)[0]
        chunked = streaming.chunked_conv1d_transpose(params, x, config, 4)[0]
        return jnp.concatenate(pieces, axis=time), whole, chunked

    stream, want, chunked = run(params, x)
    start = streaming.latency(config)
    got = jax.lax.slice_in_dim(stream, start, start + want.shape[time], axis=time % x.ndim)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(chunked, want, rtol=1e-5, atol=1e-5)


def test_a_stream_refuses_chunks_with_other_batch_axes():
    config = C(4, 5, strides=3, padding="same")
    state = streaming.init(config, (2, 3))
    with pytest.raises(ValueError, match=r"batch axes \(6,\)"):
        streaming.step(_params(config, 2), state, jnp.ones((6, 4, 2)), config)

"""Streaming evaluation: chunk by chunk, with a carried state, equals the whole-signal op."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convtrans as ct
from convtrans import streaming

# Every padding mode, with strides, dilation, groups and both data formats among them.
CONFIGS = [
    dict(kernel_size=4, strides=2, padding="same"),
    dict(kernel_size=5, strides=3, padding="same", output_padding=1),
    dict(kernel_size=16, strides=8, padding="same", data_format="channels_first"),
    dict(kernel_size=3, strides=1, padding="same", dilation_rate=3, groups=2),
    dict(kernel_size=2, strides=4, padding="same", output_padding=0),
    dict(kernel_size=3, strides=2, padding="valid"),
    dict(kernel_size=2, strides=5, padding="valid", data_format="channels_first"),
    dict(kernel_size=4, strides=3, padding="valid", output_padding=2, groups=2),
    dict(kernel_size=3, strides=1, padding="valid", dilation_rate=2, data_format="channels_first"),
    dict(kernel_size=5, strides=3, padding=(1, 2), output_padding=2),
    dict(kernel_size=3, strides=2, padding=3, dilation_rate=2, data_format="channels_first", groups=2),
    dict(kernel_size=4, strides=4, padding=(0, 3), output_padding=1),
    dict(kernel_size=7, strides=2, padding=(6, 0), groups=2),
    dict(kernel_size=1, strides=3, padding=(0, 1), output_padding=2, data_format="channels_first"),
]
CONFIG_IDS = [",".join(f"{k}={v}" for k, v in c.items()) for c in CONFIGS]
IN_CHANNELS, FILTERS = 4, 2


def make_config(**fields):
    return ct.Conv1DTransposeConfig(filters=FILTERS, **fields)


def integer_valued(rng, shape):
    """Small integers: every partial sum is exact in float32, so chunked == whole, bit for bit."""
    return jnp.asarray(rng.integers(-3, 4, shape), jnp.float32)


def make_params(rng, config, *, integers=True):
    draw = integer_valued if integers else (lambda r, s: jnp.asarray(r.standard_normal(s), jnp.float32))
    params = {"kernel": draw(rng, config.kernel_shape(IN_CHANNELS))}
    if config.use_bias:
        params["bias"] = draw(rng, (config.filters,))
    return params


def signal(rng, config, steps, batch=2, *, integers=True):
    shape = (batch, steps, IN_CHANNELS) if config.data_format == "channels_last" else (batch, IN_CHANNELS, steps)
    return integer_valued(rng, shape) if integers else jnp.asarray(rng.standard_normal(shape), jnp.float32)


whole = jax.jit(ct.conv1d_transpose, static_argnums=2, static_argnames="implementation")
step = jax.jit(streaming.step, static_argnums=3, static_argnames="implementation")
finish = jax.jit(streaming.finish, static_argnums=2)


def random_chunking(rng, steps):
    """Chunk sizes summing to ``steps``: 1s, small and large sizes, and an uneven remainder."""
    sizes = []
    while sum(sizes) < steps:
        sizes.append(int(rng.choice([1, 2, 3, 4])))
    sizes[-1] -= sum(sizes) - steps
    return sizes


def stream(params, x, config, sizes, implementation=None):
    """Run the stream over chunks of the given sizes; return all emitted samples concatenated."""
    axis = config.time_axis % 3
    state = streaming.init(config, x.shape[0], x.dtype)
    pieces, start = [], 0
    for size in sizes:
        chunk = jax.lax.slice_in_dim(x, start, start + size, axis=axis)
        state, y = step(params, state, chunk, config, implementation=implementation)
        assert y.shape[axis] == size * config.strides
        pieces.append(y)
        start += size
    tail = finish(params, state, config)
    assert tail.shape[axis] == streaming.tail_length(config)
    return jnp.concatenate(pieces + [tail], axis=axis)


def strip_latency(emitted, config, steps):
    axis = config.time_axis % 3
    start = streaming.latency(config)
    return jax.lax.slice_in_dim(emitted, start, start + ct.output_length(config, steps), axis=axis)


# Each layer with two of the three implementations, rotating, so each implementation meets two
# thirds of the layers.
@pytest.mark.parametrize(
    "fields, implementation",
    [
        pytest.param(fields, implementation, id=f"{implementation}-{config_id}")
        for index, (fields, config_id) in enumerate(zip(CONFIGS, CONFIG_IDS))
        for offset, implementation in enumerate(sorted(ct.IMPLEMENTATIONS))
        if (index + offset) % 3 != 0
    ],
)
def test_random_chunkings_reproduce_the_whole_signal_bit_for_bit(fields, implementation):
    config = make_config(**fields)
    rng = np.random.default_rng(CONFIGS.index(fields))
    params = make_params(rng, config)
    steps = 11
    x = signal(rng, config, steps)
    expected, _ = whole(params, x, config, implementation=implementation)
    for sizes in ([1] * steps, random_chunking(rng, steps), [4, 4, 3]):
        emitted = stream(params, x, config, sizes, implementation)
        np.testing.assert_array_equal(strip_latency(emitted, config, steps), expected, err_msg=f"chunks {sizes}")


@pytest.mark.parametrize("fields", CONFIGS[::3], ids=CONFIG_IDS[::3])
def test_streaming_matches_with_float_data_bias_and_a_nonlinear_activation(fields):
    config = make_config(**fields, activation="gelu")
    rng = np.random.default_rng(1)
    params = make_params(rng, config, integers=False)
    x = signal(rng, config, 11, integers=False)
    expected, _ = whole(params, x, config)
    emitted = stream(params, x, config, random_chunking(rng, 11))
    np.testing.assert_allclose(strip_latency(emitted, config, 11), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fields", CONFIGS, ids=CONFIG_IDS)
def test_steps_plus_tail_cover_latency_plus_output_for_every_length(fields):
    config = make_config(**fields)
    for steps in range(1, 40):
        try:
            out = ct.output_length(config, steps)
        except ValueError:  # the padding crops more than this short input gives
            continue
        assert steps * config.strides + streaming.tail_length(config) == streaming.latency(config) + out


def test_the_stream_starts_with_latency_zeros_even_with_bias_and_activation():
    config = make_config(kernel_size=16, strides=8, padding="same", activation="sigmoid")
    rng = np.random.default_rng(2)
    params = make_params(rng, config, integers=False)
    x = signal(rng, config, 3, integers=False)
    emitted = stream(params, x, config, [1, 1, 1])
    delay = streaming.latency(config)
    assert delay > 0
    np.testing.assert_array_equal(emitted[:, :delay], 0.0)
    assert np.all(np.asarray(emitted[:, delay:]) > 0)  # sigmoid of anything is positive


def test_a_signal_shorter_than_the_latency_still_comes_out_whole():
    config = make_config(kernel_size=9, strides=1, padding=(8, 0), groups=2)
    rng = np.random.default_rng(3)
    params = make_params(rng, config)
    x = signal(rng, config, 2)
    assert streaming.latency(config) > 2
    expected, _ = whole(params, x, config)
    np.testing.assert_array_equal(strip_latency(stream(params, x, config, [1, 1]), config, 2), expected)


@pytest.mark.parametrize(
    "fields", [CONFIGS[0], CONFIGS[6], CONFIGS[10]], ids=[CONFIG_IDS[0], CONFIG_IDS[6], CONFIG_IDS[10]]
)
def test_step_runs_as_the_body_of_lax_scan_under_jit(fields):
    config = make_config(**fields)
    rng = np.random.default_rng(4)
    params = make_params(rng, config)
    chunks, size = 6, 3
    x = signal(rng, config, chunks * size)
    axis = config.time_axis % 3

    @jax.jit
    def run(params, x):
        split = x.shape[:axis] + (chunks, size) + x.shape[axis + 1 :]
        xs = jnp.moveaxis(x.reshape(split), axis, 0)
        state, ys = jax.lax.scan(
            lambda state, chunk: streaming.step(params, state, chunk, config),
            streaming.init(config, x.shape[0], x.dtype),
            xs,
        )
        ys = jnp.moveaxis(ys, 0, axis)
        return jnp.concatenate(
            [ys.reshape(ys.shape[:axis] + (-1,) + ys.shape[axis + 2 :]), streaming.finish(params, state, config)],
            axis=axis,
        )

    expected, _ = whole(params, x, config)
    np.testing.assert_array_equal(strip_latency(run(params, x), config, chunks * size), expected)


@pytest.mark.parametrize("chunk_size", [1, 4, 7, 64])
def test_chunked_conv1d_transpose_equals_the_whole_signal_op(chunk_size):
    config = make_config(kernel_size=5, strides=3, padding="same", output_padding=1, activation="tanh")
    rng = np.random.default_rng(5)
    params = make_params(rng, config, integers=False)
    x = signal(rng, config, 30, integers=False)
    expected, expected_aux = whole(params, x, config)
    y, aux = jax.jit(streaming.chunked_conv1d_transpose, static_argnums=(2, 3))(params, x, config, chunk_size)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    assert aux.keys() == expected_aux.keys()


def test_gradients_through_the_chunked_op_equal_the_whole_signal_gradients():
    config = make_config(kernel_size=4, strides=2, padding=(1, 1), activation="tanh", groups=2)
    rng = np.random.default_rng(6)
    params = make_params(rng, config, integers=False)
    x = signal(rng, config, 12, integers=False)

    def loss(op, params, x):
        return jnp.sum(jnp.sin(op(params, x)))

    chunked = functools.partial(streaming.chunked_conv1d_transpose, config=config, chunk_size=5)
    full = functools.partial(ct.conv1d_transpose, config=config)
    got = jax.jit(jax.grad(lambda p, x: loss(lambda *a: chunked(*a)[0], p, x), argnums=(0, 1)))(params, x)
    want = jax.jit(jax.grad(lambda p, x: loss(lambda *a: full(*a)[0], p, x), argnums=(0, 1)))(params, x)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_the_state_has_the_documented_shape_and_is_a_pytree():
    config = make_config(kernel_size=16, strides=8, padding="same", data_format="channels_first")
    state = streaming.init(config, 3, jnp.bfloat16)
    assert state.carry.shape == (3, FILTERS, streaming.carry_length(config))
    assert state.carry.dtype == jnp.bfloat16
    assert len(jax.tree_util.tree_leaves(state)) == 2


def test_compiled_memory_of_a_long_stream_does_not_grow_with_its_length():
    config = make_config(kernel_size=16, strides=8, padding="same")
    batch, size = 1, 4
    params = {
        "kernel": jax.ShapeDtypeStruct(config.kernel_shape(IN_CHANNELS), jnp.float32),
        "bias": jax.ShapeDtypeStruct((FILTERS,), jnp.float32),
    }

    def run(params, xs):
        def body(carry, chunk):
            state, energy = carry
            state, y = streaming.step(params, state, chunk, config)
            return (state, energy + jnp.sum(y * y)), None  # a consumer that keeps no per-chunk data

        (state, energy), _ = jax.lax.scan(body, (streaming.init(config, batch), jnp.zeros(())), xs)
        return energy + jnp.sum(streaming.finish(params, state, config) ** 2)

    def temp_bytes(chunks):
        xs = jax.ShapeDtypeStruct((chunks, batch, size, IN_CHANNELS), jnp.float32)
        return jax.jit(run).lower(params, xs).compile().memory_analysis().temp_size_in_bytes

    short, long = temp_bytes(2**12), temp_bytes(2**16)
    # 16x the signal (2^16 chunks: 2 MiB of output samples), and not one byte more of temporaries.
    assert long == short, (short, long)
    assert long < 64 * 1024, long


def test_compiled_temporaries_of_the_chunked_op_stay_within_twice_the_output():
    config = ct.Conv1DTransposeConfig(filters=16, kernel_size=16, strides=8, padding="same")
    steps, in_channels = 2**15, 32
    params = {
        "kernel": jax.ShapeDtypeStruct(config.kernel_shape(in_channels), jnp.float32),
        "bias": jax.ShapeDtypeStruct((16,), jnp.float32),
    }
    x = jax.ShapeDtypeStruct((1, steps, in_channels), jnp.float32)
    run = jax.jit(lambda p, x: streaming.chunked_conv1d_transpose(p, x, config, 256)[0])
    temp = run.lower(params, x).compile().memory_analysis().temp_size_in_bytes
    output = ct.output_length(config, steps) * 16 * 4
    assert temp <= 2 * output, (temp, output)


def test_a_jitted_step_traces_once_per_chunk_size_however_long_the_stream():
    config = make_config(kernel_size=5, strides=3, padding="same", activation="tanh")
    rng = np.random.default_rng(7)
    params = make_params(rng, config, integers=False)
    traces = []

    @functools.partial(jax.jit, static_argnums=3)
    def counted(params, state, chunk, config):
        traces.append(chunk.shape)
        return streaming.step(params, state, chunk, config)

    state = streaming.init(config, 2)
    for _ in range(6):  # the state's shapes and dtypes never change, so nothing retraces
        state, _ = counted(params, state, signal(rng, config, 3, integers=False), config)
    state, _ = counted(params, state, signal(rng, config, 1, integers=False), config)
    assert traces == [(2, 3, IN_CHANNELS), (2, 1, IN_CHANNELS)]


def test_one_layer_streams_take_constraint_boxed_params_as_the_module_stores_them():
    config = ct.Conv1DTransposeConfig(3, 4, strides=2, padding="same", kernel_constraint="non_neg")
    x = jnp.asarray(np.random.default_rng(5).standard_normal((1, 6, 2)), jnp.float32)
    boxed = ct.Conv1DTranspose.from_config(config).init(jax.random.key(0), x)["params"]
    assert isinstance(boxed["kernel"], ct.optim.Constrained)
    want, _ = ct.conv1d_transpose({"kernel": boxed["kernel"].value, "bias": boxed["bias"]}, x, config)
    got, _ = streaming.chunked_conv1d_transpose(boxed, x, config, 4)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_passing_a_module_for_the_config_points_to_the_streamer():
    with pytest.raises(TypeError, match=r"got the module Conv1DTranspose: pass its .config, or stream a whole model"):
        streaming.init(ct.Conv1DTranspose(3, 4), 1)

"""``streaming.Streamer``: whole models built from convtrans's parts, streamed chunk by chunk.

The oracle is the model itself on the whole signal: the concatenated stream must be ``latency``
zeros followed by ``model.apply(variables, x)``, to float rounding, for any chunking.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import convtrans as ct
from convtrans.streaming import Streamer
from examples.vocoder.models import HiFiGAN, MelGAN

RNG = np.random.default_rng(0)


def _signal(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _stream(streamer, x, chunks):
    """Feeds ``x`` in chunks of the given input steps; returns the concatenated stream."""
    axis = streamer._axis % x.ndim
    state, pieces, position = streamer.init(), [], 0
    for steps in chunks:
        state, y = streamer.step(state, jax.lax.slice_in_dim(x, position, position + steps, axis=axis))
        assert y.shape[axis] == steps * streamer.rate
        pieces.append(y)
        position += steps
    assert position == x.shape[axis]
    pieces.append(streamer.finish(state))
    return jnp.concatenate(pieces, axis=axis)


def _random_chunks(total, multiple, rng):
    """``total`` steps cut into random pieces, each a multiple of ``multiple``."""
    units, chunks = total // multiple, []
    while units:
        take = int(rng.integers(1, min(units, 4) + 1))
        chunks.append(take * multiple)
        units -= take
    return chunks


def _random_variables(model, x, seed=0):
    """Variables of ``model``'s shapes drawn by NumPy, kernels scaled by their fan-in (compiling
    ``model.init`` of a whole generator takes seconds; the weights' law does not matter here)."""
    rng = np.random.default_rng(seed)

    def draw(leaf):
        fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 100
        return jnp.asarray(rng.standard_normal(leaf.shape) / np.sqrt(fan_in), leaf.dtype)

    return jax.tree.map(draw, jax.eval_shape(model.init, jax.random.key(0), x))


def assert_streams_exactly(
    model, x, chunks=None, *, variables=None, tolerance=2e-6, more_chunkings=(), **streamer_options
):
    """The stream of ``x`` equals ``latency`` zeros then the whole-signal output, for ``chunks``
    (default: random) and every chunking in ``more_chunkings`` (one streamer: shared compiles)."""
    variables = variables if variables is not None else _random_variables(model, x)
    want = jax.jit(model.apply)(variables, x)
    streamer = Streamer(model, variables, x.shape[:-2], **streamer_options)
    axis = streamer._axis % x.ndim
    scale = max(float(jnp.abs(want).max()), 1.0)
    for chunking in [chunks or _random_chunks(x.shape[axis], streamer.chunk_multiple, RNG), *more_chunkings]:
        got = _stream(streamer, x, chunking)
        lead = jax.lax.slice_in_dim(got, 0, streamer.latency, axis=axis)
        body = jax.lax.slice_in_dim(got, streamer.latency, got.shape[axis], axis=axis)
        np.testing.assert_array_equal(lead, 0)
        assert body.shape == want.shape
        np.testing.assert_allclose(body, want, rtol=0, atol=tolerance * scale)
    return streamer


# --- each part, alone and in the simplest compositions ----------------------------------------

PARTS = {
    "same conv": ct.Conv1D(3, 3, padding="same"),
    "causal dilated conv": ct.Conv1D(3, 3, padding="causal", dilation_rate=2),
    "valid conv": ct.Conv1D(3, 4),
    "strided same conv": ct.Conv1D(3, 5, strides=2, padding="same"),
    "strided integer-padded dilated conv": ct.Conv1D(4, 3, strides=3, dilation_rate=2, padding=(2, 1)),
    "grouped conv": ct.Conv1D(4, 3, padding="same", groups=2),
    "transposed same": ct.Conv1DTranspose(3, 5, strides=2, padding="same"),
    "transposed valid dilated": ct.Conv1DTranspose(3, 3, strides=3, dilation_rate=2, padding=0),
    "transposed torch padding": ct.Conv1DTranspose(3, 7, strides=3, padding=2, output_padding=1),
    "zero pad": ct.Pad1D((2, 1)),
    "reflect pad": ct.Pad1D((3, 2), mode="reflect"),
    "replicate pad": ct.Pad1D(2, mode="replicate"),
    "reflect pad then valid conv": nn.Sequential([ct.Pad1D(3, mode="reflect"), nn.leaky_relu, ct.Conv1D(4, 7)]),
    "replicate pad then strided conv": nn.Sequential(
        [ct.Pad1D((1, 3), mode="replicate"), ct.Conv1D(4, 3, strides=2, padding=(0, 0))]
    ),
    "residual": ct.Residual(
        [nn.tanh, ct.Conv1D(4, 3, padding="same", dilation_rate=3), ct.Conv1D(4, 2, padding="causal")]
    ),
    "parallel mean": ct.Parallel(
        [ct.Conv1D(4, 3, padding="same"), ct.Conv1D(4, 5, padding="causal"), ct.Conv1D(4, 1)], combine="mean"
    ),
    "down then up": nn.Sequential(
        [ct.Conv1D(4, 4, strides=2, padding="same"), nn.relu, ct.Conv1DTranspose(4, 4, strides=2, padding="same")]
    ),
    "up then down": nn.Sequential([ct.Conv1DTranspose(4, 4, strides=3, padding="same"), ct.Conv1D(4, 3, strides=2)]),
}


@pytest.mark.parametrize("name", sorted(PARTS))
def test_each_part_streams_exactly(name):
    assert_streams_exactly(PARTS[name], _signal((2, 24, 4)), in_channels=4, data_format="channels_last")


@pytest.mark.parametrize("batch_shape", [(), (2, 3)])
def test_any_batch_axes_stream(batch_shape):
    model = nn.Sequential([ct.Conv1D(3, 3, padding="same"), ct.Conv1DTranspose(3, 4, strides=2, padding="same")])
    assert_streams_exactly(model, _signal((*batch_shape, 12, 4)), [4, 8])


def test_channels_first_models_stream():
    fmt = dict(data_format="channels_first")
    model = nn.Sequential(
        [
            ct.Pad1D(2, mode="reflect", **fmt),
            ct.Conv1D(4, 5, **fmt),
            ct.Residual(
                [
                    ct.Conv1DTranspose(4, 4, strides=2, padding="same", **fmt),
                    ct.Conv1D(4, 3, strides=2, padding="same", **fmt),
                ]
            ),
        ]
    )
    streamer = assert_streams_exactly(model, _signal((2, 4, 18)), [6, 2, 10])
    assert streamer.data_format == "channels_first" and streamer.in_channels == 4


# --- latency ---------------------------------------------------------------------------------


def test_a_causal_model_streams_with_no_latency():
    # Causal convolutions and transposed convolutions cropped on the right (EnCodec's way).
    model = nn.Sequential(
        [
            ct.Conv1D(4, 7, padding="causal"),
            nn.elu,
            ct.Conv1DTranspose(4, 8, strides=4, padding=(0, 4)),
            ct.Residual([ct.Conv1D(4, 3, padding="causal", dilation_rate=3), nn.elu, ct.Conv1D(4, 1)]),
            ct.Conv1D(2, 4, strides=2, padding="causal"),
        ]
    )
    assert assert_streams_exactly(model, _signal((1, 10, 3)), [2, 4, 4]).latency == 0


def test_latency_is_the_lookahead_of_a_centred_kernel():
    # Output t of a "same" kernel of span 7 needs input t + 3, of one strided by 2 output t ...
    assert assert_streams_exactly(ct.Conv1D(2, 7, padding="same"), _signal((1, 12, 2))).latency == 3
    # ... and reflection padding costs no more than zero padding does.
    mirrored = nn.Sequential([ct.Pad1D(3, mode="reflect"), ct.Conv1D(2, 7)])
    assert assert_streams_exactly(mirrored, _signal((1, 12, 2))).latency == 3


def test_branches_of_different_latencies_are_aligned():
    model = ct.Parallel([ct.Conv1D(2, 1), ct.Conv1D(2, 9, padding="same"), ct.Conv1D(2, 3, padding="causal")])
    assert assert_streams_exactly(model, _signal((1, 12, 2)), [1, 5, 6]).latency == 4


# --- whole generators --------------------------------------------------------------------------

GENERATORS = {"hifigan": HiFiGAN(upsample_initial_channel=16), "melgan": MelGAN(ngf=4)}


# The sizes, frames and chunk sizes of tests/test_vocoder_example.py's run of the script, and in its
# xdist group: the script's whole-signal, step and finish programs are these (each a few seconds
# to compile), served from the process's persistent compilation cache.
@pytest.mark.xdist_group("vocoder-generators")
@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generators_stream_exactly_for_random_chunkings(name):
    mel = _signal((1, 16, 80), seed=1)
    model = GENERATORS[name]
    variables = _random_variables(model, mel, seed=1)
    assert_streams_exactly(
        model, mel, [1] * 3 + [8] + [1] * 5, more_chunkings=[[1, 8] + [1] * 7], variables=variables, tolerance=1e-5
    )


# --- random compositions -----------------------------------------------------------------------

CHANNELS = 2


@st.composite
def _keeping_length(draw, depth):
    """A part whose output has its input's length and channels."""
    kind = draw(
        st.sampled_from(["same", "causal", "mirror", "act", "updown"] + (["residual", "parallel"] if depth else []))
    )
    k = draw(st.integers(1, 5))
    d = draw(st.integers(1, 2))
    if kind == "same":
        return ct.Conv1D(CHANNELS, k, padding="same", dilation_rate=d, groups=draw(st.sampled_from([1, 2])))
    if kind == "causal":
        return ct.Conv1D(CHANNELS, k, padding="causal", dilation_rate=d)
    if kind == "mirror":
        p = draw(st.integers(1, 2))
        return nn.Sequential(
            [ct.Pad1D(p, mode=draw(st.sampled_from(["reflect", "replicate"]))), ct.Conv1D(CHANNELS, 2 * p + 1)]
        )
    if kind == "act":
        return draw(st.sampled_from([nn.tanh, nn.sigmoid, nn.leaky_relu]))
    if kind == "updown":
        s = draw(st.integers(2, 3))
        return nn.Sequential(
            [
                ct.Conv1DTranspose(CHANNELS, draw(st.integers(1, 6)), strides=s, padding="same"),
                ct.Conv1D(CHANNELS, draw(st.integers(1, 5)), strides=s, padding="same"),
            ]
        )
    inner = [draw(_keeping_length(depth - 1)) for _ in range(draw(st.integers(1, 2)))]
    if kind == "residual":
        return ct.Residual(inner)
    return ct.Parallel(
        [[part] for part in inner] + [ct.Conv1D(CHANNELS, 1)], combine=draw(st.sampled_from(["sum", "mean"]))
    )


@st.composite
def _any_part(draw):
    kind = draw(st.sampled_from(["keep", "conv", "transpose", "pad"]))
    if kind == "keep":
        return draw(_keeping_length(depth=1))
    k, s = draw(st.integers(1, 5)), draw(st.integers(1, 2))
    if kind == "conv":
        padding = draw(st.sampled_from(["valid", "same", "causal", (1, 0), (0, 2)]))
        d = draw(st.integers(1, 2)) if s == 1 or not isinstance(padding, str) else 1
        return ct.Conv1D(CHANNELS, k, strides=s, padding=padding, dilation_rate=d)
    if kind == "transpose":
        padding = draw(st.sampled_from(["valid", "same", 0, 1]))
        d = draw(st.integers(1, 2)) if s == 1 or not isinstance(padding, str) else 1
        return ct.Conv1DTranspose(CHANNELS, k, strides=s, padding=padding, dilation_rate=d)
    return ct.Pad1D(
        (draw(st.integers(0, 2)), draw(st.integers(0, 2))),
        mode=draw(st.sampled_from(["constant", "reflect", "replicate"])),
    )


@settings(max_examples=10, database=None)
@given(parts=st.lists(_any_part(), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_random_compositions_stream_exactly(parts, seed):
    model = nn.Sequential(parts)
    x = _signal((2, 24, CHANNELS), seed)
    try:
        variables = _random_variables(model, x, seed)
        jax.eval_shape(model.apply, variables, x)
    except ValueError:  # e.g. a valid convolution longer than what is left of the signal
        assume(False)
    streamer = Streamer(model, variables, 2, in_channels=CHANNELS, data_format="channels_last")
    length = 24 - 24 % streamer.chunk_multiple
    x = x[:, :length]
    try:
        jax.eval_shape(model.apply, variables, x)
    except ValueError:
        assume(False)
    chunks = _random_chunks(length, streamer.chunk_multiple, np.random.default_rng(seed))
    assert_streams_exactly(model, x, chunks, variables=variables, in_channels=CHANNELS, data_format="channels_last")


# --- transformations, memory, sharding ----------------------------------------------------------


def test_step_is_a_lax_scan_body():
    model = nn.Sequential([ct.Conv1D(3, 3, padding="same"), ct.Conv1DTranspose(3, 4, strides=2, padding="same")])
    x = _signal((2, 12, 4))
    variables = model.init(jax.random.key(0), x)
    streamer = Streamer(model, variables, 2)
    chunks = jnp.moveaxis(x.reshape(2, 4, 3, 4), 1, 0)  # four chunks of 3 steps

    @jax.jit
    def run(chunks):
        state, ys = jax.lax.scan(streamer.step, streamer.init(), chunks)
        return jnp.concatenate([jnp.moveaxis(ys, 0, 1).reshape(2, -1, 3), streamer.finish(state)], axis=1)

    got = run(chunks)
    np.testing.assert_allclose(got[:, streamer.latency :], model.apply(variables, x), atol=2e-6)


def _bytes(tree):
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree))


def test_streaming_memory_is_flat_in_signal_length():
    model = GENERATORS["melgan"]
    mel = _signal((1, 4, 80))
    variables = _random_variables(model, mel)
    streamer = Streamer(model, variables, 1)
    state = streamer.init()
    shapes = jax.tree.map(jnp.shape, state)
    memory = {}
    for frames in (8, 64):
        chunks = _signal((frames // 2, 1, 2, 80))
        scan = jax.jit(lambda s, c: jax.lax.scan(streamer.step, s, c)[0])  # the state alone comes back
        compiled = scan.lower(state, chunks).compile()
        memory[frames] = compiled.memory_analysis().temp_size_in_bytes
        final = scan(state, chunks)
        assert jax.tree.map(jnp.shape, final) == shapes
    assert memory[8] == memory[64]
    assert _bytes(state) < 1e6


def test_every_leaf_of_the_state_is_batch_first():
    model = nn.Sequential([ct.Pad1D(2, mode="reflect"), ct.Conv1D(3, 5), ct.Residual(ct.Conv1D(3, 3, padding="same"))])
    streamer = Streamer(model, _random_variables(model, _signal((5, 8, 2))), (5, 2))
    leaves = jax.tree.leaves(streamer.init())
    assert len(leaves) > 4 and all(leaf.shape[:2] == (5, 2) for leaf in leaves)


def test_the_state_shards_over_the_batch():
    devices = np.array(jax.devices()[:4])
    if devices.size < 4:
        pytest.skip("needs 4 devices (tests/conftest.py simulates 8 on CPU)")
    mesh = Mesh(devices, ("batch",))
    model = nn.Sequential(
        [
            ct.Pad1D(2, mode="reflect"),
            ct.Conv1D(3, 5),
            ct.Conv1DTranspose(3, 4, strides=2, padding="same"),
            ct.Parallel([ct.Conv1D(3, 1), ct.Conv1D(3, 3, padding="same")]),
        ]
    )
    x = _signal((8, 12, 4))
    variables = _random_variables(model, x)
    streamer = Streamer(model, variables, 8)
    batch = NamedSharding(mesh, PartitionSpec("batch"))
    state = jax.device_put(streamer.init(), batch)  # every leaf is batch first, counters too
    pieces = []
    for start in range(0, 12, 4):
        state, y = streamer.step(state, jax.device_put(x[:, start : start + 4], batch))
        pieces.append(y)
    for leaf in jax.tree.leaves(state):
        if leaf.size:  # an empty carry has nothing to shard
            assert leaf.sharding.is_equivalent_to(batch, leaf.ndim), leaf.sharding
    got = jnp.concatenate(pieces + [streamer.finish(state)], axis=1)
    np.testing.assert_allclose(got[:, streamer.latency :], model.apply(variables, x), atol=1e-5)


# --- parameters as flax stores them ------------------------------------------------------------


def test_constraint_boxed_params_stream():
    model = nn.Sequential(
        [
            ct.Conv1D(3, 3, padding="same", kernel_constraint="max_norm"),
            ct.Conv1DTranspose(3, 4, strides=2, padding="same", kernel_constraint="non_neg"),
        ]
    )
    x = _signal((1, 10, 2))
    variables = model.init(jax.random.key(0), x)
    assert any(
        isinstance(leaf, ct.optim.Constrained)
        for leaf in jax.tree.leaves(variables, is_leaf=lambda v: isinstance(v, ct.optim.Constrained))
    )
    assert_streams_exactly(model, x, [5, 5], variables=variables)


def test_weight_normed_params_stream():
    model = nn.Sequential(
        [
            nn.WeightNorm(ct.Conv1D(3, 3, padding="same")),
            nn.leaky_relu,
            nn.WeightNorm(ct.Conv1DTranspose(3, 4, strides=2, padding="same")),
        ]
    )
    assert_streams_exactly(model, _signal((1, 10, 2)), [5, 5])


# --- nnx ---------------------------------------------------------------------------------------


class _NnxGenerator(nnx.Module):
    """Every part, in nnx: a stem, an upsampler, a MelGAN-style block and a residual."""

    def __init__(self, rngs):
        N = ct.nnx
        self.stem = N.Conv1D(3, 4, 7, padding="same", rngs=rngs)
        self.up = N.Conv1DTranspose(4, 4, 4, strides=2, padding="same", rngs=rngs)
        self.block = N.Parallel(
            [
                N.Conv1D(4, 4, 1, rngs=rngs),
                [nn.leaky_relu, N.Pad1D(2, "reflect"), N.Conv1D(4, 4, 3, dilation_rate=2, rngs=rngs)],
            ]
        )
        self.residual = N.Residual([jnp.tanh, N.Conv1D(4, 4, 3, padding="causal", rngs=rngs)])

    def __call__(self, x):
        return self.residual(self.block(self.up(nn.leaky_relu(self.stem(x)))))


def test_nnx_models_stream_exactly():
    model = _NnxGenerator(nnx.Rngs(0))
    x = _signal((2, 12, 3))
    want = model(x)
    streamer = Streamer(model, batch_size=2)
    assert streamer.in_channels == 3 and streamer.rate == 2
    for chunks in ([3, 5, 4], [1] * 12):
        got = _stream(streamer, x, chunks)
        np.testing.assert_array_equal(got[:, : streamer.latency], 0)
        np.testing.assert_allclose(got[:, streamer.latency :], want, atol=2e-6)


# --- errors --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def streamer():
    model = nn.Sequential([ct.Conv1D(3, 3, strides=2, padding="same"), ct.Conv1DTranspose(3, 4, strides=4)])
    return Streamer(model, model.init(jax.random.key(0), _signal((2, 8, 4))), 2)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 4, 5), r"chunk has shape \(2, 4, 5\).*batch \(2,\) and in_channels=4"),
        ((3, 4, 4), r"chunk has shape \(3, 4, 4\)"),
        ((4, 4), r"chunk has shape \(4, 4\)"),
        ((2, 3, 4), r"chunk has 3 time steps; chunks must hold a positive multiple of 2"),
    ],
)
def test_a_wrong_chunk_shape_is_an_error_naming_it(streamer, shape, message):
    with pytest.raises(ValueError, match=message):
        streamer.step(streamer.init(), jnp.zeros(shape))


def test_a_wrong_chunk_dtype_is_an_error_naming_it(streamer):
    with pytest.raises(TypeError, match="chunk has dtype bfloat16 but the stream was made for float32"):
        streamer.step(streamer.init(), jnp.zeros((2, 4, 4), jnp.bfloat16))


def test_a_wrong_state_is_an_error_naming_it(streamer):
    state = streamer.init()
    key = sorted(state["layers"])[0]
    broken = {**state, "layers": {**state["layers"], key: {**state["layers"][key], "history": jnp.zeros((1, 1, 4))}}}
    with pytest.raises(ValueError, match=rf"state\['layers'\]\['{key}'\]\['history'\] is \(1, 1, 4\) float32"):
        streamer.step(broken, jnp.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"state\['layers'\]\['layers_1'\]\['carry'\] is missing"):
        streamer.step({**state, "layers": {key: state["layers"][key]}}, jnp.zeros((2, 4, 4)))
    with pytest.raises(TypeError, match="state must be the dict that this streamer's init"):
        streamer.finish(ct.streaming.init(ct.Conv1DTransposeConfig(3, 4), 2))


def test_a_model_the_streamer_cannot_follow_is_an_error_naming_it():
    with pytest.raises(
        TypeError, match=r"model must be a flax\.linen\.Module or a flax\.nnx\.Module, got Conv1DTransposeConfig"
    ):
        Streamer(ct.Conv1DTransposeConfig(3, 4), {}, 1)
    with pytest.raises(TypeError, match=r"a linen model streams with its variables: Streamer\(model, variables"):
        Streamer(ct.Conv1D(2, 3), batch_size=1)
    with pytest.raises(ValueError, match="runs no convtrans Conv1D or Conv1DTranspose"):
        Streamer(nn.Sequential([nn.tanh]), {}, 1)

    class Twice(nn.Module):
        @nn.compact
        def __call__(self, x):
            conv = ct.Conv1D(2, 3, padding="same")
            return conv(conv(x))

    x = _signal((1, 6, 2))
    with pytest.raises(ValueError, match="the layer at 'Conv1D_0' ran twice in one pass"):
        Streamer(Twice(), Twice().init(jax.random.key(0), x), 1)

    # Whole-signal apply would reject it too; the streamer says which path differs.
    same = ct.Parallel([ct.Conv1D(2, 3, padding="same"), ct.Conv1D(2, 1)])
    with pytest.raises(ValueError, match=r"Parallel at .*'branch_1' changes the signal's length differently"):
        Streamer(ct.Parallel([ct.Conv1D(2, 3), ct.Conv1D(2, 1)]), same.init(jax.random.key(0), x), 1)

"""``Residual`` and ``Parallel``: skip connections and multi-branch fusion, checked against the
same computation written out with the pure functions."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import convtrans as ct

X = jnp.asarray(np.random.default_rng(0).standard_normal((2, 11, 4)), jnp.float32)


def _conv(params, x, **kwargs):
    return ct.conv1d(params, x, ct.Conv1DConfig(4, padding="same", **kwargs))[0]


def test_residual_adds_the_input_to_its_layers_applied_in_order():
    model = ct.Residual([nn.leaky_relu, ct.Conv1D(4, 3, padding="same", dilation_rate=2), jnp.tanh])
    variables = model.init(jax.random.key(0), X)
    conv = variables["params"]["layers_1"]
    want = X + jnp.tanh(_conv(conv, nn.leaky_relu(X), kernel_size=3, dilation_rate=2))
    np.testing.assert_allclose(model.apply(variables, X), want, rtol=1e-6, atol=1e-6)


def test_residual_takes_a_single_module():
    model = ct.Residual(ct.Conv1D(4, 5, padding="same"))
    variables = model.init(jax.random.key(1), X)
    want = X + _conv(variables["params"]["layers"], X, kernel_size=5)
    np.testing.assert_allclose(model.apply(variables, X), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("combine", ["sum", "mean"])
def test_parallel_combines_branches_fed_the_same_input(combine):
    model = ct.Parallel([ct.Conv1D(4, 3, padding="same"), [nn.relu, ct.Conv1D(4, 7, padding="same")]], combine=combine)
    variables = model.init(jax.random.key(2), X)
    params = variables["params"]
    total = _conv(params["branches_0"], X, kernel_size=3) + _conv(params["branches_1_1"], nn.relu(X), kernel_size=7)
    want = total / 2 if combine == "mean" else total
    np.testing.assert_allclose(model.apply(variables, X), want, rtol=1e-6, atol=1e-6)


def test_the_parts_compose_in_flax_sequential_as_a_hifigan_block_does():
    block = lambda k: ct.Residual(
        [
            nn.leaky_relu,
            ct.Conv1D(4, k, padding="same", dilation_rate=3),
            nn.leaky_relu,
            ct.Conv1D(4, k, padding="same"),
        ]
    )
    model = nn.Sequential(
        [ct.Conv1DTranspose(4, 4, strides=2, padding="same"), ct.Parallel([block(3), block(5)], combine="mean")]
    )
    variables = model.init(jax.random.key(3), X)
    y = jax.jit(model.apply)(variables, X)
    assert y.shape == (2, 22, 4)
    grads = jax.grad(lambda v: jnp.sum(model.apply(v, X) ** 2))(variables)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(grads))


def test_shapes_that_cannot_be_combined_are_errors_naming_them():
    with pytest.raises(ValueError, match=r"keep the input's shape: x is \(2, 11, 4\).*\(2, 11, 3\)"):
        ct.Residual(ct.Conv1D(3, 3, padding="same")).init(jax.random.key(0), X)
    with pytest.raises(ValueError, match="one output shape"):
        ct.Parallel([ct.Conv1D(4, 3), ct.Conv1D(4, 3, padding="same")]).init(jax.random.key(0), X)
    with pytest.raises(ValueError, match="combine='max' is unknown"):
        ct.Parallel([jnp.tanh], combine="max").init(jax.random.key(0), X)
    with pytest.raises(TypeError, match="non-empty sequence"):
        ct.Parallel([]).init(jax.random.key(0), X)


@pytest.mark.parametrize("mode, numpy_mode", [("constant", "constant"), ("reflect", "reflect"), ("replicate", "edge")])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_pad1d_pads_time_as_numpy_does(mode, numpy_mode, data_format):
    x = X if data_format == "channels_last" else jnp.swapaxes(X, 1, 2)
    widths = [(0, 0), (3, 1), (0, 0)] if data_format == "channels_last" else [(0, 0), (0, 0), (3, 1)]
    for pad in (
        ct.Pad1D((3, 1), mode=mode, data_format=data_format),
        ct.nnx.Pad1D((3, 1), mode=mode, data_format=data_format),
    ):
        y = pad.apply({}, x) if isinstance(pad, nn.Module) else pad(x)
        np.testing.assert_array_equal(y, np.pad(np.asarray(x), widths, mode=numpy_mode))


def test_pad1d_errors_name_the_argument():
    with pytest.raises(ValueError, match="mode='wrap' is unknown"):
        ct.Pad1D(1, mode="wrap").apply({}, X)
    with pytest.raises(ValueError, match=r"padding must be an int >= 0 or a \(left, right\) pair"):
        ct.nnx.Pad1D((1, -1))
    with pytest.raises(ValueError, match=r"reflect padding by \(11, 11\) needs more than 11 steps"):
        ct.Pad1D(11, mode="reflect").apply({}, X)


def test_nnx_residual_and_parallel_compute_as_the_linen_ones_do():
    rngs = nnx.Rngs(0)
    conv = ct.nnx.Conv1D(4, 4, 3, padding="same", rngs=rngs)
    other = ct.nnx.Conv1D(4, 4, 5, padding="causal", rngs=rngs)
    np.testing.assert_allclose(ct.nnx.Residual([nn.relu, conv])(X), X + conv(nn.relu(X)), rtol=1e-6, atol=1e-6)
    mean = ct.nnx.Parallel([conv, [jnp.tanh, other]], combine="mean")
    np.testing.assert_allclose(mean(X), (conv(X) + other(jnp.tanh(X))) / 2, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="combine='max' is unknown"):
        ct.nnx.Parallel([conv], combine="max")

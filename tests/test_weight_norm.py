"""``weight_norm=True``: the kernel as direction and gain, equal to ``torch.nn.utils.weight_norm``
in value and gradients, loaded from and saved to PyTorch state dicts."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import convtrans as ct
from convtrans import interop
from convtrans.streaming import Streamer


class _Wrapped(nn.Module):
    """One weight-normed layer named ``layer``, as a torch model with an attribute ``layer``."""

    layer: nn.Module

    @nn.compact
    def __call__(self, x):
        return self.layer(x)


def _pair(kind):
    torch.manual_seed(0)
    if kind == "conv":
        torch_layer = torch.nn.Conv1d(4, 6, 5, padding=2, dilation=1, groups=2)
        layer = ct.Conv1D(6, 5, padding=2, groups=2, weight_norm=True, data_format="channels_first", name="layer")
    else:
        torch_layer = torch.nn.ConvTranspose1d(4, 6, 4, stride=2, padding=1, groups=2)
        layer = ct.Conv1DTranspose(
            6, 4, strides=2, padding=1, groups=2, weight_norm=True, data_format="channels_first", name="layer"
        )
    torch_model = torch.nn.Module()
    torch_model.layer = torch.nn.utils.parametrizations.weight_norm(torch_layer)
    with torch.no_grad():
        torch_model.layer.parametrizations.weight.original0.mul_(1.3)
    return torch_model, _Wrapped(layer)


@pytest.mark.parametrize("kind", ["conv", "transpose"])
def test_values_and_gradients_equal_torch_weight_norm(kind):
    torch_model, model = _pair(kind)
    x = torch.randn(2, 4, 9)
    variables = model.init(jax.random.key(0), jnp.asarray(x.numpy()))
    variables = interop.load_torch_state_dict(variables, torch_model.state_dict())
    params = variables["params"]["layer"]
    assert params["scale"].shape == (6 if kind == "conv" else 4,)  # torch's dim=0: filters / inputs

    y_torch = torch_model.layer(x)
    (y_torch**2).sum().backward()
    _y, grads = jax.value_and_grad(lambda v: jnp.sum(model.apply(v, jnp.asarray(x.numpy())) ** 2))(variables)
    np.testing.assert_allclose(
        model.apply(variables, jnp.asarray(x.numpy())), y_torch.detach().numpy(), rtol=1e-5, atol=1e-5
    )
    weight = torch_model.layer.parametrizations.weight
    np.testing.assert_allclose(
        grads["params"]["layer"]["scale"], weight.original0.grad.numpy().reshape(-1), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(
        grads["params"]["layer"]["kernel"], weight.original1.grad.numpy().transpose(2, 1, 0), rtol=1e-4, atol=1e-4
    )


def test_the_initial_kernel_is_the_direction_itself():
    layer = ct.Conv1DTranspose(3, 4, strides=2, weight_norm=True)
    x = jnp.ones((1, 5, 2))
    params = layer.init(jax.random.key(0), x)["params"]
    np.testing.assert_allclose(params["scale"], jnp.sqrt(jnp.sum(params["kernel"] ** 2, axis=(0, 1))), rtol=1e-6)
    plain = {"params": {"kernel": params["kernel"], "bias": params["bias"]}}
    np.testing.assert_allclose(
        layer.apply({"params": params}, x), ct.Conv1DTranspose(3, 4, strides=2).apply(plain, x), rtol=1e-6, atol=1e-6
    )


def test_nnx_layers_take_weight_norm_too():
    net = ct.nnx.Conv1D(2, 3, 3, padding="same", weight_norm=True, rngs=nnx.Rngs(0))
    net.scale[...] = net.scale[...] * 2.0
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 6, 2)), jnp.float32)
    linen = ct.Conv1D(3, 3, padding="same", weight_norm=True)
    params = {"kernel": net.kernel[...], "scale": net.scale[...], "bias": net.bias[...]}
    np.testing.assert_allclose(net(x), linen.apply({"params": params}, x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        net(x),
        2 * ct.nnx.Conv1D(2, 3, 3, padding="same", rngs=nnx.Rngs(0))(x)
        - ct.nnx.Conv1D(2, 3, 3, padding="same", rngs=nnx.Rngs(0)).bias[...],
        rtol=1e-5,
        atol=1e-5,
    )


def test_weight_normed_layers_stream_and_save_to_torch():
    torch_model, model = _pair("transpose")
    x = jnp.asarray(np.random.default_rng(1).standard_normal((1, 4, 8)), jnp.float32)
    variables = interop.load_torch_state_dict(model.init(jax.random.key(0), x), torch_model.state_dict())
    streamer = Streamer(model, variables, 1)
    state, pieces = streamer.init(), []
    for start in range(0, 8, 2):
        state, y = streamer.step(state, x[..., start : start + 2])
        pieces.append(y)
    got = jnp.concatenate(pieces + [streamer.finish(state)], axis=-1)[..., streamer.latency :]
    np.testing.assert_allclose(got, model.apply(variables, x), rtol=1e-5, atol=1e-5)

    saved = interop.to_torch_state_dict(variables, torch_model)
    for key, value in torch_model.state_dict().items():
        np.testing.assert_allclose(saved[key].numpy(), value.numpy(), rtol=1e-6, atol=1e-7)


class _FlaxWeightNormed(nn.Module):
    """flax's own WeightNorm around convtrans layers (one of them constraint-boxed)."""

    @nn.compact
    def __call__(self, x):
        x = nn.WeightNorm(ct.Conv1DTranspose(3, 4, strides=2, data_format="channels_first", name="up"))(x)
        return nn.WeightNorm(
            ct.Conv1D(2, 3, padding=1, kernel_constraint="max_norm", data_format="channels_first", name="post")
        )(x)


def _torch_up_post(weight_normed):
    torch.manual_seed(5)
    model = torch.nn.Module()
    model.up = torch.nn.ConvTranspose1d(2, 3, 4, stride=2)
    model.post = torch.nn.Conv1d(3, 2, 3, padding=1)
    if weight_normed:
        for name in ("up", "post"):
            torch.nn.utils.parametrizations.weight_norm(getattr(model, name))
            with torch.no_grad():
                getattr(model, name).parametrizations.weight.original0.mul_(0.7)
    return model


@pytest.mark.parametrize("weight_normed", [True, False], ids=["torch_weight_norm", "plain_torch"])
def test_flax_weight_norm_wrappers_are_filled_from_torch_and_back(weight_normed):
    torch_model = _torch_up_post(weight_normed)
    x = torch.randn(1, 2, 6)
    want = torch_model.post(torch_model.up(x)).detach().numpy()
    model = _FlaxWeightNormed()
    variables = interop.load_torch_state_dict(
        model.init(jax.random.key(0), jnp.asarray(x.numpy())), torch_model.state_dict()
    )
    np.testing.assert_allclose(model.apply(variables, jnp.asarray(x.numpy())), want, rtol=1e-5, atol=1e-5)
    saved = interop.to_torch_state_dict(variables, torch_model)
    for key, value in torch_model.state_dict().items():
        np.testing.assert_allclose(saved[key].numpy(), value.numpy(), rtol=1e-5, atol=1e-6)

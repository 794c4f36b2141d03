"""Whole PyTorch models ported by name (`interop.load_torch_state_dict`) and back
(`interop.to_torch_state_dict`), checked against the torch models' own outputs."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import convtrans as ct
from benchmarks.torch_hifigan import Generator as TorchHiFiGAN
from benchmarks.torch_melgan import Generator as TorchMelGAN
from convtrans import interop
from examples.vocoder.models import HiFiGAN, MelGAN

SMALL_HIFIGAN = HiFiGAN(
    upsample_initial_channel=16,
    upsample_rates=(8, 2),
    upsample_kernel_sizes=(16, 4),
    resblock_kernel_sizes=(3, 5),
    resblock_dilation_sizes=((1, 3), (1, 3)),
)


def _zeros_like_init(model, x):
    return jax.tree.map(
        lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), jax.eval_shape(model.init, jax.random.key(0), x)
    )


def _weight_norm_everything(module, new_style, seed):
    torch.manual_seed(seed)
    norm = torch.nn.utils.parametrizations.weight_norm if new_style else torch.nn.utils.weight_norm
    for layer in list(module.modules()):
        if isinstance(layer, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
            norm(layer)
    with torch.no_grad():  # trained-looking gains, not the initial norms
        for name, parameter in module.named_parameters():
            if name.endswith(("weight_g", "original0")):
                parameter.mul_(torch.rand_like(parameter) + 0.5)
    return module


def _relative_error(got, want):
    return float(np.abs(np.asarray(got) - want).max() / np.abs(want).max())


@pytest.mark.parametrize("new_style", [False, True], ids=["weight_norm", "parametrizations"])
def test_a_weight_normed_hifigan_checkpoint_loads_with_one_call(new_style):
    torch_model = _weight_norm_everything(TorchHiFiGAN(SMALL_HIFIGAN), new_style, seed=0)
    mel = torch.randn(1, 80, 6)
    variables = interop.load_torch_state_dict(
        _zeros_like_init(SMALL_HIFIGAN, jnp.zeros((1, 6, 80))), torch_model.state_dict()
    )
    y = SMALL_HIFIGAN.apply(variables, jnp.asarray(mel.numpy().transpose(0, 2, 1)))
    assert _relative_error(np.asarray(y).transpose(0, 2, 1), torch_model(mel).detach().numpy()) < 1e-5


def test_a_weight_normed_melgan_checkpoint_loads_with_one_call():
    model = MelGAN(ngf=4, ratios=(4, 2))
    torch_model = _weight_norm_everything(TorchMelGAN(model), new_style=True, seed=1)
    mel = torch.randn(1, 80, 7)
    variables = interop.load_torch_state_dict(_zeros_like_init(model, jnp.zeros((1, 7, 80))), torch_model.state_dict())
    y = model.apply(variables, jnp.asarray(mel.numpy().transpose(0, 2, 1)))
    assert _relative_error(np.asarray(y).transpose(0, 2, 1), torch_model(mel).detach().numpy()) < 1e-5


def test_to_torch_state_dict_serves_the_flax_model_from_torch_code():
    variables = _zeros_like_init(SMALL_HIFIGAN, jnp.zeros((1, 6, 80)))
    rng = np.random.default_rng(2)
    variables = jax.tree.map(lambda leaf: jnp.asarray(rng.standard_normal(leaf.shape) * 0.1, leaf.dtype), variables)
    torch_model = _weight_norm_everything(TorchHiFiGAN(SMALL_HIFIGAN), new_style=False, seed=3)
    torch_model.load_state_dict(interop.to_torch_state_dict(variables, torch_model))
    mel = torch.randn(1, 80, 6)
    y = SMALL_HIFIGAN.apply(variables, jnp.asarray(mel.numpy().transpose(0, 2, 1)))
    assert _relative_error(np.asarray(y).transpose(0, 2, 1), torch_model(mel).detach().numpy()) < 1e-5
    again = interop.load_torch_state_dict(variables, interop.to_torch_state_dict(variables, torch_model.state_dict()))
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(variables)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class _TorchMixed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        self.dense = torch.nn.Linear(4, 4)
        self.norm = torch.nn.LayerNorm(4)
        self.batch_norm = torch.nn.BatchNorm1d(4)
        self.conv = torch.nn.Conv1d(4, 6, 3, padding=1)
        self.up = torch.nn.ConvTranspose1d(6, 3, 4, stride=2)

    def forward(self, tokens):
        x = self.norm(self.dense(self.embed(tokens)))  # (batch, steps, 4)
        x = self.batch_norm(x.transpose(1, 2))  # (batch, 4, steps)
        return self.up(self.conv(x))


class _FlaxMixed(nn.Module):
    @nn.compact
    def __call__(self, tokens):
        x = nn.LayerNorm(epsilon=1e-5, name="norm")(nn.Dense(4, name="dense")(nn.Embed(10, 4, name="embed")(tokens)))
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-5, name="batch_norm")(x)
        x = nn.Conv(6, (3,), padding=1, name="conv")(x)
        return nn.ConvTranspose(3, (4,), strides=(2,), padding="VALID", name="up")(x)


def test_flax_layers_load_by_their_kind():
    torch.manual_seed(4)
    torch_model = _TorchMixed().eval()
    with torch.no_grad():
        torch_model.batch_norm.running_mean.uniform_(-1, 1)
        torch_model.batch_norm.running_var.uniform_(0.5, 2)
        torch_model.norm.weight.uniform_(0.5, 2)
    tokens = torch.randint(0, 10, (2, 5))
    model = _FlaxMixed()
    variables = interop.load_torch_state_dict(
        _zeros_like_init(model, jnp.zeros((2, 5), jnp.int32)), torch_model.state_dict()
    )
    y = model.apply(variables, jnp.asarray(tokens.numpy()))
    want = torch_model(tokens).detach().numpy().transpose(0, 2, 1)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


class _PreUp(nn.Module):
    @nn.compact
    def __call__(self, x):
        return ct.Conv1DTranspose(2, 4, strides=2, name="up")(ct.Conv1D(3, 3, name="pre")(x))


def test_a_mismatch_lists_both_sides_with_shapes():
    model = _PreUp()
    variables = _zeros_like_init(model, jnp.zeros((1, 8, 2)))
    state = {"pre.weight": torch.zeros(3, 2, 3), "pre.bias": torch.zeros(3), "post.weight": torch.zeros(1, 2, 7)}
    with pytest.raises(
        ValueError,
        match=r"(?s)no torch key fills: \['params/up/kernel \(4, 2, 3\)', "
        r"'params/up/bias \(2,\)'\].*nothing takes: \['post.weight \(1, 2, 7\)'\]",
    ):
        interop.load_torch_state_dict(variables, state)
    loaded = interop.load_torch_state_dict(variables, state, strict=False)
    assert loaded["params"]["up"]["kernel"].shape == (4, 2, 3)


class _FlaxSquareTranspose(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.ConvTranspose(3, (4,), strides=(2,), padding="VALID", name="up")(x)


def test_a_flax_conv_transpose_with_square_channels_is_named_to_be_told_apart():
    torch.manual_seed(6)
    torch_model = torch.nn.Module()
    torch_model.up = torch.nn.ConvTranspose1d(3, 3, 4, stride=2)
    x = torch.randn(1, 3, 5)
    want = torch_model.up(x).detach().numpy().transpose(0, 2, 1)
    model = _FlaxSquareTranspose()
    zeros = _zeros_like_init(model, jnp.zeros((1, 5, 3)))
    variables = interop.load_torch_state_dict(zeros, torch_model.state_dict(), flax_conv_transpose=["up"])
    np.testing.assert_allclose(
        model.apply(variables, jnp.asarray(x.numpy().transpose(0, 2, 1))), want, rtol=1e-5, atol=1e-5
    )
    saved = interop.to_torch_state_dict(variables, torch_model, flax_conv_transpose=["up"])
    np.testing.assert_allclose(saved["up.weight"].numpy(), torch_model.up.weight.detach().numpy(), rtol=1e-6)

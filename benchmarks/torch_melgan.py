"""The MelGAN generator of descriptinc/melgan-neurips in PyTorch, loaded with the weights of a flax
:class:`examples.vocoder.models.MelGAN`: the torch side of the whole-model benchmark.

Like the flax model (and like :mod:`benchmarks.torch_hifigan`) its convolutions are plain, without
the original's weight norm, which a trained generator folds into its kernels for inference. The
modules sit where the original's ``nn.Sequential`` has them, so ``model.4.block.2.weight`` is the
flax model's ``model_4/block_2/kernel`` and :func:`convtrans.interop.to_torch_state_dict` moves
the weights over by name."""

from __future__ import annotations

from torch import nn

from convtrans import interop


class ResnetBlock(nn.Module):
    """``shortcut(x) + block(x)``, the block a dilated 3-tap and a 1x1 convolution, each after a
    LeakyReLU(0.2), the first on the input reflection-padded by the dilation."""

    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.ReflectionPad1d(dilation),
            nn.Conv1d(dim, dim, 3, dilation=dilation),
            nn.LeakyReLU(0.2),
            nn.Conv1d(dim, dim, 1),
        )
        self.shortcut = nn.Conv1d(dim, dim, 1)

    def forward(self, x):
        return self.shortcut(x) + self.block(x)


class Generator(nn.Module):
    def __init__(self, model, n_mels: int = 80):
        """``model``: the flax MelGAN whose hyperparameters to copy."""
        super().__init__()
        mult = 2 ** len(model.ratios)
        layers: list[nn.Module] = [nn.ReflectionPad1d(3), nn.Conv1d(n_mels, mult * model.ngf, 7)]
        for rate in model.ratios:
            channels = mult * model.ngf
            layers += [
                nn.LeakyReLU(0.2),
                nn.ConvTranspose1d(
                    channels, channels // 2, 2 * rate, rate, padding=rate // 2 + rate % 2, output_padding=rate % 2
                ),
            ]
            layers += [ResnetBlock(channels // 2, 3**j) for j in range(model.n_residual_layers)]
            mult //= 2
        layers += [nn.LeakyReLU(0.2), nn.ReflectionPad1d(3), nn.Conv1d(model.ngf, 1, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, mel):  # (batch, n_mels, frames) -> (batch, 1, frames * hop)
        return self.model(mel)


def from_flax(model, params, n_mels: int = 80) -> Generator:
    """A torch generator with the weights of the flax ``model``'s ``params``."""
    generator = Generator(model, n_mels)
    generator.load_state_dict(interop.to_torch_state_dict(params, generator))
    return generator.eval()

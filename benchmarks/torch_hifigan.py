"""jik876's HiFi-GAN generator (ResBlock1) in PyTorch, loaded with the weights of a flax
:class:`examples.vocoder.models.HiFiGAN`: the torch side of the streaming benchmark.

The flax model names its parameters as jik876's module names them, flax-style
(``resblocks.3.convs1.2.weight`` is ``resblocks_3/convs1_2/kernel``), so
:func:`convtrans.interop.to_torch_state_dict` moves them over."""

from __future__ import annotations

import torch
from torch import nn

from convtrans import interop


class ResBlock1(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilations):
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=(kernel_size * d - d) // 2)
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2) for _ in dilations
        )

    def forward(self, x):
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(torch.nn.functional.leaky_relu(c1(torch.nn.functional.leaky_relu(x, 0.1)), 0.1))
        return x


class Generator(nn.Module):
    def __init__(self, model):
        """``model``: the flax HiFiGAN whose hyperparameters to copy."""
        super().__init__()
        channels = model.upsample_initial_channel
        self.conv_pre = nn.Conv1d(80, channels, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (u, k) in enumerate(zip(model.upsample_rates, model.upsample_kernel_sizes)):
            self.ups.append(nn.ConvTranspose1d(channels // 2**i, channels // 2 ** (i + 1), k, u, padding=(k - u) // 2))
            for kr, dr in zip(model.resblock_kernel_sizes, model.resblock_dilation_sizes):
                self.resblocks.append(ResBlock1(channels // 2 ** (i + 1), kr, dr))
        self.conv_post = nn.Conv1d(channels // 2 ** len(model.upsample_rates), 1, 7, padding=3)
        self.num_kernels = len(model.resblock_kernel_sizes)

    def forward(self, mel):  # (batch, 80, frames) -> (batch, 1, frames * hop)
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(torch.nn.functional.leaky_relu(x, 0.1))
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        return torch.tanh(self.conv_post(torch.nn.functional.leaky_relu(x)))


def from_flax(model, params) -> Generator:
    """A torch generator with the weights of the flax ``model``'s ``params``."""
    generator = Generator(model)
    generator.load_state_dict(interop.to_torch_state_dict(params, generator))
    return generator.eval()

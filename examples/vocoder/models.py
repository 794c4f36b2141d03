"""HiFi-GAN and MelGAN generators as flax.linen models built from convtrans's parts.

Both map a mel spectrogram ``(batch, frames, n_mels)`` to audio ``(batch, frames * hop, 1)`` and
stream with :class:`convtrans.streaming.Streamer` as they are: every time-mixing layer is a
convtrans :class:`~convtrans.Conv1D`, :class:`~convtrans.Conv1DTranspose` or
:class:`~convtrans.Pad1D`, and every branch a :class:`~convtrans.Residual` or
:class:`~convtrans.Parallel`.

- :class:`HiFiGAN`: the generator of Kong et al. (2020) as in jik876/hifi-gan (config v1 by
  default: upsampling 8, 8, 2, 2 with kernels 16, 16, 4, 4 from 512 channels; ResBlock1 with
  kernels 3, 7, 11 and dilations 1, 3, 5, the blocks of one scale averaged).
- :class:`MelGAN`: the generator of Kumar et al. (2019) as in descriptinc/melgan-neurips
  (ngf 32, ratios 8, 8, 2, 2, three residual stacks per scale with dilations 1, 3, 9 and
  reflection padding).

PyTorch's integer paddings carry over as they are (``padding=p`` pads a convolution by ``p`` on
each side and crops a transposed convolution's output by ``p`` on each side).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn

import convtrans as ct


def _leaky_relu(slope: float):
    def activation(x):
        return nn.leaky_relu(x, slope)

    activation.__name__ = f"leaky_relu_{slope}"
    return activation


class HiFiGAN(nn.Module):
    """HiFi-GAN generator (jik876/hifi-gan, ResBlock1). Defaults: config v1 (13.9M parameters)."""

    upsample_rates: Sequence[int] = (8, 8, 2, 2)
    upsample_kernel_sizes: Sequence[int] = (16, 16, 4, 4)
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: Sequence[int] = (3, 7, 11)
    resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    kernel_initializer: Any = nn.initializers.normal(0.01)  # jik876's init_weights

    def _conv(self, filters: int, kernel_size: int, dilation: int = 1) -> ct.Conv1D:
        return ct.Conv1D(filters, kernel_size, dilation_rate=dilation, padding=(kernel_size * dilation - dilation) // 2,
                         kernel_initializer=self.kernel_initializer)

    def _resblock(self, channels: int, kernel_size: int, dilations: Sequence[int]) -> list[nn.Module]:
        lrelu = _leaky_relu(0.1)
        return [ct.Residual([lrelu, self._conv(channels, kernel_size, d), lrelu, self._conv(channels, kernel_size)])
                for d in dilations]

    @nn.compact
    def __call__(self, mel):
        x = self._conv(self.upsample_initial_channel, 7)(mel)
        for i, (rate, kernel_size) in enumerate(zip(self.upsample_rates, self.upsample_kernel_sizes)):
            channels = self.upsample_initial_channel // 2 ** (i + 1)
            x = nn.leaky_relu(x, 0.1)
            x = ct.Conv1DTranspose(channels, kernel_size, strides=rate, padding=(kernel_size - rate) // 2,
                                   kernel_initializer=self.kernel_initializer)(x)
            x = ct.Parallel([self._resblock(channels, k, d)
                             for k, d in zip(self.resblock_kernel_sizes, self.resblock_dilation_sizes)],
                            combine="mean")(x)
        x = nn.leaky_relu(x)  # torch's default slope, 0.01
        return nn.tanh(self._conv(1, 7)(x))


class MelGAN(nn.Module):
    """MelGAN generator (descriptinc/melgan-neurips)."""

    ngf: int = 32
    ratios: Sequence[int] = (8, 8, 2, 2)
    n_residual_layers: int = 3

    def _resnet_block(self, dim: int, dilation: int) -> ct.Parallel:
        lrelu = _leaky_relu(0.2)
        block = [lrelu, ct.Pad1D(dilation, mode="reflect"), ct.Conv1D(dim, 3, dilation_rate=dilation),
                 lrelu, ct.Conv1D(dim, 1)]
        return ct.Parallel([ct.Conv1D(dim, 1), block], combine="sum")  # shortcut(x) + block(x)

    @nn.compact
    def __call__(self, mel):
        mult = 2 ** len(self.ratios)
        x = ct.Pad1D(3, mode="reflect")(mel)
        x = ct.Conv1D(mult * self.ngf, 7)(x)
        for rate in self.ratios:
            x = nn.leaky_relu(x, 0.2)
            x = ct.Conv1DTranspose(mult * self.ngf // 2, rate * 2, strides=rate, padding=rate // 2 + rate % 2,
                                   output_padding=(rate % 2) or None)(x)
            for j in range(self.n_residual_layers):
                x = self._resnet_block(mult * self.ngf // 2, 3 ** j)(x)
            mult //= 2
        x = nn.leaky_relu(x, 0.2)
        x = ct.Pad1D(3, mode="reflect")(x)
        return nn.tanh(ct.Conv1D(1, 7)(x))

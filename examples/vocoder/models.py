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

Both take the constructor of their upsampling layers as ``upsample_layer`` (default
:class:`convtrans.Conv1DTranspose`; it is called with that class's arguments), so that the
benchmarks can build the same generators, with the same parameters, on another transposed
convolution.

PyTorch's integer paddings carry over as they are (``padding=p`` pads a convolution by ``p`` on
each side and crops a transposed convolution's output by ``p`` on each side), and the parameters
are named after the original modules, flax-style (``resblocks.3.convs1.2`` is
``resblocks_3/convs1_2``; melgan-neurips's ``model.4.block.2`` is ``model_4/block_2``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn

import convtrans as ct


def _leaky_relu(slope: float):
    def activation(x):
        return nn.leaky_relu(x, slope)

    activation.__name__ = f"leaky_relu_{slope}"
    return activation


class ResBlock1(nn.Module):
    """HiFi-GAN's ResBlock1: for each dilation ``d``, ``x + conv2(lrelu(conv1_d(lrelu(x))))``."""

    channels: int
    kernel_size: int
    dilations: Sequence[int]
    kernel_initializer: Any = nn.initializers.normal(0.01)

    def setup(self):
        conv = functools.partial(
            _same_conv, self.channels, self.kernel_size, kernel_initializer=self.kernel_initializer
        )
        self.convs1 = [conv(d) for d in self.dilations]
        self.convs2 = [conv(1) for _ in self.dilations]
        lrelu = _leaky_relu(0.1)
        self.residuals = [ct.Residual([lrelu, c1, lrelu, c2]) for c1, c2 in zip(self.convs1, self.convs2)]

    def __call__(self, x):
        for residual in self.residuals:
            x = residual(x)
        return x


def _same_conv(filters: int, kernel_size: int, dilation: int = 1, **kwargs) -> ct.Conv1D:
    """jik876's ``Conv1d(..., padding=get_padding(kernel_size, dilation))``."""
    return ct.Conv1D(
        filters, kernel_size, dilation_rate=dilation, padding=(kernel_size * dilation - dilation) // 2, **kwargs
    )


class HiFiGAN(nn.Module):
    """HiFi-GAN generator (jik876/hifi-gan, ResBlock1). Defaults: config v1 (13.9M parameters).

    Parameters are named as jik876's ``Generator`` names its modules (``conv_pre``, ``ups_{i}``,
    ``resblocks_{j}/convs1_{k}``, ``conv_post``); the residual blocks of scale ``i`` are
    ``resblocks_{i * len(resblock_kernel_sizes) + j}``, averaged by a :class:`convtrans.Parallel`.
    """

    upsample_rates: Sequence[int] = (8, 8, 2, 2)
    upsample_kernel_sizes: Sequence[int] = (16, 16, 4, 4)
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: Sequence[int] = (3, 7, 11)
    resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    kernel_initializer: Any = nn.initializers.normal(0.01)  # jik876's init_weights
    upsample_layer: Callable[..., nn.Module] = ct.Conv1DTranspose

    def setup(self):
        init = dict(kernel_initializer=self.kernel_initializer)
        self.conv_pre = _same_conv(self.upsample_initial_channel, 7, **init)
        channels = [self.upsample_initial_channel // 2 ** (i + 1) for i in range(len(self.upsample_rates))]
        self.ups = [
            self.upsample_layer(c, k, strides=u, padding=(k - u) // 2, **init)
            for c, u, k in zip(channels, self.upsample_rates, self.upsample_kernel_sizes)
        ]
        self.resblocks = [
            ResBlock1(c, k, d, **init)
            for c in channels
            for k, d in zip(self.resblock_kernel_sizes, self.resblock_dilation_sizes)
        ]
        kernels = len(self.resblock_kernel_sizes)
        self.fusions = [
            ct.Parallel(self.resblocks[i * kernels : (i + 1) * kernels], combine="mean") for i in range(len(channels))
        ]
        self.conv_post = _same_conv(1, 7, **init)

    def __call__(self, mel):
        x = self.conv_pre(mel)
        for up, fusion in zip(self.ups, self.fusions):
            x = fusion(up(nn.leaky_relu(x, 0.1)))
        x = nn.leaky_relu(x)  # torch's default slope, 0.01
        return nn.tanh(self.conv_post(x))


class ResnetBlock(nn.Module):
    """MelGAN's residual block: ``shortcut(x) + block(x)`` with ``block`` = LeakyReLU(0.2),
    ReflectionPad1d(d), a dilated 3-tap convolution, LeakyReLU(0.2), a 1x1 convolution."""

    dim: int
    dilation: int = 1

    def setup(self):
        lrelu = _leaky_relu(0.2)
        self.block = [
            lrelu,
            ct.Pad1D(self.dilation, mode="reflect"),
            ct.Conv1D(self.dim, 3, dilation_rate=self.dilation),
            lrelu,
            ct.Conv1D(self.dim, 1),
        ]
        self.shortcut = ct.Conv1D(self.dim, 1)
        self.sum = ct.Parallel([self.shortcut, self.block], combine="sum")

    def __call__(self, x):
        return self.sum(x)


class MelGAN(nn.Module):
    """MelGAN generator (descriptinc/melgan-neurips).

    ``model_{i}`` is the ``i``-th entry of the original's ``nn.Sequential`` (``model_1`` the first
    convolution, ``model_3`` the first transposed convolution, ``model_4`` its first residual
    block with ``block_2``, ``block_4`` and ``shortcut``), so parameters are named as there.
    """

    ngf: int = 32
    ratios: Sequence[int] = (8, 8, 2, 2)
    n_residual_layers: int = 3
    upsample_layer: Callable[..., nn.Module] = ct.Conv1DTranspose

    def setup(self):
        lrelu = _leaky_relu(0.2)
        mult = 2 ** len(self.ratios)
        model = [ct.Pad1D(3, mode="reflect"), ct.Conv1D(mult * self.ngf, 7)]
        for rate in self.ratios:
            model += [
                lrelu,
                self.upsample_layer(
                    mult * self.ngf // 2,
                    rate * 2,
                    strides=rate,
                    padding=rate // 2 + rate % 2,
                    output_padding=(rate % 2) or None,
                ),
            ]
            model += [ResnetBlock(mult * self.ngf // 2, dilation=3**j) for j in range(self.n_residual_layers)]
            mult //= 2
        model += [lrelu, ct.Pad1D(3, mode="reflect"), ct.Conv1D(1, 7), nn.tanh]
        self.model = model

    def __call__(self, mel):
        for layer in self.model:
            mel = layer(mel)
        return mel

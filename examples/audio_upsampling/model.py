"""The upsampler: a fixed band-limited interpolation plus a learned high-band residual.

``y = sinc_upsample(x) + residual(x)``, with ``x`` of shape ``(batch, n)`` at the low rate and ``y``
of shape ``(batch, n * factor)``:

- ``sinc_upsample`` is exactly ``scipy.signal.resample_poly(x, factor, 1)``: the same
  Kaiser-windowed sinc filter, applied as a fixed (untrained) transposed convolution through
  :func:`convtrans.conv1d_transpose` with stride ``factor`` and ``padding="same"``. It reproduces
  the low band; the network only has to add the missing high band.
- ``residual`` is a small HiFi-GAN-style generator: a convolution at the low rate, residual blocks
  of dilated convolutions, then per 2x stage a :class:`convtrans.Conv1DTranspose` (stride 2, kernel
  4, max-norm constrained and L2-regularized) followed by residual blocks at the new rate, and a
  zero-initialized output convolution, so that at step 0 the model *is* the ``resample_poly``
  baseline and training can only start from there.

Every layer is a "same"-padded convolution, so output sample ``t`` depends only on input samples
within :func:`receptive_halo` of ``t / factor``: what makes chunked inference exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from scipy import signal

import convtrans as ct

# scipy.signal.resample_poly's filter: half-length 10 input samples, Kaiser beta 5.
_SINC_HALF_LENGTH = 10
_LEAK = 0.1


def sinc_kernel(factor: int) -> np.ndarray:
    """``(10 * 2 * factor + factor, 1, 1)`` kernel making a transposed conv equal ``resample_poly``.

    scipy's ``firwin(2 * 10 * factor + 1, 1 / factor, window=("kaiser", 5.0)) * factor``, followed
    by ``factor - 1`` zeros so that Keras's "same" alignment puts its centre on the input samples.
    """
    taps = signal.firwin(2 * _SINC_HALF_LENGTH * factor + 1, 1.0 / factor, window=("kaiser", 5.0)) * factor
    taps = np.concatenate([taps, np.zeros(factor - 1)])
    return taps.astype(np.float32)[:, None, None]


def sinc_upsample(x: jax.Array, factor: int) -> jax.Array:
    """``resample_poly(x, factor, 1)`` along the last axis: ``(batch, n) -> (batch, n * factor)``."""
    kernel = sinc_kernel(factor)
    config = ct.Conv1DTransposeConfig(
        filters=1, kernel_size=kernel.shape[0], strides=factor, padding="same", use_bias=False
    )
    y, _ = ct.conv1d_transpose({"kernel": jnp.asarray(kernel, x.dtype)}, x[..., None], config)
    return y[..., 0]


def stage_factors(factor: int) -> tuple[int, ...]:
    """The 2x stages of an upsampling ``factor`` (a power of two >= 2)."""
    if factor < 2 or factor & (factor - 1):
        raise ValueError(f"factor must be a power of two >= 2, got {factor!r}.")
    return (2,) * int(math.log2(factor))


class ResBlock(nn.Module):
    """``x + conv_1(leaky(conv_d(leaky(x))))`` for each dilation ``d`` (HiFi-GAN's block)."""

    channels: int
    kernel_size: int
    dilations: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for d in self.dilations:
            h = nn.Conv(self.channels, (self.kernel_size,), kernel_dilation=(d,), padding="SAME")(
                nn.leaky_relu(x, _LEAK)
            )
            h = nn.Conv(self.channels, (self.kernel_size,), padding="SAME")(nn.leaky_relu(h, _LEAK))
            x = x + h
        return x


class Upsampler(nn.Module):
    """``(batch, n) -> (batch, n * factor)``: ``sinc_upsample(x) + residual(x)``.

    Attributes:
      factor: upsampling factor (2, 4, 8, ...).
      channels: channels at the low rate; halved at each 2x stage (at least 8).
      kernel_size: kernel size of the plain convolutions.
      dilations: dilations of each residual block.
      max_norm: Keras ``MaxNorm`` bound on the Conv1DTranspose kernels (per output/input pair).
      l2: Keras ``L2`` factor on the Conv1DTranspose kernels (sown into the "losses" collection).
    """

    factor: int = 2
    channels: int = 32
    kernel_size: int = 7
    dilations: Sequence[int] = (1, 3, 9)
    max_norm: float = 2.0
    l2: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 2:
            raise ValueError(f"x must be (batch, samples), got shape {tuple(x.shape)}.")
        base = sinc_upsample(x, self.factor)
        h = nn.Conv(self.channels, (self.kernel_size,), padding="SAME")(x[..., None])
        h = ResBlock(self.channels, self.kernel_size, self.dilations)(h)
        channels = self.channels
        for s in stage_factors(self.factor):
            channels = max(8, channels // 2)
            h = ct.Conv1DTranspose(
                filters=channels,
                kernel_size=2 * s,
                strides=s,
                padding="same",
                kernel_constraint=ct.constraints.MaxNorm(max_value=self.max_norm),
                kernel_regularizer=ct.regularizers.L2(self.l2),
            )(nn.leaky_relu(h, _LEAK))
            h = ResBlock(channels, self.kernel_size, self.dilations[:2])(h)
        residual = nn.Conv(1, (self.kernel_size,), padding="SAME", kernel_init=nn.initializers.zeros)(
            nn.leaky_relu(h, _LEAK)
        )
        return base + residual[..., 0]


def receptive_halo(model: Upsampler) -> int:
    """Input samples on each side of ``t / factor`` that output ``t`` may depend on (an upper bound).

    Each "same" conv of kernel ``k`` and dilation ``d`` at ``r`` times the input rate reaches
    ``ceil((k - 1) * d / 2 / r)`` input samples; each stride-2 transposed conv one more; the sinc
    branch ``10``. Chunked inference overlaps chunks by this much and crops.
    """
    reach = lambda k, d, r: math.ceil((k - 1) * d / 2 / r)
    k = model.kernel_size
    halo = reach(k, 1, 1) + sum(reach(k, d, 1) + reach(k, 1, 1) for d in model.dilations)
    rate = 1
    for s in stage_factors(model.factor):
        halo += 1
        rate *= s
        halo += sum(reach(k, d, rate) + reach(k, 1, rate) for d in model.dilations[:2])
    halo += reach(k, 1, rate)
    return max(halo, _SINC_HALF_LENGTH + 1) + 1

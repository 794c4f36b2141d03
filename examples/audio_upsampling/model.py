"""The upsampler: a fixed band-limited interpolation plus a learned residual.

``y = sinc_upsample(x) + low(r) + g * (r - low(r))`` with ``r = residual(x)``, ``x`` of shape
``(batch, n)`` at the low rate and ``y`` of shape ``(batch, n * factor)``:

- ``sinc_upsample`` is exactly ``scipy.signal.resample_poly(x, factor, 1)``: the same
  Kaiser-windowed sinc filter, applied as a fixed (untrained) transposed convolution through
  :func:`convtrans.conv1d_transpose` with stride ``factor`` and ``padding="same"``. It reproduces
  the low band; the network only has to add the missing high band.
- ``residual`` is a small HiFi-GAN-style generator: a convolution at the low rate, residual blocks
  of dilated convolutions, then per 2x stage a :class:`convtrans.Conv1DTranspose` (stride 2, kernel
  4, max-norm constrained and L2-regularized) followed by residual blocks at the new rate, and a
  zero-initialized output convolution, so that at step 0 the model *is* the ``resample_poly``
  baseline and training can only start from there.
- ``low`` is a fixed linear-phase low-pass at the input's Nyquist frequency (:func:`band_split_kernel`):
  ``low(r)`` is the residual's correction of the band the input has (mostly the decimation filter's
  roll-off near the input's Nyquist, predictable from the input), ``r - low(r)`` its estimate of the
  band the input lacks, added with the gain ``g = high_band_gain``.

Why a gain below 1 on the new band: on real recordings most of that band (aspiration, frication,
jittered partials) cannot be predicted from the input, so an estimate of it is largely uncorrelated
with the truth and its power adds to the waveform error. With gain ``g`` the added error is ``g**2``
of the estimate's power, while the log-spectral distance needs the band's level only roughly
(``20 log10(g)`` dB off costs less than an empty band). Training fits the full-level output
(:meth:`Upsampler.outputs` gives both), so the gain is a setting of use, not of training: it can be
changed in a run's ``model.json`` without retraining.

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


# The gain on the estimate of the new band that keeps real speech's SNR at least resample_poly's while
# its log-spectral distance drops below linear interpolation's (measured: docs/guide/example.md).
DEFAULT_HIGH_BAND_GAIN = 0.3

# Taps of the band-split low-pass per unit of factor (129 at factor 2): a transition band of about
# 2% of the output rate, linear phase, so the split costs no phase error.
_SPLIT_TAPS_PER_FACTOR = 64


def band_split_kernel(factor: int) -> np.ndarray:
    """``(64 * factor + 1,)`` zero-phase FIR low-pass with its cutoff at ``1 / factor`` of the output Nyquist."""
    return signal.firwin(_SPLIT_TAPS_PER_FACTOR * factor + 1, 1.0 / factor, window=("kaiser", 8.0)).astype(np.float32)


def low_band(r: jax.Array, factor: int) -> jax.Array:
    """``r`` (``(batch, m)``) low-passed at ``1 / factor`` of its Nyquist, same length ("same", zero-padded)."""
    kernel = jnp.asarray(band_split_kernel(factor), r.dtype)
    half = (kernel.shape[0] - 1) // 2
    # A symmetric kernel: correlation is convolution. Explicit padding keeps the length for any m.
    y = jax.lax.conv_general_dilated(r[:, None, :], kernel[None, None, :], (1,), [(half, half)])
    return y[:, 0, :]


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
      high_band_gain: gain ``g`` in [0, 1] on the residual's estimate of the band above the input's
        Nyquist (1: the estimate at full level; 0: only the input's own band is corrected).
    """

    factor: int = 2
    channels: int = 32
    kernel_size: int = 7
    dilations: Sequence[int] = (1, 3, 9)
    max_norm: float = 2.0
    l2: float = 1e-5
    high_band_gain: float = DEFAULT_HIGH_BAND_GAIN

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(batch, n) -> (batch, n * factor)``: the output with the high band at ``high_band_gain``."""
        return self.outputs(x)[0]

    @nn.compact
    def outputs(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(y, y_full)``, both ``(batch, n * factor)``: the output, and the same with the high band at full level."""
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
        r = residual[..., 0]
        full = base + r
        if self.high_band_gain == 1.0:
            return full, full
        low = low_band(r, self.factor)
        return base + low + self.high_band_gain * (r - low), full


def receptive_halo(model: Upsampler) -> int:
    """Input samples on each side of ``t / factor`` that output ``t`` may depend on (an upper bound).

    Each "same" conv of kernel ``k`` and dilation ``d`` at ``r`` times the input rate reaches
    ``ceil((k - 1) * d / 2 / r)`` input samples; each stride-2 transposed conv one more; the band
    split ``ceil(32 * factor / factor) = 32`` (half its kernel, at the output rate); the sinc branch
    ``10``. Chunked inference overlaps chunks by this much and crops.
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
    if model.high_band_gain != 1.0:
        halo += math.ceil(_SPLIT_TAPS_PER_FACTOR * model.factor / 2 / model.factor)
    return max(halo, _SINC_HALF_LENGTH + 1) + 1

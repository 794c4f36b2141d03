"""Training losses: waveform L1 and the multi-resolution STFT loss (jax.numpy, differentiable).

For a target ``y`` and estimate ``y_hat`` (both ``(batch, samples)``), at each resolution
``(n_fft, hop)`` with Hann-windowed magnitudes ``Y = |STFT(y)|``, ``Y_hat = |STFT(y_hat)|``:

- spectral convergence ``||Y - Y_hat||_F / ||Y||_F``,
- log-magnitude distance ``mean |log Y - log Y_hat|``,

and the multi-resolution STFT loss is the mean over resolutions of their sum. The log term weighs
every frequency bin alike, which is what pushes the model to fill the empty high band; the L1 term
keeps the waveform (phase) faithful.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

DEFAULT_RESOLUTIONS: tuple[tuple[int, int], ...] = ((256, 64), (512, 128), (1024, 256))
_EPS = 1e-5


def stft_magnitude(x: jax.Array, n_fft: int, hop: int) -> jax.Array:
    """``(batch, samples) -> (batch, frames, n_fft // 2 + 1)`` Hann-windowed STFT magnitudes.

    Frames start every ``hop`` samples from 0 (no padding); ``samples`` must be ``>= n_fft``.
    """
    if x.shape[-1] < n_fft:
        raise ValueError(f"x has {x.shape[-1]} samples, fewer than n_fft={n_fft}.")
    frames = 1 + (x.shape[-1] - n_fft) // hop
    index = jnp.arange(frames)[:, None] * hop + jnp.arange(n_fft)[None, :]
    window = jnp.hanning(n_fft + 1)[:-1].astype(x.dtype)  # periodic Hann
    spec = jnp.fft.rfft(x[..., index] * window, axis=-1)
    return jnp.sqrt(jnp.real(spec) ** 2 + jnp.imag(spec) ** 2 + _EPS**2)


def multi_resolution_stft_loss(
    y: jax.Array, y_hat: jax.Array, resolutions: Sequence[tuple[int, int]] = DEFAULT_RESOLUTIONS
) -> jax.Array:
    """Mean over ``resolutions`` of spectral convergence plus log-magnitude L1 (a scalar)."""
    total = 0.0
    for n_fft, hop in resolutions:
        mag, mag_hat = stft_magnitude(y, n_fft, hop), stft_magnitude(y_hat, n_fft, hop)
        convergence = jnp.linalg.norm(mag - mag_hat) / jnp.linalg.norm(mag)
        log_distance = jnp.mean(jnp.abs(jnp.log(mag) - jnp.log(mag_hat)))
        total = total + convergence + log_distance
    return total / len(resolutions)


def waveform_l1(y: jax.Array, y_hat: jax.Array) -> jax.Array:
    """``mean |y - y_hat|`` (a scalar)."""
    return jnp.mean(jnp.abs(y - y_hat))

"""Evaluation metrics (NumPy), in dB, averaged over clips.

- SNR: ``10 log10(sum y^2 / sum (y - y_hat)^2)`` per clip; higher is better.
- LSD (log-spectral distance): with power spectra ``P = |STFT|^2`` (Hann, 1024-sample frames,
  hop 256), per frame ``sqrt(mean_f (10 log10((P + eps) / (P_hat + eps)))^2)``, averaged over frames;
  lower is better. ``eps = 1e-10`` keeps silent bins finite; an empty high band (as from a
  band-limited resampler) costs a large distance there, which is what LSD is for.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

_EPS = 1e-10


def snr_db(target: np.ndarray, estimate: np.ndarray) -> float:
    """Mean over clips (rows of ``(clips, samples)`` arrays, or one ``(samples,)`` clip) of the SNR in dB."""
    target, estimate = np.atleast_2d(target).astype(np.float64), np.atleast_2d(estimate).astype(np.float64)
    _check(target, estimate)
    power = np.sum(target**2, axis=-1)
    error = np.sum((target - estimate) ** 2, axis=-1)
    return float(np.mean(10 * np.log10((power + _EPS) / (error + _EPS))))


def lsd_db(target: np.ndarray, estimate: np.ndarray, n_fft: int = 1024, hop: int = 256) -> float:
    """Mean over clips and frames of the log-spectral distance in dB (see the module docstring)."""
    target, estimate = np.atleast_2d(target).astype(np.float64), np.atleast_2d(estimate).astype(np.float64)
    _check(target, estimate)
    kwargs = dict(nperseg=n_fft, noverlap=n_fft - hop, window="hann", boundary=None, padded=False, axis=-1)
    power = np.abs(signal.stft(target, **kwargs)[2]) ** 2
    power_hat = np.abs(signal.stft(estimate, **kwargs)[2]) ** 2
    log_ratio = 10 * np.log10((power + _EPS) / (power_hat + _EPS))  # (clips, freqs, frames)
    return float(np.mean(np.sqrt(np.mean(log_ratio**2, axis=-2))))


def _check(target: np.ndarray, estimate: np.ndarray) -> None:
    if target.shape != estimate.shape:
        raise ValueError(f"target {target.shape} and estimate {estimate.shape} must have the same shape.")

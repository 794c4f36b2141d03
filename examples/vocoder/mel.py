"""Log-mel spectrograms as HiFi-GAN V1 and MelGAN take them (22050 Hz, 1024-point FFT, hop 256,
80 mel bands from 0 to 8 kHz, natural log of magnitudes clamped at 1e-5)."""

from __future__ import annotations

import numpy as np

RATE = 22050
N_FFT = 1024
HOP = 256
N_MELS = 80
F_MAX = 8000.0


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)


def mel_filterbank(rate: int = RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, f_max: float = F_MAX) -> np.ndarray:
    """``(n_mels, n_fft // 2 + 1)`` triangular filters, equally spaced on the mel scale, each of
    unit area in Hz (so that bands of different widths weigh alike)."""
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(f_max), n_mels + 2))
    freqs = np.linspace(0.0, rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    return (np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (upper - lower))).astype(np.float32)


def log_mel(audio: np.ndarray) -> np.ndarray:
    """``(samples,)`` audio -> ``(samples // HOP, N_MELS)`` log-mel frames (Hann window, the signal
    reflect-padded by ``(N_FFT - HOP) / 2`` on each side, as HiFi-GAN's training code does)."""
    pad = (N_FFT - HOP) // 2
    padded = np.pad(np.asarray(audio, np.float32), (pad, pad), mode="reflect")
    frames = len(audio) // HOP
    index = np.arange(N_FFT)[None, :] + HOP * np.arange(frames)[:, None]
    spectrum = np.abs(np.fft.rfft(padded[index] * np.hanning(N_FFT + 1)[:-1], axis=-1))
    return np.log(np.maximum(spectrum @ mel_filterbank().T, 1e-5)).astype(np.float32)

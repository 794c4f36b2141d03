"""Pictures of a run (matplotlib, Agg backend): loss curve, spectrograms and waveforms."""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy import signal


def loss_curve(path: pathlib.Path, history: np.ndarray) -> None:
    """``history``: ``(steps, 3)`` rows of (total, L1, multi-resolution STFT) losses."""
    fig, ax = plt.subplots(figsize=(7, 4))
    if len(history):
        steps = np.arange(1, len(history) + 1)
        for column, name in enumerate(("total", "waveform L1", "MR-STFT")):
            ax.plot(steps, history[:, column], label=name, lw=1)
    ax.set(xlabel="step", ylabel="loss", yscale="log", title="Training loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def comparison(out: pathlib.Path, clips: dict[str, np.ndarray], rate: int, factor: int, index: int = 0) -> None:
    """``spectrogram.png`` and ``waveform.png`` of held-out clip ``index``.

    Rows: input (low rate), resample_poly, model, target. The dashed line marks the input's Nyquist.
    """
    names = [
        ("input", "input (low rate)", rate // factor),
        ("resample_poly", "baseline: resample_poly", rate),
        ("model", "convtrans upsampler", rate),
        ("target", "target", rate),
    ]
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 9), sharex=True, sharey=True)
    for ax, (key, title, r) in zip(axes, names):
        f, t, s = signal.spectrogram(clips[key][index], fs=r, nperseg=512 // (rate // r), noverlap=384 // (rate // r))
        ax.pcolormesh(t, f, 10 * np.log10(s + 1e-12), vmin=-120, vmax=-20, shading="auto", cmap="magma")
        ax.axhline(rate / (2 * factor), color="w", ls="--", lw=0.8)
        ax.set(title=title, ylabel="Hz", ylim=(0, rate / 2))
    axes[-1].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(out / "spectrogram.png", dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(len(names), 1, figsize=(8, 8), sharex=True, sharey=True)
    target = clips["target"][index]
    centre = int(np.argmax(np.abs(target)))
    lo, hi = max(0, centre - 160), min(len(target), centre + 160)  # 20 ms around the peak
    for ax, (key, title, r) in zip(axes, names):
        step = rate // r
        t = np.arange(lo // step, hi // step) * step / rate * 1e3
        ax.plot(t, clips[key][index][lo // step : hi // step], ".-" if step > 1 else "-", lw=1, ms=3)
        if key != "target":
            ax.plot(np.arange(lo, hi) / rate * 1e3, target[lo:hi], color="0.6", lw=0.8, zorder=0)
        ax.set(title=title + ("" if key == "target" else " (grey: target)"))
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("ms")
    fig.tight_layout()
    fig.savefig(out / "waveform.png", dpi=90)
    plt.close(fig)

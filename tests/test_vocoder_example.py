"""The vocoder example (examples/vocoder): generators stream frame by frame as they are, and the
script checks the stream against the whole signal and reports the real-time factor."""

from __future__ import annotations

import numpy as np
import pytest

from examples.vocoder import mel as mel_lib
from examples.vocoder import stream


# The generators, frames (0.2 s: 17, cut to 16, a multiple of every chunk size) and chunk sizes of
# tests/test_streamer.py's generator test, in its xdist group, so each compile serves both.
@pytest.mark.xdist_group("vocoder-generators")
def test_the_script_streams_both_generators_and_reports_each_mode(capsys):
    rows = stream.main(["--seconds", "0.2", "--chunks", "1", "8", "--hifigan-channels", "16", "--melgan-ngf", "4"])
    assert [(row["model"], row["mode"]) for row in rows] == [
        (name, mode)
        for name in ("hifigan", "melgan")
        for mode in ("whole signal", "stream, 1-frame chunks", "stream, 8-frame chunks")
    ]
    assert all(row["rtf"] > 0 and row["error"] <= 1e-5 for row in rows)
    printed = capsys.readouterr().out
    assert printed.startswith("16 mel frames")
    assert "real-time factor" in printed and "hifigan  stream, 8-frame chunks" in printed


def test_log_mel_frames_a_signal_at_the_hop():
    rate = mel_lib.RATE
    tone = np.sin(2 * np.pi * 1000 * np.arange(mel_lib.HOP * 20) / rate).astype(np.float32)
    frames = mel_lib.log_mel(tone)
    assert frames.shape == (20, mel_lib.N_MELS)
    # The band around 1 kHz holds the tone's energy.
    centres = np.argmax(mel_lib.mel_filterbank(), axis=1) * rate / mel_lib.N_FFT
    assert abs(centres[np.argmax(frames[10])] - 1000) < 150

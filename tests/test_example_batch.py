"""The audio-upsampling tools on many files: infer.py on files and folders (one model, one compilation),
its rate and output-folder checks, its progress, the tools run as files from any directory, and
evaluate.py's scores.

The run is test_example_cli_safety's ``saved_run``: zero parameters, so the model *is*
``scipy.signal.resample_poly(x, 2, 1)`` (up to float rounding), an oracle for every output.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from scipy import signal
from scipy.io import wavfile

from examples.audio_upsampling import data, evaluate, infer, metrics
from examples.audio_upsampling.train import linear_upsample
from tests import test_example_cli_safety as safety

saved_run, wav, expect, snapshot = safety.saved_run, safety.wav, safety.expect, safety.snapshot
ROOT = pathlib.Path(__file__).resolve().parent.parent
IN_RATE = safety.SETTINGS["rate"] // safety.SETTINGS["factor"]  # 8000 Hz -> 16000 Hz


def tone(path: pathlib.Path, n: int, rate: int = IN_RATE, channels: int = 1, pad: int = 0) -> pathlib.Path:
    """``n`` samples of a chord at ``rate`` (``pad`` silent samples on each side) as 16-bit PCM."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(n) / rate
    audio = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t + 1.0)
    audio = np.pad(audio, pad)
    if channels == 2:
        audio = np.stack([audio, -0.5 * audio], axis=1)
    soundfile.write(path, audio, rate, subtype="PCM_16")
    return path


# ------------------------------------------------------------------------------------------------
# Run from anywhere.


def test_infer_runs_as_a_file_from_any_working_directory(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    script = ROOT / "examples" / "audio_upsampling" / "infer.py"
    done = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "usage: python examples/audio_upsampling/infer.py" in done.stdout
    assert "--allow-downsampling" in done.stdout and "--no-progress" in done.stdout


# ------------------------------------------------------------------------------------------------
# Many files, one model, one compilation.


def test_three_long_files_share_one_compilation_and_keep_their_relative_names(saved_run, tmp_path, monkeypatch):
    made = []

    class Recorded(infer.ChunkedUpsampler):
        def __init__(self, *args):
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(infer, "ChunkedUpsampler", Recorded)
    songs = tmp_path / "songs"
    a = tone(songs / "a.wav", 1000)
    b = tone(songs / "sub" / "b.flac", 1700, channels=2)
    c = tone(tmp_path / "loose" / "c.wav", 2500)
    lines = []
    outputs = infer.upsample_files(
        str(saved_run), [str(songs), str(c)], str(tmp_path / "up"), chunk=256, batch_size=2, log=lines.append, every=0
    )
    assert outputs == [tmp_path / "up" / "a.wav", tmp_path / "up" / "sub" / "b.wav", tmp_path / "up" / "c.wav"]
    (upsampler,) = made
    assert upsampler.traces == 1  # 4, 7x2 and 10 windows of 256 + 2 * 66 samples: one shape
    for source, target in zip((a, b, c), outputs):
        x, rate = soundfile.read(source, dtype="float32")
        y, out_rate = soundfile.read(target, dtype="float32")
        assert out_rate == 2 * rate and y.shape == (2 * len(x), *x.shape[1:])
        np.testing.assert_allclose(y, signal.resample_poly(x, 2, 1, axis=0), atol=2e-4)
    finished = [line for line in lines if "s of audio in" in line]
    assert [line.split(":")[0] for line in finished] == [str(a), str(b), str(c)]
    assert any("/14 windows" in line for line in lines)  # a line within the long (stereo) file too


def test_a_file_above_the_models_input_rate_is_refused_naming_the_rates(saved_run, tmp_path):
    folder = tmp_path / "in"
    tone(folder / "ok.wav", 1000)
    high = tone(folder / "wideband.wav", 2000, rate=16000)
    with expect(
        ValueError, str(high), "16000 Hz is above", "input rate (8000 Hz", "8000 Hz to 16000 Hz", "above 4000 Hz"
    ):
        infer.main(["--checkpoint", str(saved_run), "--input", str(folder), "--output", str(tmp_path / "out")])
    with expect(ValueError, "degraded copy", "--allow-downsampling", "Nothing was written"):
        infer.main(["--checkpoint", str(saved_run), "--input", str(high), "--output", str(tmp_path / "w.wav")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_allow_downsampling_warns_per_file_and_the_bar_goes_to_stderr(saved_run, tmp_path, capsys):
    high = tone(tmp_path / "wideband.wav", 1600, rate=16000, channels=2)
    infer.main(
        [
            "--checkpoint",
            str(saved_run),
            "--input",
            str(high),
            "--output",
            str(tmp_path / "o.wav"),
            "--allow-downsampling",
        ]
    )
    out, err = capsys.readouterr()
    assert f"warning: {high}: 16000 Hz is above" in err and "upsample" in err and "1/1" in err  # the tqdm bar
    assert out.strip() == f"wrote {tmp_path / 'o.wav'} at 16000 Hz"
    rate, audio = wavfile.read(tmp_path / "o.wav")
    assert rate == 16000 and audio.shape == (1600, 2)  # decimated to 800 samples, upsampled to 1600


# ------------------------------------------------------------------------------------------------
# The output folder: checked before the model is loaded, nothing written when a check fails.


def _argv(run, inputs, output, *flags):
    return ["--checkpoint", str(run), "--input", *map(str, inputs), "--output", str(output), "--no-progress", *flags]


def test_the_output_folder_is_never_an_input_folder_or_in_the_run(saved_run, tmp_path):
    songs = tmp_path / "songs"
    tone(songs / "a.wav", 500)
    (tmp_path / "file").write_text("x")
    before = snapshot(tmp_path)
    for output, fragment in [
        (songs, "is the input folder"),
        (songs / "up", "inside the input folder"),
        (saved_run / "up", "inside the run folder"),
        (tmp_path / "file", "is a file"),
        (tmp_path / "file" / "up", "is not a folder"),
    ]:
        with expect(ValueError, f"--output={str(output)!r}", fragment):
            infer.main(_argv(saved_run, [songs], output))
    assert snapshot(tmp_path) == before


def test_two_inputs_with_one_output_name_are_refused(saved_run, tmp_path):
    a, flac = tone(tmp_path / "x" / "a.wav", 500), tone(tmp_path / "x" / "a.flac", 500)
    with expect(ValueError, str(a), str(flac), "would both be written to", str(tmp_path / "out" / "a.wav")):
        infer.main(_argv(saved_run, [tmp_path / "x"], tmp_path / "out"))
    other = tone(tmp_path / "y" / "A.wav", 500)
    with expect(ValueError, str(a), str(other), "would both be written"):
        infer.main(_argv(saved_run, [a, other], tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_outputs_that_exist_or_are_inputs_are_refused_and_nothing_is_written(saved_run, tmp_path):
    songs, out = tmp_path / "songs", tmp_path / "out"
    a, b = tone(songs / "a.wav", 500), tone(songs / "b.wav", 500)
    out.mkdir()
    (out / "b.wav").write_bytes(b"someone's")
    with expect(ValueError, str(out / "b.wav"), "exists", "--overwrite"):
        infer.main(_argv(saved_run, [songs], out))
    (out / "b.wav").unlink()
    (out / "b.wav").symlink_to(b)
    with expect(ValueError, str(out / "b.wav"), "is the input file", str(b)):
        infer.main(_argv(saved_run, [songs], out, "--overwrite"))
    assert sorted(p.name for p in out.iterdir()) == ["b.wav"] and a.exists()


def test_a_bad_file_among_good_ones_is_named_before_anything_is_written(saved_run, tmp_path):
    songs = tmp_path / "songs"
    tone(songs / "a.wav", 500)
    wavfile.write(songs / "nan.wav", 8000, np.array([0.1, np.nan, 0.2], np.float32))
    with expect(ValueError, str(songs / "nan.wav"), "NaN"):
        infer.main(_argv(saved_run, [songs], tmp_path / "out"))
    (songs / "nan.wav").unlink()
    (tmp_path / "empty").mkdir()
    with expect(ValueError, "--input=", str(tmp_path / "empty"), "no audio files"):
        infer.main(_argv(saved_run, [songs, tmp_path / "empty"], tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------
# evaluate.py


def _expected(path, rate=16000, factor=2, trim_db=40.0):
    """Training's pipeline spelled out: the target, its decimated input, and both baselines' scores."""
    y = data.trim_silence(data.load_mono(path, rate), rate, trim_db)
    y = y[: len(y) // factor * factor]
    x = data.decimate(y, factor)
    estimates = {"resample_poly": signal.resample_poly(x, factor, 1), "linear": linear_upsample(x, factor)[0]}
    return {name: (metrics.snr_db(y, e), metrics.lsd_db(y, e)) for name, e in estimates.items()}, len(y)


def test_evaluate_files_scores_the_zero_model_as_resample_poly(saved_run, tmp_path):
    paths = [tone(tmp_path / "a.wav", 3000, rate=16000, pad=800), tone(tmp_path / "b.wav", 4000, rate=11025)]
    model, params, rate = infer.load(saved_run)
    result = evaluate.evaluate_files(model, params, rate, paths, chunk=512)
    assert result["evaluated"] == 2 and result["skipped"] == []
    (note,) = result["notes"]  # b's target has no band above 5512.5 Hz to compare
    assert note.startswith(f"{paths[1]} is at 11025 Hz, below the model's 16000 Hz")
    assert result["files"][0]["seconds"] < 3800 / 16000  # most of the 2 x 800 silent samples are trimmed
    for entry, path in zip(result["files"], paths):
        expected, length = _expected(path)
        assert entry["seconds"] == length / 16000
        for name, (snr, lsd) in expected.items():
            assert entry["baselines"][name] == {"snr_db": pytest.approx(snr), "lsd_db": pytest.approx(lsd)}
        poly = entry["baselines"]["resample_poly"]
        assert entry["model"]["snr_db"] == pytest.approx(poly["snr_db"], abs=1e-3)
        assert entry["model"]["lsd_db"] == pytest.approx(poly["lsd_db"], abs=1e-3)
    for name in ("resample_poly", "linear"):
        mean = np.mean([f["baselines"][name]["snr_db"] for f in result["files"]])
        assert result["baselines"][name]["snr_db"] == pytest.approx(mean)
    wins = sum(f["model"]["snr_db"] >= f["baselines"]["resample_poly"]["snr_db"] for f in result["files"])
    assert result["model_snr_at_least_resample_poly"] == wins


def test_evaluate_command_prints_the_tables_skips_short_files_and_writes_json(saved_run, tmp_path, capsys):
    folder = tmp_path / "data"
    tone(folder / "a.wav", 3000, rate=16000)
    tone(folder / "sub" / "b.flac", 2500, rate=16000)
    tone(folder / "short.wav", 700, rate=16000)
    argv = ["--checkpoint", str(saved_run), "--data", str(folder), "--no-progress", "--chunk", "512"]
    with expect(ValueError, "--json=", "inside the run folder"):
        evaluate.main([*argv, "--json", str(saved_run / "scores.json")])
    evaluate.main([*argv, "--json", str(tmp_path / "scores.json"), "--per-file"])
    out = capsys.readouterr().out
    assert f"skipped {folder / 'short.wav'}: 700 samples" in out
    assert "| convtrans upsampler |" in out and "| baseline: resample_poly |" in out and "| baseline: linear |" in out
    assert "resample_poly's on " in out and "of 2 files" in out and f"| {folder / 'sub' / 'b.flac'} | 0.2 |" in out
    written = json.loads((tmp_path / "scores.json").read_text())
    assert written["evaluated"] == 2 and [s["path"] for s in written["skipped"]] == [str(folder / "short.wav")]
    assert set(written["baselines"]) == {"resample_poly", "linear"} and type(written["model"]["lsd_db"]) is float
    with expect(ValueError, "scores.json", "exists", "--overwrite"):
        evaluate.main([*argv, "--json", str(tmp_path / "scores.json")])

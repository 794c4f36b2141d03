"""The audio upsampling example (examples/audio_upsampling): training, resume, sharding, data, inference.

Tiny settings throughout (8 channels, 1024-sample clips, a few steps): these tests check the
machinery, not the quality; `make demo` checks the quality.
"""

from __future__ import annotations

import dataclasses
import json
import re

import jax
import numpy as np
import pytest
import soundfile
from scipy import signal
from scipy.io import wavfile

from examples.audio_upsampling import data, infer, metrics
from examples.audio_upsampling import model as model_lib
from examples.audio_upsampling.train import (
    ProgressLines,
    TrainConfig,
    format_duration,
    format_progress,
    linear_upsample,
    parse_args,
    train,
)

# One worker runs this file (make test uses pytest-xdist's --dist loadgroup): its training run
# (single_device_run) is then made once, not once per worker.
pytestmark = pytest.mark.xdist_group("audio_example_run")

# Two steps: the zero-initialized output layer means the first step updates only it, the second every
# layer. (Later, Adam's division by the square root of tiny second moments amplifies all-reduce
# rounding in the sharded run's gradients to differences of ~1e-3: same training, not same bits.)
TINY = dict(
    steps=2,
    batch_size=8,
    clip_length=1024,
    channels=8,
    warmup_steps=1,
    eval_clips=2,
    eval_length=2048,
    checkpoint_every=1,
    progress=False,
)


def _tiny(tmp_path, name, **overrides) -> TrainConfig:
    return TrainConfig(out=str(tmp_path / name), **{**TINY, **overrides})


def _assert_trees_equal(a, b, **tolerance):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if tolerance:
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tolerance)
        else:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# Session-scoped: on the one worker that runs this file, pytest would tear a module-scoped run down
# whenever a test of another module ran in between, and train it again.
@pytest.fixture(scope="session")
def single_device_run(tmp_path_factory):
    """Two uninterrupted steps on one device (the reference of the resume and sharding tests)."""
    config = _tiny(tmp_path_factory.mktemp("runs"), "single", devices=1, plots=True)
    return config, train(config)


# ------------------------------------------------------------------------------------------------
# Training and its outputs.


def test_smoke_training_writes_finite_losses_checkpoints_pictures_and_wavs(single_device_run):
    config, result = single_device_run
    out = __import__("pathlib").Path(config.out)
    assert result["losses"].shape == (config.steps, 3) and np.all(np.isfinite(result["losses"]))
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == ["1", "2"]
    for name in ("loss.png", "spectrogram.png", "waveform.png", "model.json", "loss_history.json"):
        assert (out / name).stat().st_size > 0, name
    rate, clip = wavfile.read(out / "examples" / "clip0_model.wav")
    assert rate == config.rate and clip.shape == (config.eval_length,)
    rate, clip = wavfile.read(out / "examples" / "clip0_input.wav")
    assert rate == config.rate // config.factor and clip.shape == (config.eval_length // config.factor,)


def test_metrics_json_has_the_documented_schema(single_device_run):
    config, _ = single_device_run
    written = json.loads((__import__("pathlib").Path(config.out) / "metrics.json").read_text())
    scores = lambda d: set(d) >= {"snr_db", "lsd_db"} and all(type(d[k]) is float for k in ("snr_db", "lsd_db"))
    assert scores(written["model"]) and scores(written["model_full_high_band"])
    assert set(written["baselines"]) >= {"resample_poly", "linear"}
    assert all(scores(written["baselines"][name]) for name in ("resample_poly", "linear"))
    assert type(written["steps"]) is int and written["steps"] == config.steps
    assert type(written["eval_clips"]) is int and written["eval_clips"] == config.eval_clips
    assert type(written["wall_s"]) is float and written["wall_s"] > 0


def test_resume_continues_exactly_where_an_interrupted_run_stopped(single_device_run, tmp_path):
    config, uninterrupted = single_device_run
    parts = dataclasses.replace(config, out=str(tmp_path / "parts"), stop_after=1, plots=False)
    first = train(parts)
    assert first["steps"] == 1
    resumed = train(dataclasses.replace(parts, stop_after=None, resume=True))
    assert resumed["steps"] == config.steps
    _assert_trees_equal(resumed["params"], uninterrupted["params"])
    np.testing.assert_array_equal(resumed["losses"], uninterrupted["losses"])


def test_eight_device_data_parallel_run_matches_the_single_device_run(single_device_run, tmp_path):
    assert jax.device_count() >= 8, "tests/conftest.py simulates 8 CPU devices"
    config, single = single_device_run
    sharded = train(dataclasses.replace(config, out=str(tmp_path / "sharded"), devices=8, plots=False))
    assert sharded["devices"] == 8
    np.testing.assert_allclose(sharded["losses"], single["losses"], rtol=1e-6)
    _assert_trees_equal(sharded["params"], single["params"], rtol=2e-5, atol=2e-6)


def test_batch_size_not_divisible_by_the_devices_is_refused(tmp_path):
    with pytest.raises(ValueError, match="batch_size=6 must be divisible by the 8 devices"):
        train(_tiny(tmp_path, "bad", batch_size=6, devices=8))


def test_training_on_a_folder_of_audio_files_logs_progress_lines_and_lists_the_held_out_files(tmp_path, capsys):
    folder = tmp_path / "recordings"
    (folder / "sub").mkdir(parents=True)
    t = lambda rate, seconds: np.arange(int(rate * seconds)) / rate
    stereo = np.stack([np.sin(2 * np.pi * 440 * t(8000, 0.5)), np.sin(2 * np.pi * 660 * t(8000, 0.5))], axis=1)
    wavfile.write(folder / "stereo_8k.wav", 8000, (0.5 * stereo * 32767).astype(np.int16))
    soundfile.write(folder / "mono_22k.flac", 0.3 * np.random.default_rng(0).uniform(-1, 1, 11025), 22050)
    soundfile.write(folder / "sub" / "mono_44k.ogg", 0.2 * np.sin(2 * np.pi * 300 * t(44100, 0.4)), 44100)
    config = _tiny(tmp_path, "run", data=str(folder), plots=False, devices=1, steps=4, eval_clips=8)
    result = train(config)
    err = capsys.readouterr().err
    assert [line.split()[1] for line in err.splitlines() if line.startswith("step ")] == ["1/4", "2/4", "3/4", "4/4"]
    assert re.search(r"^step 4/4  loss \d+\.\d{4}  l1 \d+\.\d{4}  stft \d+\.\d{3}  [\d.]+ clips/s  eta 0s$", err, re.M)
    assert "held-out evaluation" in err
    assert np.all(np.isfinite(result["losses"])) and np.isfinite(result["model"]["snr_db"])
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    dataset = data.AudioFolderDataset(folder, seed=0, rate=16000, factor=2, clip_length=1024)
    assert written["held_out_files"] == dataset.held_out_files and len(dataset.held_out_files) == 1
    # Fewer held-out clips than --eval-clips fit in one held-out file: the count evaluated is reported.
    assert written["eval_clips"] == len(dataset.held_out(8, 2048)) < 8


def test_progress_lines_are_formatted_and_due_every_tenth_of_the_run_or_every_30_s(capsys):
    assert format_progress(50, 250, 0.1234, 0.0012, 0.8123, 12.34, 80) == (
        "step 50/250  loss 0.1234  l1 0.0012  stft 0.812  12.3 clips/s  eta 1m20s"
    )
    assert [format_duration(s) for s in (0.4, 59, 60, 3725)] == ["0s", "59s", "1m00s", "1h02m"]
    now = [0.0]
    lines = ProgressLines(first=100, last=200, batch_size=4, clock=lambda: now[0])
    for step in range(101, 201):
        now[0] += 30.0 if step == 133 else 0.1  # one slow step: a line 30 s after the previous one
        lines.step(step, 1.0, 0.1, 0.5)
    steps = [int(line.split()[1].split("/")[0]) for line in capsys.readouterr().err.splitlines()]
    assert steps == [110, 120, 130, 133, 140, 150, 160, 170, 180, 190, 200]


def test_an_empty_data_folder_is_refused_with_its_name(tmp_path):
    with pytest.raises(ValueError, match=r"no audio files"):
        data.AudioFolderDataset(tmp_path, seed=0, rate=16000, factor=2, clip_length=1024)


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    for field in dataclasses.fields(TrainConfig):
        assert "--" + field.name.replace("_", "-") in text, field.name
    assert parse_args(["--steps", "7", "--no-plots", "--data", "x"]) == TrainConfig(steps=7, plots=False, data="x")


# ------------------------------------------------------------------------------------------------
# Data, model, metrics.


def test_batches_are_a_function_of_seed_and_step_and_held_out_clips_are_disjoint():
    dataset = data.ProceduralDataset(seed=3, rate=16000, factor=2, clip_length=1024)
    np.testing.assert_array_equal(dataset.targets(5, range(4), 4), dataset.targets(5, range(4), 4))
    np.testing.assert_array_equal(dataset.targets(5, range(2, 4), 4), dataset.targets(5, range(4), 4)[2:])
    assert not np.allclose(dataset.targets(5, range(4), 4), dataset.targets(6, range(4), 4))
    held = dataset.held_out(4, 1024)
    train_clips = np.concatenate([dataset.targets(step, range(4), 4) for step in range(8)])
    assert not any(np.allclose(h, c) for h in held for c in train_clips)


def test_procedural_targets_have_energy_above_the_input_nyquist():
    targets = data.ProceduralDataset(seed=0, rate=16000, factor=2, clip_length=8192).targets(0, range(16), 16)
    f, power = signal.welch(targets, fs=16000, nperseg=512, axis=-1)
    high = power[:, f > 4200].sum(-1) / power.sum(-1)
    assert np.median(high) > 1e-4  # speech-like: the band above 4 kHz is about -33 dB of the clip
    low = data.decimate(targets, 2)
    assert low.shape == (16, 4096)


def test_untrained_model_equals_scipy_resample_poly():
    for factor in (2, 4):
        net = model_lib.Upsampler(factor=factor, channels=8)
        x = np.random.default_rng(factor).standard_normal((2, 300)).astype(np.float32)
        params = net.init(jax.random.PRNGKey(0), x)["params"]
        y = np.asarray(net.apply({"params": params}, x))
        np.testing.assert_allclose(y, signal.resample_poly(x, factor, 1, axis=-1), atol=1e-5)


def test_band_split_passes_the_inputs_band_and_stops_the_new_one():
    rate, n = 16000, 4096
    t = np.arange(n) / rate
    below, above = np.sin(2 * np.pi * 2000 * t), np.sin(2 * np.pi * 6000 * t)
    low = np.asarray(model_lib.low_band(np.stack([below, above]).astype(np.float32), factor=2))
    inner = slice(200, n - 200)  # away from the zero-padded ends
    np.testing.assert_allclose(low[0, inner], below[inner], atol=1e-3)
    assert np.abs(low[1, inner]).max() < 1e-3


def test_high_band_gain_scales_only_the_residual_above_the_input_nyquist():
    x = np.random.default_rng(0).standard_normal((2, 512)).astype(np.float32)
    full_model = model_lib.Upsampler(factor=2, channels=8, high_band_gain=1.0)
    params = full_model.init(jax.random.PRNGKey(0), x)["params"]
    # A non-zero output layer: the untrained residual is exactly zero.
    params = jax.tree_util.tree_map_with_path(
        lambda path, leaf: leaf + 0.05 if "Conv_" in jax.tree_util.keystr(path) else leaf, params
    )
    base = np.asarray(model_lib.sinc_upsample(x, 2))
    full = np.asarray(full_model.apply({"params": params}, x))
    residual = full - base
    low = np.asarray(model_lib.low_band(residual, 2))
    for gain in (0.0, 0.35):
        gained = model_lib.Upsampler(factor=2, channels=8, high_band_gain=gain)
        y, y_full = gained.apply({"params": params}, x, method=model_lib.Upsampler.outputs)
        np.testing.assert_allclose(y_full, full, atol=1e-5)
        np.testing.assert_allclose(y, base + low + gain * (residual - low), atol=1e-5)
    assert np.abs(residual - low).max() > 1e-3  # the gain had something to scale


def test_procedural_speech_has_a_high_band_like_recorded_speech():
    # Recorded speech (median over voiced frames, 16 kHz): the 4-8 kHz band is 20-40 dB below the
    # frame's power; a source whose high band is far louder or far quieter teaches the wrong level.
    rng = np.random.default_rng(0)
    clips = np.stack([data._speech(rng, 16000, 16000) for _ in range(12)])
    f, _, z = signal.stft(clips, fs=16000, nperseg=1024, axis=-1)
    power = np.abs(z) ** 2  # (clips, freqs, frames)
    frame_power = power.sum(1)
    loud = frame_power > frame_power.max(-1, keepdims=True) * 0.01
    high_share = 10 * np.log10(power[:, f >= 4000].sum(1)[loud] / frame_power[loud])
    assert -40 < np.median(high_share) < -20
    assert np.isfinite(clips).all() and np.abs(clips).max() > 0


def test_linear_baseline_interpolates_between_input_samples():
    x = np.array([[0.0, 2.0, 4.0, 2.0]])
    np.testing.assert_allclose(linear_upsample(x, 2), [[0, 1, 2, 3, 4, 3, 2, 2]])


def test_snr_and_lsd_of_known_signals():
    rng = np.random.default_rng(0)
    y = rng.standard_normal((3, 4096))
    assert metrics.snr_db(y, 0.9 * y) == pytest.approx(20.0)  # error power 1% of signal power
    assert metrics.lsd_db(y, y) == 0.0
    assert metrics.lsd_db(y, 10**0.5 * y) == pytest.approx(10.0)  # every bin 10 dB off


# ------------------------------------------------------------------------------------------------
# Folders of recordings.

RATE = 16000


def _recording(seed: int, seconds: float, silence_s: float = 0.0) -> np.ndarray:
    """Noise unique to ``seed`` (content a test can find again), between ``silence_s`` of exact zeros."""
    sound = 0.5 * np.random.default_rng(seed).uniform(-1, 1, int(RATE * seconds))
    pad = np.zeros(int(RATE * silence_s))
    return np.concatenate([pad, sound, pad])


def _folder(root, names, seconds=0.2, silence_s=0.0):
    """Recordings ``names`` (relative paths) under ``root``: 16-bit 16 kHz WAV or FLAC by their suffix."""
    for seed, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(root / name, _recording(seed, seconds, silence_s), RATE)
    return root


def _contains(haystack: np.ndarray, needle: np.ndarray) -> bool:
    return bool((np.lib.stride_tricks.sliding_window_view(haystack, len(needle)) == needle).all(axis=1).any())


def _side_by_content(dataset, path) -> str:
    """Where the middle of recording ``path`` (away from the joins' fades) is: "train", "held" or "both"."""
    audio = data.load_mono(path, RATE)
    middle = audio[len(audio) // 2 :][:64]
    train, held = _contains(dataset.train_audio, middle), _contains(dataset.held_audio, middle)
    return {(True, False): "train", (False, True): "held"}.get((train, held), "both" if train else "neither")


def _longest_zero_run(row: np.ndarray) -> int:
    edges = np.diff(np.concatenate([[0], (row == 0).astype(int), [0]]))
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max(initial=0))


def test_flac_and_ogg_files_at_any_rate_mono_or_stereo_are_read_and_resampled(tmp_path):
    for suffix in (".flac", ".ogg"):
        for rate in (44100, 48000, 22050):
            for channels in (1, 2):
                t = np.arange(rate // 4) / rate
                left = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3000 * t + 1)
                audio = left if channels == 1 else np.stack([left, 0.5 * np.sin(2 * np.pi * 1200 * t)], axis=1)
                path = tmp_path / f"{rate}_{channels}{suffix}"
                soundfile.write(path, audio, rate)
                raw, file_rate = data.read_audio(path)
                assert file_rate == rate and raw.shape == audio.shape and raw.dtype == np.float32
                g = np.gcd(rate, RATE)
                expected = signal.resample_poly(audio.mean(axis=1) if channels == 2 else audio, RATE // g, rate // g)
                got = data.load_mono(path, RATE)
                assert got.shape == expected.shape == (RATE // 4,)
                if suffix == ".flac":  # lossless up to 16-bit rounding
                    np.testing.assert_allclose(got, expected, atol=1e-4)
                else:  # Vorbis is lossy: ~30 dB here
                    assert 10 * np.log10(np.sum(expected**2) / np.sum((got - expected) ** 2)) > 20


def test_trim_silence_keeps_exactly_the_loud_span_with_the_silence_inside_it():
    frame = RATE // 50  # trim_silence's 20 ms frames
    tone = lambda frames: 0.5 * np.sin(2 * np.pi * 440 * np.arange(frames * frame) / RATE)
    quiet = lambda frames: 1e-4 * np.random.default_rng(frames).standard_normal(frames * frame)  # -74 dB
    audio = np.concatenate([np.zeros(3 * frame), quiet(2), tone(10), np.zeros(5 * frame), tone(7), quiet(4)])
    trimmed = data.trim_silence(audio, RATE)
    np.testing.assert_array_equal(trimmed, audio[5 * frame : 27 * frame].astype(np.float32))
    assert len(data.trim_silence(np.zeros(5000), RATE)) == 0


def test_speakers_are_held_out_whole_and_no_recording_is_on_both_sides(tmp_path):
    names = [f"speaker{s}/take{t}.flac" for s in range(10) for t in range(3)] + ["loose.wav"]
    dataset = data.AudioFolderDataset(_folder(tmp_path, names), seed=0, rate=RATE, factor=2, clip_length=1024)
    assert dataset.held_out_by == "speaker"
    held_speakers = {name.split("/")[0] for name in dataset.held_out_files}
    assert 1 <= len(held_speakers) <= 4 and held_speakers.isdisjoint(name.split("/")[0] for name in dataset.train_files)
    assert sorted(dataset.held_out_files + dataset.train_files) == sorted(names)
    for name in names:
        assert _side_by_content(dataset, tmp_path / name) == ("held" if name in dataset.held_out_files else "train")


def test_files_are_held_out_whole_by_their_path_whatever_the_seed_and_stay_put_when_files_are_added(tmp_path):
    names = [f"word{i:02d}.wav" for i in range(25)]
    dataset = data.AudioFolderDataset(_folder(tmp_path, names), seed=0, rate=RATE, factor=2, clip_length=1024)
    assert dataset.held_out_by == "file" and 1 <= len(dataset.held_out_files) <= 6
    for name in names:
        assert _side_by_content(dataset, tmp_path / name) == ("held" if name in dataset.held_out_files else "train")
    other_seed = data.AudioFolderDataset(tmp_path, seed=7, rate=RATE, factor=2, clip_length=1024)
    assert other_seed.held_out_files == dataset.held_out_files
    _folder(tmp_path, ["new9.wav", "more/extra.wav"])  # one subfolder: not speakers; new9's hash is < 0.1
    more = data.AudioFolderDataset(tmp_path, seed=0, rate=RATE, factor=2, clip_length=1024)
    assert more.held_out_files == sorted(dataset.held_out_files + ["new9.wav"])
    assert [f for f in more.train_files if f in names] == dataset.train_files


def test_short_recordings_are_joined_not_zero_padded_and_too_little_held_out_audio_is_named(tmp_path):
    # 30 words of 0.1 s between 0.2 s of silence: shorter than a clip once trimmed.
    folder = _folder(tmp_path, [f"w{i:02d}.flac" for i in range(30)], seconds=0.1, silence_s=0.2)
    dataset = data.AudioFolderDataset(folder, seed=0, rate=RATE, factor=2, clip_length=4096)
    assert len(dataset.held_audio) == len(dataset.held_out_files) * RATE // 10
    held = dataset.held_out(32, 1024)
    assert len(held) == len(dataset.held_audio) // 1024 < 32
    train_clips = dataset.targets(3, range(8), 8)
    np.testing.assert_array_equal(train_clips, dataset.targets(3, range(8), 8))
    five_ms = RATE // 200
    assert max(_longest_zero_run(row) for row in [*held, *train_clips]) < five_ms
    seconds = f"{len(dataset.held_audio) / RATE:.2f} s"
    with pytest.raises(ValueError, match=f"(?s)held-out audio.*{seconds}.*--eval-length=16000 needs 1.00 s"):
        dataset.held_out(32, 16000)
    with pytest.raises(ValueError, match="shorter than one training clip"):
        data.AudioFolderDataset(folder, seed=0, rate=RATE, factor=2, clip_length=RATE * 4)


def test_silent_files_are_skipped_and_a_folder_of_silence_is_refused(tmp_path):
    soundfile.write(tmp_path / "silence.wav", np.zeros(4000), RATE)
    with pytest.raises(ValueError, match=f"(?s){re.escape(repr(str(tmp_path)))}.*silent"):
        data.AudioFolderDataset(tmp_path, seed=0, rate=RATE, factor=2, clip_length=1024)
    _folder(tmp_path, ["a.wav", "b.wav"])
    dataset = data.AudioFolderDataset(tmp_path, seed=0, rate=RATE, factor=2, clip_length=1024)
    assert dataset.silent_files == ["silence.wav"]
    assert sorted(dataset.train_files + dataset.held_out_files) == ["a.wav", "b.wav"]


def test_a_single_file_falls_back_to_holding_out_its_tail_with_a_warning(tmp_path, capsys):
    _folder(tmp_path, ["only.wav"], seconds=1.0)
    dataset = data.AudioFolderDataset(tmp_path, seed=0, rate=RATE, factor=2, clip_length=1024)
    warning = capsys.readouterr().err
    assert warning.count("\n") == 1 and "warning" in warning and "single" in warning and "last 10%" in warning
    assert dataset.held_out_by == "tail" and dataset.held_out_files == ["only.wav"]
    assert (len(dataset.train_audio), len(dataset.held_audio)) == (int(RATE * 0.9), RATE - int(RATE * 0.9))


# ------------------------------------------------------------------------------------------------
# WAV files and inference.


def test_wav_round_trip_keeps_samples_rate_and_channels(tmp_path):
    audio = np.random.default_rng(0).uniform(-0.9, 0.9, size=(1000, 2)).astype(np.float32)
    data.write_wav(tmp_path / "a.wav", audio, 22050)
    back, rate = data.read_audio(tmp_path / "a.wav")
    assert rate == 22050 and back.shape == (1000, 2) and back.dtype == np.float32
    np.testing.assert_allclose(back, audio, rtol=0, atol=0.5 / 32768)


@pytest.mark.parametrize("length", [5000, 777, 40])
def test_chunked_inference_equals_whole_file_inference(single_device_run, length):
    config, _ = single_device_run
    net, params, rate = infer.load(config.out)
    assert rate == config.rate
    x = np.random.default_rng(length).standard_normal((2, length)).astype(np.float32) * 0.3
    upsampler = infer.ChunkedUpsampler(net, params, chunk=256, batch_size=3)
    whole = upsampler.whole(x)
    assert np.abs(whole - signal.resample_poly(x, 2, 1, axis=-1)).max() > 1e-4  # the residual is trained
    np.testing.assert_allclose(upsampler(x), whole, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(upsampler(x[0]), whole[0], rtol=1e-5, atol=1e-6)


def test_short_signals_of_many_lengths_share_the_chunk_ladder_and_stay_exact(single_device_run):
    config, _ = single_device_run
    net, params, _ = infer.load(config.out)
    upsampler = infer.ChunkedUpsampler(net, params, chunk=4096, batch_size=2)
    window = lambda chunk: chunk + 2 * upsampler.halo
    # Lengths between the smallest window and the largest: each is cut into the largest chunk of
    # 4096, 2048, 1024, 512 whose window it exceeds, never run whole.
    lengths = [window(512) + 1, window(512) + 77, window(1024) + 5, window(1024) + 300, window(2048) + 9]
    rng = np.random.default_rng(2)
    for n in lengths:
        x = rng.standard_normal(n).astype(np.float32) * 0.3
        np.testing.assert_allclose(upsampler(x), upsampler.whole(x)[0], rtol=1e-5, atol=1e-6)
    traced_by_chunks = upsampler.traces - len(lengths)  # upsampler.whole compiled once per length
    assert [upsampler.chunk_for(n) for n in lengths] == [512, 512, 1024, 1024, 2048]
    assert traced_by_chunks == 3  # one compilation per chunk size used, not per length
    assert upsampler.chunk_for(window(512)) == 0  # no longer than the smallest window: whole


def test_chunks_need_the_receptive_halo(single_device_run):
    config, _ = single_device_run
    net, params, _ = infer.load(config.out)
    x = np.random.default_rng(1).standard_normal((1, 3000)).astype(np.float32)
    upsampler = infer.ChunkedUpsampler(net, params, chunk=256)
    upsampler.halo = 2  # too little overlap: the seams show
    assert np.abs(upsampler(x) - upsampler.whole(x)).max() > 1e-3


def test_infer_command_upsamples_a_stereo_wav_of_a_lower_rate(single_device_run, tmp_path):
    config, _ = single_device_run
    # 6 kHz: resampled up to the model's 8 kHz input rate first (a higher rate is refused by default).
    audio = 0.5 * np.sin(2 * np.pi * 300 * np.arange(6000) / 6000)
    wavfile.write(tmp_path / "in.wav", 6000, (np.stack([audio, -audio], 1) * 32767).astype(np.int16))
    infer.main(
        [
            "--checkpoint",
            config.out,
            "--input",
            str(tmp_path / "in.wav"),
            "--output",
            str(tmp_path / "out.wav"),
            "--chunk",
            "1000",
        ]
    )
    rate, out = wavfile.read(tmp_path / "out.wav")
    assert rate == 16000 and out.shape == (16000, 2) and out.dtype == np.int16


def test_debian_speech_holds_out_whole_languages_and_the_speaker_test_voice(tmp_path):
    from examples.audio_upsampling import debian_speech

    share = tmp_path / "usr" / "share"
    for relative in (
        "sounds/alsa/Front_Left.wav",
        "sounds/alsa/Noise.wav",
        "klettres/en/alpha/a.ogg",
        "klettres/da/syllab/ba.ogg",
        "ktuberling/sounds/en/hat.ogg",
    ):
        (share / relative).parent.mkdir(parents=True, exist_ok=True)
        (share / relative).write_bytes(b"")
    found = {(group, name): debian_speech.is_held_out(group) for _, group, name in debian_speech._recordings(tmp_path)}
    assert found == {
        ("alsa-en", "Front_Left.wav"): True,  # Noise.wav is not speech
        ("klettres-en", "alpha_a.ogg"): True,
        ("klettres-da", "syllab_ba.ogg"): False,
        ("ktuberling-en", "hat.ogg"): False,  # other recordings than klettres's English speakers
    }

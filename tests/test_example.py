"""The audio upsampling example (examples/audio_upsampling): training, resume, sharding, data, inference.

Tiny settings throughout (8 channels, 1024-sample clips, a few steps): these tests check the
machinery, not the quality; `make demo` checks the quality.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest
from scipy import signal
from scipy.io import wavfile

from examples.audio_upsampling import data, infer, metrics
from examples.audio_upsampling import model as model_lib
from examples.audio_upsampling.train import TrainConfig, linear_upsample, parse_args, train

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


@pytest.fixture(scope="module")
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
    assert scores(written["model"])
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


def test_training_on_a_folder_of_wav_files_of_different_rates_and_channels(tmp_path):
    folder = tmp_path / "wavs"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    t = lambda rate, seconds: np.arange(int(rate * seconds)) / rate
    stereo = np.stack([np.sin(2 * np.pi * 440 * t(8000, 0.5)), np.sin(2 * np.pi * 660 * t(8000, 0.5))], axis=1)
    wavfile.write(folder / "stereo_8k.wav", 8000, (0.5 * stereo * 32767).astype(np.int16))
    wavfile.write(folder / "mono_22k.wav", 22050, (0.3 * rng.standard_normal(11025)).astype(np.float32))
    wavfile.write(
        folder / "sub" / "mono_44k.wav", 44100, (0.2 * np.sin(2 * np.pi * 300 * t(44100, 0.4)) * 2**31).astype(np.int32)
    )
    dataset = data.WavFolderDataset(folder, seed=0, rate=16000, factor=2, clip_length=1024)
    assert [len(a) + len(b) for a, b in zip(dataset.train_audio, dataset.held_audio)] == [8000, 8000, 6400]
    result = train(_tiny(tmp_path, "wavrun", data=str(folder), plots=False, devices=1))
    assert np.all(np.isfinite(result["losses"]))
    assert np.isfinite(result["model"]["snr_db"]) and np.isfinite(result["model"]["lsd_db"])


def test_an_empty_data_folder_is_refused_with_its_name(tmp_path):
    with pytest.raises(ValueError, match=r"no audio files"):
        data.WavFolderDataset(tmp_path, seed=0, rate=16000, factor=2, clip_length=1024)


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
    assert np.median(high) > 1e-3
    low = data.decimate(targets, 2)
    assert low.shape == (16, 4096)


def test_untrained_model_equals_scipy_resample_poly():
    for factor in (2, 4):
        net = model_lib.Upsampler(factor=factor, channels=8)
        x = np.random.default_rng(factor).standard_normal((2, 300)).astype(np.float32)
        params = net.init(jax.random.PRNGKey(0), x)["params"]
        y = np.asarray(net.apply({"params": params}, x))
        np.testing.assert_allclose(y, signal.resample_poly(x, factor, 1, axis=-1), atol=1e-5)


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

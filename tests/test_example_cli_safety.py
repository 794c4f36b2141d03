"""The audio-upsampling CLIs against hostile input: they never delete or overwrite what they did not
write, check every flag and folder before writing anything, and name the file in every file error.

Nothing here trains: a run folder is made once, directly, with the checkpoints module (its
model.json and one checkpoint of freshly initialized parameters).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
import shutil
import struct

import jax
import numpy as np
import pytest
from scipy.io import wavfile

from examples.audio_upsampling import checkpoints, data, guards, infer, train

SETTINGS = dict(
    factor=2, channels=8, max_norm=2.0, l2=1e-5, high_band_gain=train.TrainConfig.high_band_gain, rate=16000
)
SAVED_STEP = 2


def expect(error, *fragments):
    """``pytest.raises`` that also checks the message mentions every fragment (literally)."""
    return pytest.raises(error, match="(?s)" + "".join(f"(?=.*{re.escape(str(f))})" for f in fragments))


def snapshot(folder: pathlib.Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (``None`` for folders): to assert nothing changed."""
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


def train_argv(out, *flags) -> list[str]:
    return [
        "--out",
        str(out),
        "--steps",
        "4",
        "--channels",
        "8",
        "--clip-length",
        "1024",
        "--eval-length",
        "1024",
        "--no-plots",
        "--no-progress",
        *flags,
    ]


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory) -> pathlib.Path:
    """A run folder as train writes it (model.json by this program, a checkpoint at step 2), never modified."""
    out = tmp_path_factory.mktemp("saved") / "run"
    out.mkdir()
    config = train.TrainConfig(out=str(out), steps=4, **{k: v for k, v in SETTINGS.items()})
    checkpoints.write_model_settings(out, {**config.model_settings(), "rate": config.rate})
    # Zeros in the shapes of the model's parameters: running the initializer would cost seconds.
    shapes = jax.eval_shape(config.model().init, jax.random.PRNGKey(0), np.zeros((1, 64), np.float32))["params"]
    params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    opt_state = train.make_optimizer(config).init(params)
    with checkpoints.opened(out, create=True) as mngr:
        checkpoints.save(mngr, SAVED_STEP, params, opt_state)
    return out


@pytest.fixture
def run(saved_run, tmp_path) -> pathlib.Path:
    """A copy of the saved run that a test may change."""
    return pathlib.Path(shutil.copytree(saved_run, tmp_path / "run"))


@pytest.fixture
def wav(tmp_path) -> pathlib.Path:
    path = tmp_path / "in.wav"
    wavfile.write(path, 8000, (0.3 * np.sin(np.arange(800) / 5) * 32767).astype(np.int16))
    return path


# ------------------------------------------------------------------------------------------------
# train: the --out folder.


def test_an_empty_out_is_refused_and_the_working_directory_keeps_its_checkpoints(tmp_path, monkeypatch):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "precious.txt").write_text("mine")
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    with expect(ValueError, "--out=''", "empty"):
        train.main(train_argv(""))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("flags", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_a_fresh_run_refuses_a_non_empty_folder_it_did_not_create_and_deletes_nothing(tmp_path, flags):
    out = tmp_path / "theirs"
    (out / "checkpoints" / "1").mkdir(parents=True)
    (out / "checkpoints" / "1" / "weights.bin").write_bytes(b"\x00\x01")
    (out / "model.json").write_text('{"their": "model"}')
    (out / "metrics.json").write_text("{}")
    before = snapshot(out)
    with expect(ValueError, f"--out={str(out)!r}", "not a run of this program", "nothing was changed"):
        train.main(train_argv(out, *flags))
    assert snapshot(out) == before


def test_dot_as_out_is_refused_when_the_working_directory_has_other_files(tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("keep me")
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    with expect(ValueError, "--out='.'", "not empty"):
        train.main(train_argv("."))
    assert snapshot(tmp_path) == before


def test_a_fresh_run_into_an_earlier_run_needs_overwrite_and_changes_nothing_without_it(run):
    before = snapshot(run)
    with expect(ValueError, f"--out={str(run)!r}", "holds a run", "--resume", "--overwrite"):
        train.main(train_argv(run))
    assert snapshot(run) == before


def test_overwrite_removes_only_the_earlier_runs_own_outputs(run):
    for name in ("metrics.json", "loss_history.json", "loss.png"):
        (run / name).write_text("old result")
    (run / "examples").mkdir()
    (run / "examples" / "clip0_model.wav").write_bytes(b"old")
    (run / "examples" / "my_recording.wav").write_bytes(b"user's")
    (run / "notes.txt").write_text("user's")
    old_outputs = guards.fresh_run_folder(run, checkpoints.is_own_run(run), overwrite=True)
    guards.remove(old_outputs)
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == [
        "examples",
        "examples/my_recording.wav",
        "notes.txt",
    ]


def test_overwrite_refuses_a_checkpoint_folder_holding_files_the_run_did_not_write(run):
    (run / "checkpoints" / "README.txt").write_text("user's")
    before = snapshot(run)
    with expect(ValueError, str(run / "checkpoints"), "README.txt", "not written by the run"):
        train.main(train_argv(run, "--overwrite"))
    assert snapshot(run) == before


def test_an_out_below_a_file_is_refused_naming_the_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with expect(ValueError, "--out=", str(tmp_path / "file"), "not a folder"):
        train.main(train_argv(tmp_path / "file" / "run"))


def test_resume_and_overwrite_together_are_refused(run):
    with expect(ValueError, "--resume", "--overwrite"):
        train.main(train_argv(run, "--resume", "--overwrite"))


# ------------------------------------------------------------------------------------------------
# train --resume: checked against the run before anything is written.


def test_resume_with_another_factor_leaves_model_json_byte_identical_and_names_factor(run):
    before = snapshot(run)
    with expect(ValueError, "--factor=4", "the run has 2", str(run / "model.json")):
        train.main(train_argv(run, "--resume", "--factor", "4"))
    assert snapshot(run) == before


def test_resume_names_every_setting_that_differs_from_the_run(run):
    with expect(ValueError, "--channels=16", "the run has 8", "--max-norm=3.0", "the run has 2.0", "--rate=8000"):
        train.main(train_argv(run, "--resume", "--channels", "16", "--max-norm", "3", "--rate", "8000"))


def test_resume_without_a_checkpoint_is_an_error_and_creates_nothing(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    checkpoints.write_model_settings(out, SETTINGS)
    before = snapshot(out)
    with expect(ValueError, "--resume", "no checkpoint", str(out / "checkpoints")):
        train.main(train_argv(out, "--resume"))
    assert snapshot(out) == before


def test_resume_of_a_folder_that_is_not_a_run_names_it(tmp_path):
    with expect(ValueError, f"--out={str(tmp_path)!r}", "model.json"):
        train.main(train_argv(tmp_path, "--resume"))
    assert list(tmp_path.iterdir()) == []


def test_resume_past_the_requested_end_is_refused(run):
    with expect(ValueError, f"step {SAVED_STEP}", "--stop-after"):
        train.main(train_argv(run, "--resume", "--stop-after", "1"))


def test_resume_with_a_damaged_loss_history_names_it_and_changes_nothing(run):
    (run / "loss_history.json").write_text('[[1.0, 2.0, "x"]]')
    before = snapshot(run)
    with expect(ValueError, str(run / "loss_history.json"), "finite numbers"):
        train.main(train_argv(run, "--resume"))
    assert snapshot(run) == before


def test_resume_with_a_tampered_model_json_names_the_file(run):
    (run / "model.json").write_text('{"factor": "two"}')
    with expect(ValueError, str(run / "model.json")):
        train.main(train_argv(run, "--resume"))


# ------------------------------------------------------------------------------------------------
# train: flags are checked before the run folder exists.


@pytest.mark.parametrize(
    "flag, value, fragment",
    [
        ("--learning-rate", "inf", "finite number > 0"),
        ("--learning-rate", "-inf", "finite number > 0"),
        ("--learning-rate", "0", "finite number > 0"),
        ("--clip-norm", "inf", "finite number > 0"),
        ("--max-norm", "nan", "finite number > 0"),
        ("--l2", "inf", "finite number >= 0"),
        ("--weight-decay", "nan", "finite number >= 0"),
        ("--l1-weight", "-inf", "finite number >= 0"),
        ("--stft-weight", "inf", "finite number >= 0"),
        ("--seed", "-1", ">= 0"),
        ("--seed", str(2**40), "<= 2147483647"),  # past what jax.random.PRNGKey and int32 steps hold
        ("--steps", str(2**31), "<= 2147483647"),
        ("--rate", str(10**9), "<= 768000"),
        ("--channels", str(10**6), "<= 4096"),
        ("--warmup-steps", "-1", ">= 0"),
        ("--eval-clips", "0", ">= 1"),
        ("--eval-length", str(2**30), "samples in one array"),  # 32 held-out clips of it: past int32 indexing
    ],
)
def test_non_finite_or_out_of_range_numbers_are_refused_before_the_folder_is_created(tmp_path, flag, value, fragment):
    out = tmp_path / "run"
    with expect(ValueError, flag, value, fragment):
        train.main(train_argv(out, f"{flag}={value}"))  # "=": argparse reads a lone "-inf" as a flag
    assert not out.exists()


def test_a_rate_the_factor_does_not_divide_is_refused_naming_both(tmp_path):
    with expect(ValueError, "--rate=16001", "--factor=2", "divisible"):
        train.main(train_argv(tmp_path / "run", "--rate", "16001"))
    assert not (tmp_path / "run").exists()


def test_cluster_settings_without_distributed_are_refused(tmp_path):
    with expect(ValueError, "--num-processes", "--distributed"):
        train.main(train_argv(tmp_path / "run", "--num-processes", "2"))


@pytest.mark.parametrize("value", ["", "   ", "a\0b"], ids=["empty", "blank", "nul"])
def test_an_unusable_data_path_is_refused_naming_the_flag(tmp_path, value):
    with expect(ValueError, "--data=", repr(value)):
        train.main(train_argv(tmp_path / "run", "--data", value))
    assert not (tmp_path / "run").exists()


def test_an_out_inside_the_data_folder_is_refused(tmp_path):
    with expect(ValueError, "--out=", "inside --data=", "training data"):
        train.main(train_argv(tmp_path / "wavs" / "run", "--data", str(tmp_path / "wavs")))
    assert not (tmp_path / "wavs").exists()


def test_a_data_folder_that_does_not_exist_is_named(tmp_path):
    with expect(ValueError, str(tmp_path / "nowhere"), "no such folder"):
        train.main(train_argv(tmp_path / "run", "--data", str(tmp_path / "nowhere")))
    assert not (tmp_path / "run").exists()


def test_a_data_folder_without_audio_files_is_named(tmp_path):
    (tmp_path / "wavs").mkdir()
    (tmp_path / "wavs" / "song.mp3").write_bytes(b"ID3")
    (tmp_path / "wavs" / "folder.wav").mkdir()  # a folder is not an audio file
    with expect(ValueError, str(tmp_path / "wavs"), "no audio files"):
        train.main(train_argv(tmp_path / "run", "--data", str(tmp_path / "wavs")))
    assert not (tmp_path / "run").exists()


def test_a_bad_file_in_the_data_folder_is_named_before_the_run_folder_is_created(tmp_path):
    (tmp_path / "wavs").mkdir()
    (tmp_path / "wavs" / "broken.wav").write_bytes(b"")
    with expect(ValueError, str(tmp_path / "wavs" / "broken.wav")):
        train.main(train_argv(tmp_path / "run", "--data", str(tmp_path / "wavs")))
    assert not (tmp_path / "run").exists()


def test_held_out_audio_shorter_than_eval_length_is_named_before_the_run_folder_is_created(tmp_path):
    (tmp_path / "wavs").mkdir()
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 800)  # 0.05 s each: one file is held out
    for name in ("a.wav", "b.wav", "c.wav"):
        wavfile.write(tmp_path / "wavs" / name, 16000, noise.astype(np.float32))
    with expect(ValueError, "held-out audio", "0.05 s", "--eval-length=1024 needs 0.06 s"):
        train.main(train_argv(tmp_path / "run", "--data", str(tmp_path / "wavs")))
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------
# train: divergence stops the run.


class _Manager:
    """What the divergence checks read of an orbax manager."""

    directory = pathlib.Path("run/checkpoints")

    def latest_step(self):
        return 5


def test_a_nan_loss_stops_training_with_an_error_naming_the_step():
    with expect(train.TrainingDiverged, "diverged at step 7", "loss=nan", "step 5", "--learning-rate"):
        train._stop_if_diverged(7, math.nan, 0.1, 0.2, _Manager())
    assert issubclass(train.TrainingDiverged, ValueError)


def test_an_infinite_loss_term_stops_training_too():
    with pytest.raises(train.TrainingDiverged, match="step 3"):
        train._stop_if_diverged(3, 1.0, math.inf, 0.2, _Manager())


def test_non_finite_parameters_are_never_checkpointed():
    params = {"kernel": np.array([1.0, np.inf], np.float32)}
    with expect(train.TrainingDiverged, "diverged at step 9", "parameters"):
        train._stop_if_parameters_diverged(9, params, _Manager())


# ------------------------------------------------------------------------------------------------
# infer: reads the run, writes only its output.


def infer_argv(run_dir, source, target, *flags) -> list[str]:
    return ["--checkpoint", str(run_dir), "--input", str(source), "--output", str(target), *flags]


def test_infer_on_a_folder_that_is_not_a_run_creates_nothing(tmp_path, wav):
    folder = tmp_path / "not_a_run"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    with expect(ValueError, "checkpoint=", str(folder), "model.json"):
        infer.main(infer_argv(folder, wav, tmp_path / "out.wav"))
    assert snapshot(folder) == {"notes.txt": b"x"}
    assert not (tmp_path / "out.wav").exists()


def test_infer_on_a_run_without_checkpoints_creates_nothing(tmp_path, wav):
    folder = tmp_path / "run"
    folder.mkdir()
    checkpoints.write_model_settings(folder, SETTINGS)
    with expect(ValueError, "no checkpoint", str(folder)):
        infer.main(infer_argv(folder, wav, tmp_path / "out.wav"))
    assert [p.name for p in folder.iterdir()] == ["model.json"]


@pytest.mark.parametrize("flags", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_infer_never_overwrites_its_input_file(saved_run, wav, flags):
    before = wav.read_bytes()
    for spelling in (wav, wav.parent / "." / wav.name):
        with expect(ValueError, "is the input file"):
            infer.main(infer_argv(saved_run, wav, spelling, *flags))
    link = wav.parent / "link.wav"
    link.symlink_to(wav)
    with expect(ValueError, "is the input file"):
        infer.main(infer_argv(saved_run, wav, link, *flags))
    assert wav.read_bytes() == before


def test_infer_refuses_an_existing_output_without_overwrite(saved_run, wav, tmp_path):
    (tmp_path / "out.wav").write_bytes(b"someone's file")
    with expect(ValueError, "out.wav", "exists", "--overwrite"):
        infer.main(infer_argv(saved_run, wav, tmp_path / "out.wav"))
    assert (tmp_path / "out.wav").read_bytes() == b"someone's file"


def test_infer_writes_nothing_into_the_run_folder(run, wav):
    before = snapshot(run)
    for target in (run / "out.wav", run / "model.json", run / "checkpoints" / "x.wav"):
        with expect(ValueError, "inside the run folder"):
            infer.main(infer_argv(run, wav, target, "--overwrite"))
    assert snapshot(run) == before


def test_infer_refuses_an_output_in_a_missing_folder(saved_run, wav, tmp_path):
    with expect(ValueError, str(tmp_path / "missing"), "does not exist"):
        infer.main(infer_argv(saved_run, wav, tmp_path / "missing" / "out.wav"))


@pytest.mark.parametrize("flag, value", [("--chunk", "0"), ("--batch-size", "-3")])
def test_infer_refuses_sizes_below_one(saved_run, wav, tmp_path, flag, value):
    with expect(ValueError, f"{flag}={value}", ">= 1"):
        infer.main(infer_argv(saved_run, wav, tmp_path / "out.wav", flag, value))


def _wav_with_rate(path: pathlib.Path, rate: int) -> None:
    """A WAV whose header says ``rate`` Hz (scipy refuses to write 0 itself)."""
    wavfile.write(path, 8000, np.zeros(16, np.int16))
    header = bytearray(path.read_bytes())
    header[24:32] = struct.pack("<II", rate, rate * 2)  # sample rate and the byte rate it implies
    path.write_bytes(bytes(header))


BAD_WAVS = {
    "empty file": lambda p: p.write_bytes(b""),
    "not a WAV": lambda p: p.write_text("just some text, not audio"),
    "NaN samples": lambda p: wavfile.write(p, 8000, np.array([0.1, np.nan, 0.2], np.float32)),
    "infinite samples": lambda p: wavfile.write(p, 8000, np.array([0.1, -np.inf], np.float32)),
    "rate 0": lambda p: _wav_with_rate(p, 0),
    "rate too high": lambda p: _wav_with_rate(p, 2_000_000),
    "truncated header": lambda p: p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00"),
    "no samples": lambda p: wavfile.write(p, 8000, np.zeros(0, np.int16)),
    "missing": lambda p: None,
    "a folder": lambda p: p.mkdir(),
}


@pytest.mark.parametrize("kind", BAD_WAVS)
def test_infer_names_a_bad_input_file_and_writes_nothing(saved_run, tmp_path, kind):
    source = tmp_path / "bad.wav"
    BAD_WAVS[kind](source)
    with expect(ValueError, str(source)):
        infer.main(infer_argv(saved_run, source, tmp_path / "out.wav"))
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize("kind", ["NaN samples", "rate 0", "not a WAV"])
def test_reading_a_bad_wav_names_the_file_and_the_problem(tmp_path, kind):
    source = tmp_path / "bad.wav"
    BAD_WAVS[kind](source)
    # libsndfile itself refuses a zero rate in the header, before any of our checks.
    unreadable = "not a readable audio"
    problem = {"NaN samples": "NaN or infinite", "rate 0": unreadable, "not a WAV": unreadable}[kind]
    with expect(ValueError, str(source), problem):
        data.read_audio(source)


TAMPERED = {
    "invalid JSON": ("{factor: 2", "not valid JSON"),
    "not an object": ("[2, 8]", "JSON object"),
    "missing key": (json.dumps({k: v for k, v in SETTINGS.items() if k != "rate"}), "missing rate"),
    "unknown key": (json.dumps({**SETTINGS, "kernel_size": "x"}), "unexpected kernel_size"),
    "factor as text": (json.dumps({**SETTINGS, "factor": "two"}), "factor='two'"),
    "factor not a power of two": (json.dumps({**SETTINGS, "factor": 3}), "power of two"),
    "negative channels": (json.dumps({**SETTINGS, "channels": -8}), "channels=-8"),
    "channels as a bool": (json.dumps({**SETTINGS, "channels": True}), "channels=True"),
    "NaN max_norm": (json.dumps({**SETTINGS, "max_norm": math.nan}), "max_norm=nan"),
    "negative l2": (json.dumps({**SETTINGS, "l2": -1}), "l2=-1"),
    "high_band_gain above 1": (json.dumps({**SETTINGS, "high_band_gain": 1.5}), "high_band_gain=1.5"),
    "rate 0": (json.dumps({**SETTINGS, "rate": 0}), "rate=0"),
    "rate the factor does not divide": (json.dumps({**SETTINGS, "rate": 16001}), "not divisible"),
    "not UTF-8": ("\udcff", "cannot read"),
    "absurd nesting": ("[" * 100_000, "not valid JSON"),
}


@pytest.mark.parametrize("kind", TAMPERED)
def test_infer_names_a_tampered_model_json_and_what_is_wrong(run, wav, tmp_path, kind):
    text, problem = TAMPERED[kind]
    (run / "model.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    with expect(ValueError, str(run / "model.json"), problem):
        infer.main(infer_argv(run, wav, tmp_path / "out.wav"))
    assert not (tmp_path / "out.wav").exists()


def test_a_model_json_of_an_earlier_version_reads_as_the_model_it_trained(tmp_path):
    earlier = {key: value for key, value in SETTINGS.items() if key != "high_band_gain"}
    (tmp_path / "model.json").write_text(json.dumps({**earlier, "created_by": checkpoints.CREATED_BY}))
    assert checkpoints.read_model_settings(tmp_path)["high_band_gain"] == 1.0  # no gain: the full-level output


def test_the_high_band_gain_in_model_json_is_the_one_inference_uses(saved_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(saved_run, run)
    settings = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps({**settings, "high_band_gain": 0.5}))
    model, _, _ = infer.load(run)
    assert model.high_band_gain == 0.5


def test_infer_names_a_tampered_checkpoint(run, wav, tmp_path):
    shutil.rmtree(run / "checkpoints" / str(SAVED_STEP) / "params")
    with expect(ValueError, str(run / "checkpoints" / str(SAVED_STEP)), "cannot restore"):
        infer.main(infer_argv(run, wav, tmp_path / "out.wav"))
    assert not (tmp_path / "out.wav").exists()


def test_infer_replaces_an_existing_output_with_overwrite(saved_run, wav, tmp_path):
    (tmp_path / "out.wav").write_bytes(b"old")
    infer.main(infer_argv(saved_run, wav, tmp_path / "out.wav", "--overwrite"))
    rate, audio = wavfile.read(tmp_path / "out.wav")
    assert rate == SETTINGS["rate"] and audio.shape == (1600,)
    assert sorted(os.listdir(saved_run / "checkpoints")) == [str(SAVED_STEP)]

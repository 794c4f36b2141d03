"""Train the audio upsampler and compare it with classic resampling.

    python examples/audio_upsampling/train.py --out runs/demo          # what `make demo` runs
    python examples/audio_upsampling/train.py --data ~/speech --out runs/speech --steps 5000
    python examples/audio_upsampling/train.py --out runs/demo --resume # continue a run

(from any working directory; ``python -m examples.audio_upsampling.train`` from the repository root
does the same.)

The run folder gets ``checkpoints/`` (orbax), ``model.json`` (model settings, for
:mod:`.infer`), ``loss_history.json``, ``metrics.json``, ``loss.png``, ``spectrogram.png``,
``waveform.png`` and held-out example WAVs under ``examples/``.

The run folder is the program's own: a fresh run needs a new or empty ``--out`` (or, with
``--overwrite``, an earlier run of this program, of which only the run's own outputs are removed);
``--resume`` needs a run whose ``model.json`` matches the flags and that has a checkpoint. Every flag
and the folder are checked before anything is written (see :mod:`.guards`), and a run whose loss
turns NaN or infinite stops with :class:`TrainingDiverged` naming the step.

Training step: loss = ``l1_weight * L1(y, y_hat) + stft_weight * MRSTFT(y, y_hat) + sum(layer
regularization terms)``, gradients clipped to a global norm, AdamW with linear warm-up and cosine
decay, then :func:`convtrans.keras_constraints` projects the max-norm-constrained kernels.

Data parallelism: a 1-D mesh ``("data",)`` over the devices, the batch sharded along it, parameters
and optimizer state replicated; XLA inserts the gradient all-reduce. With ``--distributed``,
``jax.distributed.initialize()`` joins the processes first; each process generates only its rows
of every global batch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import sys
import time
import typing
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from scipy import signal

if not __package__:  # run as a file: the repository root replaces this folder on the import path
    _HERE = pathlib.Path(__file__).resolve().parent
    sys.path[:] = [str(_HERE.parents[1])] + [p for p in sys.path if pathlib.Path(p or ".").resolve() != _HERE]

import convtrans as ct
from examples.audio_upsampling import checkpoints, data, guards, losses, metrics
from examples.audio_upsampling.model import DEFAULT_HIGH_BAND_GAIN, Upsampler


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run; the command-line flags have the same names (``--batch-size``)."""

    out: str = "runs/demo"
    data: str | None = None
    rate: int = 16000
    factor: int = 2
    speech_share: float = 1.0
    steps: int = 400
    batch_size: int = 16
    clip_length: int = 4096
    channels: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 20
    weight_decay: float = 1e-4
    clip_norm: float = 1.0
    l1_weight: float = 30.0
    stft_weight: float = 0.1
    max_norm: float = 2.0
    l2: float = 1e-5
    high_band_gain: float = DEFAULT_HIGH_BAND_GAIN
    seed: int = 0
    eval_clips: int = 32
    eval_length: int = 16000
    checkpoint_every: int = 100
    resume: bool = False
    overwrite: bool = False
    stop_after: int | None = None
    devices: int | None = None
    distributed: bool = False
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    progress: bool = True
    plots: bool = True

    def model(self) -> Upsampler:
        return Upsampler(**self.model_settings())

    def model_settings(self) -> dict[str, Any]:
        return dict(
            factor=self.factor,
            channels=self.channels,
            max_norm=self.max_norm,
            l2=self.l2,
            high_band_gain=self.high_band_gain,
        )


_HELP = {
    "out": "run folder: checkpoints, metrics.json, pictures and example WAVs go here",
    "data": "train on the WAV, FLAC and OGG files under this folder (searched recursively; any rate, mono or "
    "stereo; resampled to --rate, leading and trailing silence trimmed) instead of the built-in procedural audio. "
    "Whole recordings are held out for evaluation, about 10%% of them chosen by a hash of their paths: whole "
    "first-level subfolders (taken as speakers) when there are two or more, else whole files (a single file: its "
    "last 10%%). Recordings are joined end to end, not zero-padded; metrics.json lists the held-out files",
    "speech_share": "without --data: the share of procedural clips that are speech-like (source-filter "
    "speech); the rest are music-like mixtures of harmonic tones, chirps and noise bursts",
    "rate": "target (output) sample rate in Hz",
    "factor": "upsampling factor (power of two); inputs are at rate/factor Hz",
    "steps": "optimizer steps of the whole run (the learning-rate schedule spans them)",
    "batch_size": "global batch size (clips per step); must be divisible by the number of devices",
    "clip_length": "samples per training clip at the target rate (multiple of --factor, >= 1024)",
    "channels": "channels of the generator at the low rate (halved at each 2x stage)",
    "learning_rate": "peak AdamW learning rate (linear warm-up, then cosine decay to 1%% of it)",
    "warmup_steps": "steps of linear learning-rate warm-up",
    "weight_decay": "AdamW decoupled weight decay",
    "clip_norm": "clip gradients to this global norm",
    "l1_weight": "weight of the waveform L1 loss",
    "stft_weight": "weight of the multi-resolution STFT loss",
    "max_norm": "Keras MaxNorm constraint on the Conv1DTranspose kernels (applied after each step)",
    "l2": "Keras L2 regularization factor on the Conv1DTranspose kernels (added to the loss)",
    "high_band_gain": "gain in [0, 1] on the model's estimate of the band above the input's Nyquist (the band "
    "the input lacks); below 1 it trades spectral fidelity for waveform fidelity where that band is "
    "unpredictable (see model.py). Training sees the estimate at full level; the gain applies to the model's "
    "output (held-out metrics, infer.py, evaluate.py)",
    "seed": "seed of initialization and data order (batch k is a pure function of (seed, k)); "
    "held-out clips come from a disjoint seed",
    "eval_clips": "number of held-out clips to evaluate on",
    "eval_length": "samples per held-out clip at the target rate",
    "checkpoint_every": "save an orbax checkpoint every this many steps (and at the end)",
    "resume": "continue from the last checkpoint in --out, at the same step and with the same data order "
    "(the model settings must be the run's; without it, a run starts afresh in a new or empty --out)",
    "overwrite": "start afresh in an --out that holds an earlier run of this program, removing that run's "
    "checkpoints and results (other files there are kept; any other non-empty folder is refused)",
    "stop_after": "stop after this step (the schedule still spans --steps), e.g. to split a run "
    "into parts continued with --resume",
    "devices": "use only the first N devices for the data-parallel mesh (default: all; single-host runs)",
    "distributed": "call jax.distributed.initialize() first (multi-host: launch one process per host"
    "; on SLURM/MPI/Cloud TPU the settings are detected, elsewhere give the next three flags)",
    "coordinator": "with --distributed: address host:port of process 0; unset: detected or $JAX_COORDINATOR_ADDRESS",
    "num_processes": "with --distributed: number of processes; unset: detected",
    "process_id": "with --distributed: this process's index, 0 .. num_processes - 1; unset: detected",
    "progress": "show a progress bar (--no-progress to hide it)",
    "plots": "write the PNG pictures (--no-plots to skip them)",
}


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """The :class:`TrainConfig` of the command line ``argv``."""
    parser = argparse.ArgumentParser(
        prog="python examples/audio_upsampling/train.py",
        description="Train a convtrans audio upsampler (bandwidth extension) and compare it with "
        "scipy resample_poly and linear interpolation on held-out clips.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    # The resolved annotations, not their spelling: `int | None` parses as int, `bool` as a switch.
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        hint = hints[field.name]
        if hint is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=field.default, help=_HELP[field.name]
            )
        else:
            (kind,) = [arg for arg in typing.get_args(hint) if arg is not type(None)] or [hint]
            parser.add_argument(flag, type=kind, default=field.default, help=_HELP[field.name])
    return TrainConfig(**vars(parser.parse_args(argv)))


def make_dataset(config: TrainConfig):
    if config.data is not None:
        return data.AudioFolderDataset(config.data, config.seed, config.rate, config.factor, config.clip_length)
    return data.ProceduralDataset(config.seed, config.rate, config.factor, config.clip_length, config.speech_share)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(
        # Warm-up leaves at least one step of decay: optax refuses an empty cosine phase.
        0.0,
        config.learning_rate,
        min(config.warmup_steps, config.steps - 1),
        max(config.steps, 1),
        end_value=config.learning_rate * 0.01,
    )
    return optax.chain(
        optax.clip_by_global_norm(config.clip_norm),
        optax.adamw(schedule, weight_decay=config.weight_decay),
        ct.keras_constraints(),  # last: projects w + update, as Keras does
    )


def make_loss(model: Upsampler, config: TrainConfig):
    def loss_fn(params, x, y):
        # Both losses see the high band at full level; the gain applies to what the model is used for.
        (_, y_full), state = model.apply({"params": params}, x, method=Upsampler.outputs, mutable=["losses"])
        regularization = sum(jax.tree.leaves(state["losses"]))
        l1 = losses.waveform_l1(y, y_full)
        stft = losses.multi_resolution_stft_loss(y, y_full)
        return config.l1_weight * l1 + config.stft_weight * stft + regularization, (l1, stft)

    return loss_fn


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


_INTEGERS = {  # flag: smallest value (the largest is guards.MAX_INT unless _MAXIMA says otherwise)
    "rate": 1,
    "factor": 2,
    "steps": 1,
    "batch_size": 1,
    "clip_length": 1,
    "channels": 1,
    "checkpoint_every": 1,
    "eval_clips": 1,
    "eval_length": 1,
    "warmup_steps": 0,
    "seed": 0,
    "stop_after": 1,
    "devices": 1,
    "num_processes": 1,
    "process_id": 0,
}
_MAXIMA = {"rate": guards.MAX_RATE, "channels": guards.MAX_CHANNELS}
_POSITIVE = ("learning_rate", "clip_norm", "max_norm")
_NON_NEGATIVE = ("weight_decay", "l1_weight", "stft_weight", "l2", "high_band_gain", "speech_share")
_AT_MOST_ONE = ("high_band_gain", "speech_share")
_OPTIONAL = ("stop_after", "devices", "num_processes", "process_id")


def _check(config: TrainConfig, n_available: int) -> int:
    """Validate every setting before anything runs; returns the number of devices to use.

    A bad value must fail here, not after the training run (eval settings), half-way through it
    (``--learning-rate inf`` trains to NaN) or silently (``--devices 0`` or ``-1`` would otherwise
    slice the device list).
    """
    _check_numbers(config)
    _check_paths(config)
    _check_combinations(config)
    if config.devices is not None and config.devices > n_available:
        raise ValueError(f"--devices={config.devices}: only {n_available} devices are available.")
    n_devices = config.devices or n_available
    if config.batch_size % n_devices:
        raise ValueError(f"batch_size={config.batch_size} must be divisible by the {n_devices} devices of the mesh.")
    return n_devices


def _check_numbers(config: TrainConfig) -> None:
    for name, minimum in _INTEGERS.items():
        value = getattr(config, name)
        if not (value is None and name in _OPTIONAL):
            guards.refuse(_flag(name), value, guards.integer_problem(value, minimum, _MAXIMA.get(name, guards.MAX_INT)))
    for name in _POSITIVE + _NON_NEGATIVE:
        value = getattr(config, name)
        guards.refuse(_flag(name), value, guards.number_problem(value, 0, inclusive=name in _NON_NEGATIVE))
    for name in _AT_MOST_ONE:
        if getattr(config, name) > 1:
            guards.refuse(_flag(name), getattr(config, name), "expected a finite number >= 0 and <= 1")
    guards.refuse("--factor", config.factor, guards.factor_problem(config.factor))
    problem = guards.rate_problem(config.rate, config.factor, ("--rate", "--factor"))
    if problem:
        raise ValueError(problem + ".")
    # A batch or the held-out set is one array: past int32 indexing XLA cannot address it.
    for count, length in (("batch_size", "clip_length"), ("eval_clips", "eval_length")):
        samples = getattr(config, count) * getattr(config, length)
        if samples > guards.MAX_INT:
            raise ValueError(
                f"{_flag(count)}={getattr(config, count)} times {_flag(length)}={getattr(config, length)} "
                f"is {samples} samples in one array; expected at most {guards.MAX_INT}."
            )


def _check_paths(config: TrainConfig) -> None:
    guards.refuse("--out", config.out, guards.path_problem(config.out))
    if config.data is None:
        return
    guards.refuse("--data", config.data, guards.path_problem(config.data))
    if guards.is_inside(pathlib.Path(config.out), pathlib.Path(config.data)):
        raise ValueError(
            f"--out={config.out!r} is inside --data={config.data!r}: the run's example WAVs would "
            "become training data. Pick a run folder outside the data."
        )


def _check_combinations(config: TrainConfig) -> None:
    if config.resume and config.overwrite:
        raise ValueError("--resume and --overwrite contradict each other: continue the run, or replace it.")
    if config.stop_after is not None and config.stop_after > config.steps:
        raise ValueError(f"--stop-after={config.stop_after}: expected at most --steps={config.steps}.")
    if config.eval_length % config.factor or config.eval_length < 1024:
        raise ValueError(
            f"--eval-length={config.eval_length}: expected a multiple of --factor={config.factor}, "
            ">= 1024 (the STFT metrics' longest frame)."
        )
    if config.clip_length < 1024 or config.clip_length % config.factor:
        raise ValueError(
            f"clip_length={config.clip_length}: expected a multiple of factor={config.factor}, >= 1024 "
            "(the STFT loss's longest frame)."
        )
    cluster = [
        _flag(name) for name in ("coordinator", "num_processes", "process_id") if getattr(config, name) is not None
    ]
    if cluster and not config.distributed:
        raise ValueError(f"{', '.join(cluster)} only apply with --distributed.")
    if None not in (config.num_processes, config.process_id) and config.process_id >= config.num_processes:
        raise ValueError(
            f"--process-id={config.process_id}: expected less than --num-processes={config.num_processes}."
        )


class TrainingDiverged(FloatingPointError, ValueError):
    """The loss or the parameters became NaN or infinite (the run stops; its last checkpoint is kept)."""


def _plan_run_folder(config: TrainConfig, out: pathlib.Path) -> list[pathlib.Path]:
    """Check ``--out`` for this run without changing it; returns what ``--overwrite`` must remove."""
    if not config.resume:
        return guards.fresh_run_folder(out, checkpoints.is_own_run(out), config.overwrite)
    if not out.is_dir():
        raise ValueError(
            f"--resume: --out={config.out!r} is not a run folder ("
            + ("not a folder)." if out.exists() else "no such folder).")
        )
    recorded = checkpoints.read_model_settings(out, flag="--out")
    given = {**config.model_settings(), "rate": config.rate}
    step = guards.resumable_run_folder(out, given, recorded, checkpoints.saved_steps(out), _last_step(config))
    _read_history(out / "loss_history.json", step)  # only to refuse a damaged one before anything runs
    return []


def _start_run_folder(config: TrainConfig, out: pathlib.Path, old_outputs: list[pathlib.Path]) -> None:
    """The first writes of a run, after every check passed."""
    guards.remove(old_outputs)
    out.mkdir(parents=True, exist_ok=True)
    if not config.resume:  # a resumed run's model.json already says the same
        checkpoints.write_model_settings(out, {**config.model_settings(), "rate": config.rate})


def _last_step(config: TrainConfig) -> int:
    return min(config.steps, config.stop_after or config.steps)


def _read_history(path: pathlib.Path, first: int) -> list[list[float]]:
    """The losses of the first ``first`` steps from ``loss_history.json`` (none if it is missing)."""
    if not path.exists():
        return []
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:  # unreadable, not UTF-8, not JSON
        raise ValueError(f"{path}: cannot read the loss history ({error}).") from error
    rows_ok = isinstance(history, list) and all(
        isinstance(row, list)
        and len(row) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in row)
        for row in history
    )
    if not rows_ok:
        raise ValueError(f"{path}: expected a JSON list of [loss, l1, stft] rows of finite numbers.")
    return history[:first]


def _stop_if_diverged(step: int, loss: float, l1: float, stft: float, mngr) -> None:
    """Raise :class:`TrainingDiverged` when step ``step``'s losses are not all finite."""
    if not all(math.isfinite(v) for v in (loss, l1, stft)):
        raise TrainingDiverged(
            f"training diverged at step {step}: loss={loss}, l1={l1}, stft={stft}. " + _diverged_advice(mngr)
        )


def _stop_if_parameters_diverged(step: int, params: Any, mngr) -> None:
    # The loss of a step is computed before its update, so the last update's NaNs show only here.
    if not all(bool(jnp.isfinite(leaf).all()) for leaf in jax.tree.leaves(params)):
        raise TrainingDiverged(
            f"training diverged at step {step}: the parameters became NaN or infinite. " + _diverged_advice(mngr)
        )


def _diverged_advice(mngr) -> str:
    kept = mngr.latest_step()
    saved = (
        "no checkpoint was saved before"
        if kept is None
        else f"the checkpoint of step {kept} in {mngr.directory} is kept"
    )
    return f"Nothing of this step was saved; {saved}. Try a lower --learning-rate or --l2."


def train(config: TrainConfig) -> dict[str, Any]:
    """Train, checkpoint, evaluate and write the run folder; returns the metrics (with ``params``).

    The returned dict is ``metrics.json``'s content plus ``"params"`` (the trained parameters,
    unboxed, on the host) and ``"losses"`` (the loss of every step).
    """
    start = time.perf_counter()
    if config.distributed:
        jax.distributed.initialize(config.coordinator, config.num_processes, config.process_id)
    devices = jax.devices()[: _check(config, len(jax.devices()))]
    mesh = Mesh(np.array(devices), ("data",))
    replicated, by_batch = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    is_main = jax.process_index() == 0
    out = pathlib.Path(config.out)
    old_outputs = _plan_run_folder(config, out) if is_main else []
    # Read before the first write: a bad --data file, or held-out audio too short for --eval-length,
    # must not leave a half-made run folder behind.
    dataset = make_dataset(config)
    held_out = dataset.held_out(config.eval_clips, config.eval_length)
    if is_main:
        _start_run_folder(config, out, old_outputs)

    model = config.model()
    n_in = config.clip_length // config.factor
    params = model.init(jax.random.PRNGKey(config.seed), jnp.zeros((1, n_in)))["params"]
    tx = make_optimizer(config)
    opt_state = tx.init(params)  # on the boxed params: keras_constraints records the constraints
    params, opt_state = jax.device_put((params, opt_state), replicated)

    loss_fn = make_loss(model, config)

    def train_step(params, opt_state, x, y):
        (loss, (l1, stft)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, jnp.stack([loss, l1, stft])

    step_fn = jax.jit(train_step, out_shardings=(replicated, replicated, replicated), donate_argnums=(0, 1))

    history_path = out / "loss_history.json"
    last = _last_step(config)

    rows_per_process = config.batch_size // jax.process_count()
    rows = range(jax.process_index() * rows_per_process, (jax.process_index() + 1) * rows_per_process)

    def batch(step):
        y = dataset.targets(step, rows, config.batch_size)
        x = data.decimate(y, config.factor)
        return (
            jax.make_array_from_process_local_data(by_batch, x),
            jax.make_array_from_process_local_data(by_batch, y),
        )

    # Closed however the block ends, so an error is not buried under orbax's shutdown tracebacks.
    with checkpoints.opened(out, create=True) as mngr:
        first, params, opt_state, history = _restore(config, mngr, params, opt_state, history_path)
        bar = _progress(config, first, last)
        lines = ProgressLines(first, last, config.batch_size) if not config.progress and is_main else None
        tic = time.perf_counter()
        try:
            for step in range(first, last):
                x, y = batch(step)
                params, opt_state, values = step_fn(params, opt_state, x, y)
                loss, l1, stft = (float(v) for v in values)
                _stop_if_diverged(step + 1, loss, l1, stft, mngr)
                history.append([loss, l1, stft])
                elapsed = time.perf_counter() - tic
                bar.set_postfix(
                    loss=f"{loss:.4f}",
                    l1=f"{l1:.4f}",
                    stft=f"{stft:.3f}",
                    clips_per_s=f"{(step + 1 - first) * config.batch_size / elapsed:.1f}",
                )
                bar.update(1)
                if lines is not None:
                    lines.step(step + 1, loss, l1, stft)
                if (step + 1) % config.checkpoint_every == 0 or step + 1 == last:
                    _stop_if_parameters_diverged(step + 1, params, mngr)
                    checkpoints.save(mngr, step + 1, params, opt_state)
                    if is_main:
                        history_path.write_text(json.dumps(history))
        finally:
            bar.close()
        mngr.wait_until_finished()

    host_params = jax.device_get(_unbox(params))
    if is_main:
        print(
            f"held-out evaluation: {len(held_out)} clips of {config.eval_length} samples "
            f"({config.eval_length / config.rate:.2f} s) ...",
            file=sys.stderr,
            flush=True,
        )
    result = evaluate(model, host_params, dataset, config, target=held_out)
    if config.data is not None:
        result.update(held_out_files=list(dataset.held_out_files), held_out_by=dataset.held_out_by)
    result.update(
        steps=last,
        wall_s=time.perf_counter() - start,
        devices=len(devices),
        train_s=time.perf_counter() - tic - result["eval_s"],
    )
    if is_main:
        public = {k: v for k, v in result.items() if k not in ("clips",)}
        (out / "metrics.json").write_text(json.dumps(public, indent=2) + "\n")
        write_examples(out, result["clips"], config)
        if config.plots:
            from examples.audio_upsampling import plots

            plots.loss_curve(out / "loss.png", np.asarray(history))
            plots.comparison(out, result["clips"], config.rate, config.factor)
        print(format_table(result), flush=True)
    result.update(params=host_params, losses=np.asarray(history))
    return result


def _restore(config: TrainConfig, mngr, params: Any, opt_state: Any, history_path: pathlib.Path):
    """``(first step, params, opt_state, loss history)``: the checkpoint's with ``--resume``, else the start."""
    if not config.resume:
        return 0, params, opt_state, []
    first = mngr.latest_step()
    if first is None:  # checked on the main process already; another process may see another folder
        raise ValueError(f"--resume: no checkpoint in {mngr.directory}; nothing to continue.")
    params, opt_state = checkpoints.restore(mngr, int(first), params, opt_state)
    return int(first), params, opt_state, _read_history(history_path, int(first))


def _unbox(tree: Any) -> Any:
    import flax.linen as nn

    return nn.unbox(tree)


def _progress(config: TrainConfig, first: int, last: int):
    from tqdm.auto import tqdm

    return tqdm(
        total=last - first,
        initial=0,
        desc=f"train {first}->{last}",
        unit="step",
        disable=not config.progress or jax.process_index() != 0,
        file=sys.stderr,
    )


def format_duration(seconds: float) -> str:
    """``seconds`` as ``45s``, ``1m20s`` or ``2h05m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_progress(
    step: int, total: int, loss: float, l1: float, stft: float, clips_per_s: float, eta_s: float
) -> str:
    """One progress line: ``step 50/250  loss 0.1234  l1 0.0012  stft 0.812  12.3 clips/s  eta 1m20s``."""
    return (
        f"step {step}/{total}  loss {loss:.4f}  l1 {l1:.4f}  stft {stft:.3f}  "
        f"{clips_per_s:.1f} clips/s  eta {format_duration(eta_s)}"
    )


class ProgressLines:
    """Progress as lines on stderr (for logs, where ``--no-progress`` hides the bar).

    A line after about every 10% of the steps from ``first`` to ``last``, after the last step, and
    whenever ``every_s`` seconds passed since the previous line.
    """

    def __init__(self, first: int, last: int, batch_size: int, every_s: float = 30.0, clock=time.perf_counter):
        self.first, self.last, self.batch_size, self.every_s, self.clock = first, last, batch_size, every_s, clock
        self.interval = max(1, math.ceil((last - first) / 10))
        self.start = self.printed = clock()

    def step(self, step: int, loss: float, l1: float, stft: float) -> None:
        """Called after step ``step`` (1-based) with its losses; prints when a line is due."""
        now, done = self.clock(), step - self.first
        if done % self.interval and step != self.last and now - self.printed < self.every_s:
            return
        elapsed = max(now - self.start, 1e-9)
        line = format_progress(
            step, self.last, loss, l1, stft, done * self.batch_size / elapsed, elapsed / done * (self.last - step)
        )
        print(line, file=sys.stderr, flush=True)
        self.printed = now


def linear_upsample(x: np.ndarray, factor: int) -> np.ndarray:
    """Linear interpolation (``numpy.interp``) of each row onto the ``factor``-times finer grid.

    Output sample ``t`` sits at input position ``t / factor`` (the grid ``resample_poly`` uses);
    past the last input sample the value is held.
    """
    n = x.shape[-1]
    grid = np.arange(n * factor) / factor
    return np.stack([np.interp(grid, np.arange(n), row) for row in np.atleast_2d(x)]).astype(np.float32)


def evaluate(
    model: Upsampler, params: Any, dataset, config: TrainConfig, target: np.ndarray | None = None
) -> dict[str, Any]:
    """SNR and LSD of the model and both baselines on the same held-out clips.

    ``model_full_high_band`` scores the model's output with its high-band estimate at full level
    (``high_band_gain`` 1; the same as ``model`` when the gain is 1): what the gain trades.

    ``target``: the held-out clips, ``dataset.held_out(config.eval_clips, config.eval_length)`` unless
    given (a folder of recordings may hold fewer clips than ``eval_clips``; ``eval_clips`` in the
    result is the number actually evaluated).
    """
    tic = time.perf_counter()
    if target is None:
        target = dataset.held_out(config.eval_clips, config.eval_length)
    x = data.decimate(target, config.factor)
    apply = jax.jit(lambda p, x: model.apply({"params": p}, x, method=Upsampler.outputs))
    pairs = [apply(params, x[i : i + 4]) for i in range(0, len(x), 4)]
    estimate, full = (np.concatenate([np.asarray(pair[j]) for pair in pairs]) for j in (0, 1))
    poly = signal.resample_poly(x, config.factor, 1, axis=-1).astype(np.float32)
    linear = linear_upsample(x, config.factor)
    score = lambda y_hat: {"snr_db": metrics.snr_db(target, y_hat), "lsd_db": metrics.lsd_db(target, y_hat)}
    return {
        "model": score(estimate),
        "model_full_high_band": score(full),
        "baselines": {"resample_poly": score(poly), "linear": score(linear)},
        "eval_clips": len(target),
        "eval_s": time.perf_counter() - tic,
        "clips": {"input": x, "resample_poly": poly, "linear": linear, "model": estimate, "target": target},
    }


def write_examples(out: pathlib.Path, clips: dict[str, np.ndarray], config: TrainConfig, count: int = 3) -> None:
    """Held-out clips as WAVs: ``examples/clip<i>_{input,resample_poly,model,target}.wav``."""
    folder = out / "examples"
    folder.mkdir(exist_ok=True)
    for i in range(min(count, len(clips["target"]))):
        data.write_wav(folder / f"clip{i}_input.wav", clips["input"][i], config.rate // config.factor)
        for name in ("resample_poly", "model", "target"):
            data.write_wav(folder / f"clip{i}_{name}.wav", clips[name][i], config.rate)


def format_table(result: dict[str, Any]) -> str:
    """The comparison as a Markdown table (also valid plain text)."""
    rows = [
        ("convtrans upsampler", result["model"]),
        ("same, high band at full level", result["model_full_high_band"]),
    ] + [(f"baseline: {name}", result["baselines"][name]) for name in ("resample_poly", "linear")]
    lines = [
        f"Held-out clips: {result['eval_clips']}, steps: {result['steps']}, wall: {result['wall_s']:.0f} s",
        "",
        "| method | SNR (dB, higher is better) | LSD (dB, lower is better) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {m['snr_db']:.2f} | {m['lsd_db']:.2f} |" for name, m in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()

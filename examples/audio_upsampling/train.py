"""Train the audio upsampler and compare it with classic resampling.

    python -m examples.audio_upsampling.train --out runs/demo          # what `make demo` runs
    python -m examples.audio_upsampling.train --data ~/speech --out runs/speech --steps 5000
    python -m examples.audio_upsampling.train --out runs/demo --resume # continue a run

The run folder gets ``checkpoints/`` (orbax), ``model.json`` (model settings, for
:mod:`.infer`), ``loss_history.json``, ``metrics.json``, ``loss.png``, ``spectrogram.png``,
``waveform.png`` and held-out example WAVs under ``examples/``.

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
import numbers
import pathlib
import shutil
import sys
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from scipy import signal

import convtrans as ct
from examples.audio_upsampling import checkpoints, data, losses, metrics
from examples.audio_upsampling.model import Upsampler, stage_factors


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run; the command-line flags have the same names (``--batch-size``)."""

    out: str = "runs/demo"
    data: Optional[str] = None
    rate: int = 16000
    factor: int = 2
    steps: int = 250
    batch_size: int = 16
    clip_length: int = 4096
    channels: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 20
    weight_decay: float = 1e-4
    clip_norm: float = 1.0
    l1_weight: float = 30.0
    stft_weight: float = 1.0
    max_norm: float = 2.0
    l2: float = 1e-5
    seed: int = 0
    eval_clips: int = 32
    eval_length: int = 16000
    checkpoint_every: int = 100
    resume: bool = False
    stop_after: Optional[int] = None
    devices: Optional[int] = None
    distributed: bool = False
    coordinator: Optional[str] = None
    num_processes: Optional[int] = None
    process_id: Optional[int] = None
    progress: bool = True
    plots: bool = True

    def model(self) -> Upsampler:
        return Upsampler(**self.model_settings())

    def model_settings(self) -> dict[str, Any]:
        return dict(factor=self.factor, channels=self.channels, max_norm=self.max_norm, l2=self.l2)


_HELP = {
    "out": "run folder: checkpoints, metrics.json, pictures and example WAVs go here",
    "data": "train on the *.wav files under this folder (any rate, mono/stereo; resampled to --rate; "
            "the last 10%% of each file is held out) instead of the built-in procedural audio",
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
    "seed": "seed of initialization and data order (batch k is a pure function of (seed, k)); "
            "held-out clips come from a disjoint seed",
    "eval_clips": "number of held-out clips to evaluate on",
    "eval_length": "samples per held-out clip at the target rate",
    "checkpoint_every": "save an orbax checkpoint every this many steps (and at the end)",
    "resume": "continue from the last checkpoint in --out, at the same step and with the same data order "
              "(without it, a run starts afresh and replaces --out's old checkpoints)",
    "stop_after": "stop after this step (the schedule still spans --steps), e.g. to split a run "
                  "into parts continued with --resume",
    "devices": "use only the first N devices for the data-parallel mesh (default: all; single-host runs)",
    "distributed": "call jax.distributed.initialize() first (multi-host: launch one process per host"
                   "; on SLURM/MPI/Cloud TPU the settings are detected, elsewhere give the next three flags)",
    "coordinator": "with --distributed: address host:port of process 0; unset: detected or "
                   "$JAX_COORDINATOR_ADDRESS",
    "num_processes": "with --distributed: number of processes; unset: detected",
    "process_id": "with --distributed: this process's index, 0 .. num_processes - 1; unset: detected",
    "progress": "show a progress bar (--no-progress to hide it)",
    "plots": "write the PNG pictures (--no-plots to skip them)",
}


def parse_args(argv: Optional[list[str]] = None) -> TrainConfig:
    """The :class:`TrainConfig` of the command line ``argv``."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.audio_upsampling.train",
        description="Train a convtrans audio upsampler (bandwidth extension) and compare it with "
                    "scipy resample_poly and linear interpolation on held-out clips.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default,
                                help=_HELP[field.name])
        else:
            kind = {"int": int, "float": float, "str": str, "Optional[int]": int, "Optional[str]": str}[field.type]
            parser.add_argument(flag, type=kind, default=field.default, help=_HELP[field.name])
    return TrainConfig(**vars(parser.parse_args(argv)))


def make_dataset(config: TrainConfig):
    if config.data is not None:
        return data.WavFolderDataset(config.data, config.seed, config.rate, config.factor, config.clip_length)
    return data.ProceduralDataset(config.seed, config.rate, config.factor, config.clip_length)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(
        # Warm-up leaves at least one step of decay: optax refuses an empty cosine phase.
        0.0, config.learning_rate, min(config.warmup_steps, config.steps - 1), max(config.steps, 1),
        end_value=config.learning_rate * 0.01,
    )
    return optax.chain(
        optax.clip_by_global_norm(config.clip_norm),
        optax.adamw(schedule, weight_decay=config.weight_decay),
        ct.keras_constraints(),  # last: projects w + update, as Keras does
    )


def make_loss(model: Upsampler, config: TrainConfig):
    def loss_fn(params, x, y):
        y_hat, state = model.apply({"params": params}, x, mutable=["losses"])
        regularization = sum(jax.tree.leaves(state["losses"]))
        l1 = losses.waveform_l1(y, y_hat)
        stft = losses.multi_resolution_stft_loss(y, y_hat)
        return config.l1_weight * l1 + config.stft_weight * stft + regularization, (l1, stft)
    return loss_fn


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check(config: TrainConfig, n_available: int) -> int:
    """Validate every setting before anything runs; returns the number of devices to use.

    A bad value must fail here, not after the training run (eval settings) or silently
    (``--devices 0`` or ``-1`` would otherwise slice the device list).
    """
    for name in ("rate", "factor", "steps", "batch_size", "clip_length", "channels", "checkpoint_every",
                 "eval_clips", "eval_length", "warmup_steps", "seed", "stop_after", "devices",
                 "num_processes", "process_id"):
        value = getattr(config, name)
        minimum = 0 if name in ("warmup_steps", "seed", "process_id") else 1
        if value is None and name in ("stop_after", "devices", "num_processes", "process_id"):
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise ValueError(f"{_flag(name)}={value!r}: expected an integer >= {minimum}.")
    for name in ("learning_rate", "clip_norm", "max_norm"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
            raise ValueError(f"{_flag(name)}={value!r}: expected a number > 0.")
    for name in ("weight_decay", "l1_weight", "stft_weight", "l2"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
            raise ValueError(f"{_flag(name)}={value!r}: expected a number >= 0.")
    stage_factors(config.factor)  # a power of two >= 2
    if config.devices is not None and config.devices > n_available:
        raise ValueError(f"--devices={config.devices}: only {n_available} devices are available.")
    if config.stop_after is not None and config.stop_after > config.steps:
        raise ValueError(f"--stop-after={config.stop_after}: expected at most --steps={config.steps}.")
    if config.eval_length % config.factor or config.eval_length < 1024:
        raise ValueError(f"--eval-length={config.eval_length}: expected a multiple of --factor={config.factor}, "
                         ">= 1024 (the STFT metrics' longest frame).")
    n_devices = config.devices or n_available
    if config.batch_size % n_devices:
        raise ValueError(f"batch_size={config.batch_size} must be divisible by the {n_devices} devices of the mesh.")
    if config.clip_length < 1024 or config.clip_length % config.factor:
        raise ValueError(f"clip_length={config.clip_length}: expected a multiple of factor={config.factor}, >= 1024 "
                         "(the STFT loss's longest frame).")
    return n_devices


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
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        checkpoints.write_model_settings(out, {**config.model_settings(), "rate": config.rate})

    dataset = make_dataset(config)
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

    if not config.resume and is_main and (out / "checkpoints").exists():
        # A fresh run replaces the folder's old checkpoints (use --resume to continue them).
        shutil.rmtree(out / "checkpoints")
    mngr = checkpoints.manager(out)
    history_path = out / "loss_history.json"
    history: list[list[float]] = []
    first = 0
    if config.resume and mngr.latest_step() is not None:
        first = int(mngr.latest_step())
        params, opt_state = checkpoints.restore(mngr, first, params, opt_state)
        if history_path.exists():
            history = json.loads(history_path.read_text())[:first]
    last = min(config.steps, config.stop_after or config.steps)

    rows_per_process = config.batch_size // jax.process_count()
    rows = range(jax.process_index() * rows_per_process, (jax.process_index() + 1) * rows_per_process)

    def batch(step):
        y = dataset.targets(step, rows, config.batch_size)
        x = data.decimate(y, config.factor)
        return (jax.make_array_from_process_local_data(by_batch, x),
                jax.make_array_from_process_local_data(by_batch, y))

    bar = _progress(config, first, last)
    tic = time.perf_counter()
    for step in range(first, last):
        x, y = batch(step)
        params, opt_state, values = step_fn(params, opt_state, x, y)
        loss, l1, stft = (float(v) for v in values)
        history.append([loss, l1, stft])
        elapsed = time.perf_counter() - tic
        bar.set_postfix(loss=f"{loss:.4f}", l1=f"{l1:.4f}", stft=f"{stft:.3f}",
                        clips_per_s=f"{(step + 1 - first) * config.batch_size / elapsed:.1f}")
        bar.update(1)
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == last:
            checkpoints.save(mngr, step + 1, params, opt_state)
            if is_main:
                history_path.write_text(json.dumps(history))
    bar.close()
    mngr.wait_until_finished()
    mngr.close()

    host_params = jax.device_get(_unbox(params))
    result = evaluate(model, host_params, dataset, config)
    result.update(steps=last, wall_s=time.perf_counter() - start, devices=len(devices),
                  train_s=time.perf_counter() - tic - result["eval_s"])
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


def _unbox(tree: Any) -> Any:
    import flax.linen as nn
    return nn.unbox(tree)


def _progress(config: TrainConfig, first: int, last: int):
    from tqdm.auto import tqdm
    return tqdm(total=last - first, initial=0, desc=f"train {first}->{last}", unit="step",
                disable=not config.progress or jax.process_index() != 0, file=sys.stderr)


def linear_upsample(x: np.ndarray, factor: int) -> np.ndarray:
    """Linear interpolation (``numpy.interp``) of each row onto the ``factor``-times finer grid.

    Output sample ``t`` sits at input position ``t / factor`` (the grid ``resample_poly`` uses);
    past the last input sample the value is held.
    """
    n = x.shape[-1]
    grid = np.arange(n * factor) / factor
    return np.stack([np.interp(grid, np.arange(n), row) for row in np.atleast_2d(x)]).astype(np.float32)


def evaluate(model: Upsampler, params: Any, dataset, config: TrainConfig) -> dict[str, Any]:
    """SNR and LSD of the model and both baselines on the same held-out clips."""
    tic = time.perf_counter()
    target = dataset.held_out(config.eval_clips, config.eval_length)
    x = data.decimate(target, config.factor)
    apply = jax.jit(lambda p, x: model.apply({"params": p}, x))
    estimate = np.concatenate([np.asarray(apply(params, x[i:i + 4])) for i in range(0, len(x), 4)])
    poly = signal.resample_poly(x, config.factor, 1, axis=-1).astype(np.float32)
    linear = linear_upsample(x, config.factor)
    score = lambda y_hat: {"snr_db": metrics.snr_db(target, y_hat), "lsd_db": metrics.lsd_db(target, y_hat)}  # noqa: E731
    return {
        "model": score(estimate),
        "baselines": {"resample_poly": score(poly), "linear": score(linear)},
        "eval_clips": int(config.eval_clips),
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
    rows = [("convtrans upsampler", result["model"])] + [
        (f"baseline: {name}", result["baselines"][name]) for name in ("resample_poly", "linear")]
    lines = [f"Held-out clips: {result['eval_clips']}, steps: {result['steps']}, wall: {result['wall_s']:.0f} s",
             "", "| method | SNR (dB, higher is better) | LSD (dB, lower is better) |", "|---|---:|---:|"]
    lines += [f"| {name} | {m['snr_db']:.2f} | {m['lsd_db']:.2f} |" for name, m in rows]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()

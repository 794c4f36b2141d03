"""Whole-model benchmarks: the HiFi-GAN V1 and MelGAN generators of examples/vocoder on convtrans,
the same generators on ``flax.linen.ConvTranspose``, and the original PyTorch generators with the
same weights: forward, forward+backward (a training step's gradients), batch-1 inference, and the
JAX programs' compile times, under each thread setting.

Usage: ``python -m benchmarks.models [--quick] [--settings NAME ...]`` prints the tables;
``python -m benchmarks.run`` (``make bench``) writes them into docs/performance.md, and
``python -m benchmarks.run --models-only`` rewrites that section alone.

XLA:CPU sizes its thread pool once, when the process creates its CPU client, so every thread
setting runs in a child process of its own (``python -m benchmarks.models --child NAME --out
FILE``), which applies the setting before it imports jax or torch and writes its measurements
as JSON. This module imports neither at the top for that reason.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

MODELS_HEADING = "## Whole models"
REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

# --- thread settings -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    threads: int | None  # torch.set_num_threads and XLA:CPU's pool; None: the libraries' defaults
    pin: bool = False  # the whole process on one core
    how: str = ""


SETTINGS = {
    s.name: s
    for s in [
        Setting(
            "1 thread",
            1,
            how="torch.set_num_threads(1); XLA:CPU's pool made with one thread (the process's affinity "
            "restricted to one CPU while jax creates its client, then every thread given all CPUs back)",
        ),
        Setting(
            "2 threads",
            2,
            how="torch.set_num_threads(2); XLA:CPU's pool made with two threads (the affinity restricted "
            "to two CPUs while jax creates its client where the machine has more, then given back)",
        ),
        Setting(
            "one core",
            1,
            pin=True,
            how="the whole process pinned to one CPU (os.sched_setaffinity before jax or torch is "
            "imported): Python, XLA's pool and torch's share that core; torch.set_num_threads(1)",
        ),
        Setting("GPU", None, how="the default device; jax and torch on the GPU"),
    ]
}
CPU_SETTINGS = ["1 thread", "2 threads", "one core"]
GPU_SETTINGS = ["GPU"]
COMPILE_SETTING = {"cpu": "2 threads", "gpu": "GPU"}  # where compile times are measured


def _set_every_thread_affinity(cpus: list[int]) -> None:
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):  # a thread that has exited since the listing
            os.sched_setaffinity(int(tid), cpus)


def enter_setting(setting: Setting) -> None:
    """Applies ``setting`` to this process: call it before jax or torch is imported.

    XLA:CPU (jax 0.10.2) sizes its intra-op pool from the CPUs the process may run on when it
    creates its client, and no XLA_FLAGS sets that size (``--xla_cpu_multi_thread_eigen=false``
    still left two threads busy in a GEMM and in a convolution, measured by per-thread CPU time).
    So the affinity is restricted while jax creates its client and runs a first computation, and,
    unless the setting pins, every thread of the process gets all CPUs back afterwards.
    """
    if "jax" in sys.modules or "torch" in sys.modules:
        raise RuntimeError("enter_setting must run before jax and torch are imported")
    if "--xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        raise RuntimeError("simulated host devices size XLA:CPU's pool past the setting; see child_environment")
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    limit = 1 if setting.pin else setting.threads
    restricted = bool(allowed) and limit is not None and limit < len(allowed)
    if restricted:
        os.sched_setaffinity(0, allowed[:limit])
    import jax.numpy as jnp

    jnp.zeros(8).block_until_ready()  # creates the client and its thread pools
    if restricted and not setting.pin:
        _set_every_thread_affinity(allowed)
    import torch

    if setting.threads is not None:
        torch.set_num_threads(setting.threads)


def _thread_ticks() -> dict[str, int]:
    """CPU clock ticks (user + system) used so far by each thread of this process."""
    ticks = {}
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks[tid] = int(fields[11]) + int(fields[12])
    return ticks


def busy_threads(fn: Callable[[], Any], seconds: float = 0.5) -> int | None:
    """How many threads of this process did at least a tenth of the CPU work of calling ``fn``
    repeatedly for ``seconds`` (None where /proc gives no per-thread times)."""
    if not os.path.isdir("/proc/self/task"):
        return None
    fn()
    before = _thread_ticks()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        fn()
    after = _thread_ticks()
    used = [after[t] - before.get(t, 0) for t in after]
    total = sum(used)
    return sum(u >= 0.1 * total for u in used) if total else None


# --- the models and the implementations ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "hifigan" or "melgan"
    batch: int  # forward and forward+backward: batch x frames mel frames
    frames: int
    inference_frames: int  # batch-1 inference
    hyper: tuple[tuple[str, Any], ...] = ()  # the flax model's hyperparameters besides the defaults


# Two 16-frame segments (4096 samples each; both papers' code trains on 8192) and batch-1 inference
# on 32 frames (0.37 s): sizes that keep a full run of every setting to minutes on two cores.
MODELS = [ModelSpec("HiFi-GAN V1", "hifigan", 2, 16, 32), ModelSpec("MelGAN", "melgan", 2, 16, 32)]
QUICK_SIZES = dict(batch=1, frames=8, inference_frames=16)
INIT_STD = {"hifigan": 0.01, "melgan": 0.02}  # both papers' code: kernels from N(0, std)
MODES = ["forward", "forward+backward", "batch-1 inference"]
PROGRAMS = ["forward", "forward+backward"]  # the programs whose compile times are measured


def flax_model(spec: ModelSpec, upsample_layer: Callable[..., Any]):
    """``spec``'s flax generator with ``upsample_layer`` as its transposed convolution."""
    from examples.vocoder.models import HiFiGAN, MelGAN

    return {"hifigan": HiFiGAN, "melgan": MelGAN}[spec.kind](upsample_layer=upsample_layer, **dict(spec.hyper))


def torch_model(spec: ModelSpec, model, params):
    """The PyTorch generator of ``spec``'s kind, with the weights of the flax ``model``'s ``params``."""
    if spec.kind == "hifigan":
        from benchmarks.torch_hifigan import from_flax
    else:
        from benchmarks.torch_melgan import from_flax
    return from_flax(model, params)


def convtrans_conv_transpose(*args, **kwargs):
    """:class:`convtrans.Conv1DTranspose` (imported when called, not when this module is)."""
    import convtrans as ct

    return ct.Conv1DTranspose(*args, **kwargs)


def flax_conv_transpose(
    filters: int,
    kernel_size: int,
    strides: int = 1,
    padding: Any = "valid",
    output_padding: int | None = None,
    kernel_initializer: Any = None,
    dilation_rate: int = 1,
):
    """A ``flax.linen.ConvTranspose`` computing what ``convtrans.Conv1DTranspose`` with these
    arguments computes, with the same parameters: with ``transpose_kernel=True`` its kernel is the
    Keras layout ``(kernel_size, filters, in_channels)``, and the pads are
    :func:`convtrans.transpose_pads` of the layer's config."""
    import flax.linen as nn

    import convtrans as ct

    config = ct.Conv1DTransposeConfig(
        filters=filters,
        kernel_size=kernel_size,
        strides=strides,
        padding=padding,
        output_padding=output_padding,
        dilation_rate=dilation_rate,
    )
    init = {} if kernel_initializer is None else {"kernel_init": kernel_initializer}
    return nn.ConvTranspose(
        filters,
        (kernel_size,),
        strides=(strides,),
        padding=[tuple(ct.transpose_pads(config))],
        kernel_dilation=(dilation_rate,),
        transpose_kernel=True,
        **init,
    )


@dataclasses.dataclass(frozen=True)
class JaxVariant:
    """A JAX implementation: the generators built with ``upsample_layer``, every program traced
    and compiled inside ``context()``."""

    name: str
    upsample_layer: Callable[..., Any]
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext


def _autotuning() -> contextlib.AbstractContextManager:
    import convtrans

    return convtrans.autotune()


# The first is the one the ratios are of; "flax" and "torch" are the peers.
JAX_VARIANTS = [
    JaxVariant("convtrans", convtrans_conv_transpose),
    JaxVariant("convtrans autotuned", convtrans_conv_transpose, _autotuning),
    JaxVariant("flax", flax_conv_transpose),
]
BASE = "convtrans"
PEERS = ["flax", "torch"]


def _inputs(model, batch: int, frames: int, seed: int):
    """Log-mel frames ``(batch, frames, 80)`` of procedural speech, and other clips' audio as the
    training target ``(batch, frames * hop, 1)`` (``hop``: the product of ``model``'s strides)."""
    import numpy as np

    from examples.audio_upsampling.data import procedural_clip
    from examples.vocoder import mel as mel_lib

    hop = math.prod(getattr(model, "upsample_rates", None) or model.ratios)
    clips = [procedural_clip(seed, i, frames * max(hop, mel_lib.HOP), mel_lib.RATE) for i in range(2 * batch)]
    mel = np.stack([mel_lib.log_mel(c[: frames * mel_lib.HOP]) for c in clips[:batch]]).astype(np.float32)
    target = np.stack([c[: frames * hop] for c in clips[batch:]])
    return mel, target[..., None].astype(np.float32)


def _jax_programs(model, variant: JaxVariant, params, mel, target, mel1):
    """The compiled forward, training gradient and batch-1 forward of ``model``."""
    import jax
    import jax.numpy as jnp

    def forward(params, mel):
        return model.apply({"params": params}, mel)

    def loss(params, mel, target):
        return jnp.mean(jnp.abs(forward(params, mel) - target))

    gradient = jax.value_and_grad(loss)
    with variant.context():
        compiled = {
            "forward": jax.jit(forward).lower(params, mel).compile(),
            "forward+backward": jax.jit(gradient).lower(params, mel, target).compile(),
            "batch-1 inference": jax.jit(forward).lower(params, mel1).compile(),
        }
    calls = {
        "forward": lambda: compiled["forward"](params, mel),
        "forward+backward": lambda: compiled["forward+backward"](params, mel, target),
        "batch-1 inference": lambda: compiled["batch-1 inference"](params, mel1),
    }
    programs = {"forward": (forward, (params, mel)), "forward+backward": (gradient, (params, mel, target))}
    return calls, programs


def compile_seconds(variant: JaxVariant, fn: Callable, args: tuple, repeats: int) -> list[float]:
    """Seconds of ``jax.jit(fn).lower(*args).compile()`` inside the variant's context, each for a
    fresh function (so that no cache of jax's holds its trace, lowering or executable)."""
    import jax

    seconds = []
    for _ in range(repeats):

        def fresh(*a):
            return fn(*a)

        start = time.perf_counter()
        with variant.context():
            jax.jit(fresh).lower(*args).compile()
        seconds.append(time.perf_counter() - start)
    return seconds


def _torch_programs(generator, mel, target, mel1, device: str):
    import numpy as np
    import torch

    def to_torch(x):  # (batch, steps, channels) -> (batch, channels, steps)
        return torch.from_numpy(np.ascontiguousarray(np.transpose(np.asarray(x), (0, 2, 1)))).to(device)

    generator = generator.to(device)
    mel_t, target_t, mel1_t = to_torch(mel), to_torch(target), to_torch(mel1)

    def forward(mel):
        with torch.inference_mode():
            return generator(mel)

    def gradient():
        generator.zero_grad(set_to_none=True)
        loss = torch.mean(torch.abs(generator(mel_t) - target_t))
        loss.backward()
        return loss

    return {
        "forward": lambda: forward(mel_t),
        "forward+backward": gradient,
        "batch-1 inference": lambda: forward(mel1_t),
    }


def _output(result):
    """An implementation's output as NumPy ``(batch, steps, channels)``."""
    import numpy as np

    if hasattr(result, "detach"):
        return result.detach().cpu().numpy().transpose(0, 2, 1)
    return np.asarray(result)


def _loss(result) -> float:
    return float(result.detach().cpu()) if hasattr(result, "detach") else float(result[0])


@dataclasses.dataclass
class ModelResult:
    model: str
    parameters: int
    inputs: dict[str, str]  # mode -> "B2 x 32 frames"
    errors: dict[str, float]  # implementation -> max |output - convtrans's| / its peak (forward, training loss)
    samples: dict[str, dict[str, list[float]]]  # mode -> implementation -> ms per call in each round
    compile_s: dict[str, dict[str, list[float]]]  # implementation -> program -> seconds of each fresh compile


def measure_model(
    spec: ModelSpec,
    repeats: int,
    target_s: float,
    compile_repeats: int,
    variants: list[JaxVariant] | None = None,
    tolerance: float | None = None,
) -> ModelResult:
    """Builds ``spec``'s generator in every implementation from the same weights, checks that
    their outputs and training losses agree, and times each mode interleaved.

    Raises:
      AssertionError: if an implementation's output or loss differs from convtrans's by more than
        ``tolerance`` of its peak (default: 1e-4 on CPU, 2e-2 on GPUs, whose float32 convolutions
        round their inputs to TF32 in both jax and torch).
    """
    import jax

    from benchmarks.run import _block, time_interleaved, torch_device
    from examples.vocoder.stream import random_variables

    variants = variants or JAX_VARIANTS
    device = torch_device()
    tolerance = tolerance if tolerance is not None else (1e-4 if device == "cpu" else 2e-2)
    models = {v.name: flax_model(spec, v.upsample_layer) for v in variants}
    mel, target = _inputs(models[variants[0].name], spec.batch, spec.frames, seed=0)
    mel1, _ = _inputs(models[variants[0].name], 1, spec.inference_frames, seed=1)
    params = random_variables(models[variants[0].name], jax.numpy.asarray(mel), 0, INIT_STD[spec.kind])["params"]
    calls, programs = {}, {}
    for variant in variants:
        shapes = jax.eval_shape(models[variant.name].init, jax.random.key(0), mel[:, :8])["params"]
        if jax.tree.structure(shapes) != jax.tree.structure(params):
            raise AssertionError(f"{spec.name} on {variant.name} has parameters named unlike convtrans's")
        calls[variant.name], programs[variant.name] = _jax_programs(
            models[variant.name], variant, params, mel, target, mel1
        )
    calls["torch"] = _torch_programs(torch_model(spec, models[variants[0].name], params), mel, target, mel1, device)

    errors = {}
    outputs = {name: _output(_block(c["forward"]())) for name, c in calls.items()}
    losses = {name: _loss(_block(c["forward+backward"]())) for name, c in calls.items()}
    reference, loss = outputs[BASE], losses[BASE]
    peak = float(abs(reference).max())
    for name in calls:
        error = max(float(abs(outputs[name] - reference).max()) / peak, abs(losses[name] - loss) / abs(loss))
        if not error <= tolerance:
            raise AssertionError(f"{spec.name} on {name} differs from convtrans by {error:.1e} of the peak")
        errors[name] = error

    samples = {}
    for mode in MODES:
        samples[mode] = time_interleaved({name: c[mode] for name, c in calls.items()}, repeats, target_s)
        row = ", ".join(f"{n} {statistics.median(v):.1f} ms" for n, v in samples[mode].items())
        print(f"  {spec.name}, {mode}: {row}", flush=True)
    compile_s = {}
    if compile_repeats:
        for variant in variants:
            compile_s[variant.name] = {
                program: compile_seconds(variant, *programs[variant.name][program], compile_repeats)
                for program in PROGRAMS
            }
            print(f"  {spec.name}, compile on {variant.name}: {compile_s[variant.name]}", flush=True)
    inputs = {
        "forward": f"B{spec.batch} x {spec.frames} frames",
        "forward+backward": f"B{spec.batch} x {spec.frames} frames",
        "batch-1 inference": f"B1 x {spec.inference_frames} frames",
    }
    return ModelResult(
        model=spec.name,
        parameters=int(sum(leaf.size for leaf in jax.tree.leaves(params))),
        inputs=inputs,
        errors=errors,
        samples=samples,
        compile_s=compile_s,
    )


# --- one setting: a child process ----------------------------------------------------------------


@dataclasses.dataclass
class SettingResult:
    setting: str
    how: str
    busy_threads: dict[str, int | None]  # "jax", "torch": threads busy in a 2048^3 float32 GEMM
    environment: dict[str, str]  # versions, device, CPUs
    models: list[ModelResult]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> SettingResult:
        fields = json.loads(text)
        return cls(**{**fields, "models": [ModelResult(**m) for m in fields["models"]]})


def _gemm_threads() -> dict[str, int | None]:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    if jax.default_backend() != "cpu":
        return {}
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    dot, a_jax, a_torch = jax.jit(jnp.dot), jnp.asarray(a), torch.from_numpy(a)
    return {
        "jax": busy_threads(lambda: dot(a_jax, a_jax).block_until_ready()),
        "torch": busy_threads(lambda: torch.matmul(a_torch, a_torch)),
    }


def run_setting(
    setting: Setting, quick: bool, compile_repeats: int, specs: list[ModelSpec] | None = None
) -> SettingResult:
    """Every model under ``setting`` (already entered with :func:`enter_setting`)."""
    import platform

    import jax
    import torch

    specs = specs or MODELS
    if quick:
        specs = [dataclasses.replace(spec, **QUICK_SIZES) for spec in specs]
    print(f"{setting.name}:", flush=True)
    busy = _gemm_threads()
    print(f"  threads busy in a 2048^3 GEMM: {busy}", flush=True)
    environment = {
        "jax": jax.__version__,
        "torch": torch.__version__,
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "torch threads": str(torch.get_num_threads()),
        "cpus": str(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else "",
        "processor": platform.processor() or platform.machine(),
    }
    results = [measure_model(spec, 3 if quick else 5, 0.002 if quick else 0.005, compile_repeats) for spec in specs]
    return SettingResult(setting.name, setting.how, busy, environment, results)


# --- the parent: one child per setting -----------------------------------------------------------


@dataclasses.dataclass
class ModelsRun:
    date: str
    quick: bool
    compile_repeats: int
    settings: list[SettingResult]


def child_environment() -> dict[str, str]:
    """This process's environment for a child: this checkout first on the path, no GPU memory
    preallocated (the parent may hold a GPU already), and no simulated host devices
    (``--xla_force_host_platform_device_count``, with which XLA:CPU's pool outgrows the affinity:
    seven threads busy in a GEMM with eight devices and one CPU at start-up, measured)."""
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
    env["PYTHONPATH"] = os.pathsep.join(p for p in [REPO, env.get("PYTHONPATH", "")] if p)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    env["XLA_FLAGS"] = " ".join(flags)
    return env


def measure_models(quick: bool, settings: list[str] | None = None) -> ModelsRun:
    """Runs one child process per thread setting (the CPU settings, or the GPU one where jax's
    default backend is a GPU) and collects their measurements."""
    import jax

    backend = jax.default_backend()
    names = settings or (GPU_SETTINGS if backend == "gpu" else CPU_SETTINGS)
    compile_repeats = 1 if quick else 3
    env = child_environment()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        # Autotuning starts from an empty cache: the plans are timed on this machine, in this run.
        env["CONVTRANS_CACHE_DIR"] = os.path.join(tmp, "plans")
        for name in names:
            out = os.path.join(tmp, "setting.json")
            command = [sys.executable, "-m", "benchmarks.models", "--child", name, "--out", out]
            command += ["--quick"] * quick
            if name == COMPILE_SETTING.get(backend, names[0]):
                command += ["--compile-repeats", str(compile_repeats)]
            subprocess.run(command, check=True, cwd=REPO, env=env)
            with open(out) as f:
                results.append(SettingResult.from_json(f.read()))
    return ModelsRun(datetime.date.today().isoformat(), quick, compile_repeats, results)


# --- the document's section ----------------------------------------------------------------------

METHOD = (
    "The generators of examples/vocoder (HiFi-GAN V1, 13.9M parameters; MelGAN, ngf 32) in three "
    "implementations with the same weights: `convtrans` as examples/vocoder builds them; `flax`, "
    "the same flax models with every `convtrans.Conv1DTranspose` replaced by "
    "`flax.linen.ConvTranspose` (`transpose_kernel=True`, so its kernel is the Keras layout, and "
    "the pads of `convtrans.transpose_pads`; `upsample_layer=benchmarks.models.flax_conv_transpose`); "
    "and `torch`, the original PyTorch generators (jik876/hifi-gan, descriptinc/melgan-neurips; "
    "benchmarks/torch_hifigan.py and torch_melgan.py) loaded with the same weights by "
    "`convtrans.interop.to_torch_state_dict`. Weights are drawn as both papers' code initializes "
    "them (kernels from N(0, 0.01) and N(0, 0.02)); the input is log-mel frames of procedural "
    "speech. Before anything is timed, each implementation's output and training loss are checked "
    "equal to convtrans's (within 1e-4 of the output's peak on CPU). forward: the generator on a "
    "batch of short segments (the input column, in mel frames of 256 samples; both papers' code "
    "trains on 32-frame segments); "
    "forward+backward: the gradients of a training step, the mean absolute difference from "
    "target audio differentiated with respect to every parameter (`jax.value_and_grad`; torch: "
    "`zero_grad(set_to_none=True)`, `loss.backward()`); batch-1 inference: the forward on one "
    "longer input (torch under `inference_mode`). The JAX programs are compiled ahead of time "
    "(`jax.jit(f).lower(*args).compile()`); compile time is that call, trace and lowering "
    "included, for a fresh function each time so that no cache of jax's holds it. Timing as in "
    "the layer tables: interleaved rounds, each sample after its own warm-up, the median quoted "
    "with the range of the per-round ratio against torch. `convtrans autotuned` is the convtrans "
    "model compiled with `convtrans.autotune()` on, from an empty plan cache: each child times "
    "its layers' candidate plans on the machine once, before the programs are timed (tuning time "
    "is not in the compile times; they are compiles with the plans stored).\n\n"
    "Threads: XLA:CPU sizes its thread pool once, when the process creates its CPU client, to the "
    "number of CPUs the process may run on, and in jax 0.10.2 no `XLA_FLAGS` option sets it "
    "(`--xla_cpu_multi_thread_eigen=false` still left two threads busy in a matrix product and in "
    "a convolution, counted by per-thread CPU time). So each setting runs in a child process of its "
    "own (`python -m benchmarks.models --child SETTING`) that applies it before importing jax or "
    "torch: for N threads the process's CPU affinity is restricted to N CPUs while jax creates its "
    "client and runs a first computation, then every thread of the process gets all CPUs back, "
    "and torch gets `torch.set_num_threads(N)`; pinned to one core, the whole process stays on "
    "one CPU (`os.sched_setaffinity`), Python, XLA's pool and torch's (one thread) sharing it. "
    "The children run without `--xla_force_host_platform_device_count`: with simulated host "
    "devices XLA:CPU's pool outgrows the affinity it started with. "
    "Each table's heading gives the check: how many threads of jax and of torch did at least a "
    "tenth of the CPU work of a 2048x2048 float32 matrix product in that child."
)


def _ours(names: list[str]) -> list[str]:
    """The implementations the ratios are of: every JAX variant but flax."""
    return [n for n in names if n not in PEERS]


def _ratio_header(ours: list[str], peers: list[str]) -> list[str]:
    return [f"{o} x {p}" for o in ours for p in peers]


def _setting_table(result: SettingResult) -> list[str]:
    from benchmarks.run import _md_table, fmt, medians, round_ratios

    names = list(result.models[0].samples[MODES[0]])
    ours = _ours(names)
    busy = ", ".join(f"{lib} {n}" for lib, n in result.busy_threads.items() if n is not None)
    lines = [
        f"### {result.setting}: median ms (speed-up = peer ms / convtrans ms)",
        "",
        f"Setting: {result.how}." + (f" Threads busy in a 2048^3 GEMM in this child: {busy}." if busy else ""),
        "",
    ]
    header = ["model", "mode", "input"] + names + _ratio_header(ours, PEERS) + [f"{BASE} x torch per round"]
    rows = []
    for model in result.models:
        for mode in MODES:
            ms = medians(model.samples[mode])
            per_round = round_ratios(model.samples[mode], "torch", BASE)
            rows.append(
                [model.model, mode, model.inputs[mode]]
                + [fmt(ms[n]) for n in names]
                + [f"{ms[p] / ms[o]:.2f}" for o in ours for p in PEERS]
                + [f"{min(per_round):.2f}-{max(per_round):.2f}"]
            )
    return lines + _md_table(header, rows)


def _compile_table(result: SettingResult, repeats: int) -> list[str]:
    from benchmarks.run import _md_table

    measured = [m for m in result.models if m.compile_s]
    if not measured:
        return []
    names = list(measured[0].compile_s)
    ours = [n for n in names if n != "flax"]
    lines = [
        f"### Compile times ({result.setting}): seconds of `jax.jit(f).lower(...).compile()`, "
        + (f"median of {repeats} fresh compiles" if repeats > 1 else "one fresh compile each"),
        "",
    ]
    header = ["model", "program"] + [f"{n} s" for n in names] + [f"{o} / flax" for o in ours]
    rows = []
    for model in measured:
        for program in PROGRAMS:
            s = {n: statistics.median(model.compile_s[n][program]) for n in names}
            rows.append(
                [model.model, program] + [f"{s[n]:.2f}" for n in names] + [f"{s[o] / s['flax']:.2f}" for o in ours]
            )
    return lines + _md_table(header, rows)


def render_models(run: ModelsRun) -> list[str]:
    """The body of the section :data:`MODELS_HEADING`, from one run's measurements."""
    first = run.settings[0]
    env = first.environment
    errors = max(e for s in run.settings for m in s.models for e in m.errors.values())
    lines = [
        METHOD,
        "",
        f"Measured {run.date} on "
        + (f"{env['processor']}, CPUs {env['cpus']}" if env["backend"] == "cpu" else env["device"])
        + f", jax {env['jax']}, torch {env['torch']}; {'quick' if run.quick else 'full'} run. "
        + ", ".join(f"{m.model}: {m.parameters / 1e6:.1f}M parameters" for m in first.models)
        + f". Largest difference from convtrans's output or loss: {errors:.1e} of its peak.",
        "",
    ]
    for result in run.settings:
        lines += _setting_table(result) + [""]
    for result in run.settings:
        compiled = _compile_table(result, run.compile_repeats)
        lines += compiled + ([""] if compiled else [])
    return lines[:-1]


# --- the GPU plan's autotuning targets (python -m convtrans.tune MODULE:FACTORY) ------------------


def _tune_target(spec: ModelSpec):
    import jax
    import jax.numpy as jnp

    from examples.vocoder.stream import random_variables

    model = flax_model(spec, convtrans_conv_transpose)
    mel, target = (jnp.asarray(a) for a in _inputs(model, spec.batch, spec.frames, seed=0))
    params = random_variables(model, mel, 0, INIT_STD[spec.kind])["params"]

    def loss(params, mel, target):
        return jnp.mean(jnp.abs(model.apply({"params": params}, mel) - target))

    return jax.value_and_grad(loss), (params, mel, target)


def hifigan_v1_tune_target():
    """``(fn, args)``: HiFi-GAN V1's training gradient at the benchmark's size."""
    return _tune_target(MODELS[0])


def melgan_tune_target():
    """``(fn, args)``: MelGAN's training gradient at the benchmark's size."""
    return _tune_target(MODELS[1])


# --- command line --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short inputs, few samples (a smoke run)")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), help="default: every CPU setting, or GPU")
    parser.add_argument("--child", choices=list(SETTINGS), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--compile-repeats", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        setting = SETTINGS[args.child]
        enter_setting(setting)
        result = run_setting(setting, args.quick, args.compile_repeats)
        with open(args.out, "w") as f:
            f.write(result.to_json())
        return
    print("\n".join(render_models(measure_models(args.quick, args.settings))))


if __name__ == "__main__":
    main()

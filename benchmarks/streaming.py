"""The streaming benchmark: HiFi-GAN V1 at batch 1 on CPU, streamed frame by frame by
:class:`convtrans.streaming.Streamer`, against the same model on the whole signal (convtrans under
jit, and jik876's torch generator with the same weights).

The real-time factor is compute seconds over audio seconds (below 1: faster than real time). A
stream's time is the sum of its steps, each chunk's output made ready before the next chunk goes
in, as a player would; every number is the median of interleaved rounds."""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from convtrans.streaming import Streamer
from examples.audio_upsampling.data import procedural_clip
from examples.vocoder import mel as mel_lib
from examples.vocoder.models import HiFiGAN
from examples.vocoder.stream import stream

CHUNK_FRAMES = (1, 8)


@dataclasses.dataclass(frozen=True)
class StreamRow:
    mode: str
    rtf: float  # median seconds per second of audio
    rtfs: list[float]  # every round's
    error: float  # max |output - convtrans whole signal| / its peak
    latency_ms: float


def measure_streaming(
    seconds: float, rounds: int, model: HiFiGAN | None = None, variables=None
) -> tuple[dict, list[StreamRow]]:
    """Times each mode (torch and convtrans on the whole signal, convtrans streams of
    :data:`CHUNK_FRAMES`) on ``seconds`` of audio, ``rounds`` interleaved rounds, with ``model``
    and ``variables`` (defaults: a ``HiFiGAN()``, ``model.init``).

    Raises:
      AssertionError: if the torch generator or a stream differs from convtrans's whole-signal
        output by more than float rounding (1e-5 of the output's peak; on a GPU 2e-2, as both
        jax's and torch's float32 convolutions round their inputs to TF32 there).
    """
    import torch

    from benchmarks.run import _block, torch_device
    from benchmarks.torch_hifigan import from_flax

    torch.set_num_threads(2)
    model = model if model is not None else HiFiGAN()
    frames = max(8, int(seconds * mel_lib.RATE / mel_lib.HOP) // 8 * 8)
    audio = procedural_clip(0, 0, frames * mel_lib.HOP, mel_lib.RATE)
    mel = jnp.asarray(mel_lib.log_mel(audio))[None]
    if variables is None:
        variables = jax.jit(model.init)(jax.random.key(0), mel[:, :8])
    whole = jax.jit(model.apply)
    reference = np.asarray(whole(variables, mel))
    peak = float(np.abs(reference).max())
    duration = reference.shape[1] / mel_lib.RATE
    streamer = Streamer(model, variables, batch_size=1)
    generator = from_flax(model, variables["params"]).to(torch_device())
    mel_torch = torch.from_numpy(np.ascontiguousarray(np.transpose(np.asarray(mel), (0, 2, 1)))).to(torch_device())

    def run_torch():
        with torch.inference_mode():
            return _block(generator(mel_torch))

    def run_whole():
        return whole(variables, mel).block_until_ready()

    errors = {
        "torch whole signal": float(np.abs(run_torch().cpu().numpy().transpose(0, 2, 1) - reference).max()) / peak,
        "convtrans whole signal": 0.0,
    }
    latency = 1000 * streamer.latency / mel_lib.RATE
    for frames_per_chunk in CHUNK_FRAMES:
        stream(streamer, mel[:, : 2 * frames_per_chunk], frames_per_chunk)  # compile
        streamed, _ = stream(streamer, mel, frames_per_chunk)
        errors[f"convtrans stream, {frames_per_chunk}-frame chunks"] = (
            float(np.abs(np.asarray(streamed)[:, streamer.latency :] - reference).max()) / peak
        )
    tolerance = 1e-5 if jax.default_backend() == "cpu" else 2e-2
    for mode, error in errors.items():
        if not error <= tolerance:
            raise AssertionError(f"{mode} differs from convtrans's whole-signal output by {error:.1e} of its peak")
    run_whole(), run_torch()
    timings = {mode: [] for mode in errors}
    for _ in range(rounds):
        timings["convtrans whole signal"].append(_timed(run_whole) / duration)
        timings["torch whole signal"].append(_timed(run_torch) / duration)
        for frames_per_chunk in CHUNK_FRAMES:
            _, busy = stream(streamer, mel, frames_per_chunk)
            timings[f"convtrans stream, {frames_per_chunk}-frame chunks"].append(busy / duration)
    rows = [
        StreamRow(mode, statistics.median(values), values, errors[mode], latency if "stream" in mode else 0.0)
        for mode, values in timings.items()
    ]
    setup = dict(
        date=datetime.date.today().isoformat(),
        cpus=os.cpu_count() or 0,
        processor=platform.processor() or platform.machine(),
        jax_version=jax.__version__,
        torch_version=torch.__version__,
        frames=frames,
        seconds=duration,
        parameters=sum(leaf.size for leaf in jax.tree.leaves(variables)),
        rounds=rounds,
    )
    return setup, rows


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


SMALL_CHUNKS = (
    "Where XLA bounds the 1-frame stream: a 1-frame step runs each convolution of the first scale "
    "on 8 new samples (a matrix product of 8 rows plus the kernel's context), where the whole "
    "signal gives it thousands of rows. XLA:CPU's products are several times less efficient at "
    "that size whichever way the step is written, which is the gap between the 1-frame stream and "
    "the whole signal; 8-frame chunks (64 rows) close most of it. The latency is the model's "
    "lookahead either way, so chunks of a few frames buy back the throughput without adding any."
)


def render_streaming(setup: dict, rows: list[StreamRow]) -> list[str]:
    lines = [
        f"HiFi-GAN V1 (jik876's generator, {setup['parameters'] / 1e6:.1f}M parameters, random weights), "
        f"batch 1, {setup['frames']} mel frames = {setup['seconds']:.2f} s of 22050 Hz audio. "
        "Error: max |output - convtrans whole signal| / peak of the output.",
        "",
        f"Measured {setup['date']} on {setup['cpus']} CPUs ({setup['processor']}), jax {setup['jax_version']}, "
        f"torch {setup['torch_version']} with 2 threads; median of {setup['rounds']} interleaved rounds.",
        "",
        "| mode | real-time factor (median) | rounds | latency | error |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        latency = f"{row.latency_ms:.0f} ms" if "stream" in row.mode else "whole signal"
        lines.append(
            f"| {row.mode} | {row.rtf:.3f} | {min(row.rtfs):.3f}-{max(row.rtfs):.3f} | {latency} | {row.error:.1e} |"
        )
    return lines + ["", SMALL_CHUNKS]

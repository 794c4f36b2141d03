"""Stream a vocoder frame by frame from a mel spectrogram, check it against the whole-signal
output, and report the real-time factor.

    python -m examples.vocoder.stream                      # HiFi-GAN V1 and MelGAN, full size
    python -m examples.vocoder.stream --model melgan --chunks 1 4 --seconds 1

Both generators are built from convtrans's parts (examples/vocoder/models.py) and streamed by
:class:`convtrans.streaming.Streamer` unchanged. The weights are random (no checkpoint ships with
convtrans): what this shows is that the stream is the whole-signal output, sample for sample, and
how fast it runs. The real-time factor is compute time over audio duration at batch 1 on this
machine's CPU; below 1 is faster than real time.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from convtrans.streaming import Streamer
from examples.audio_upsampling.data import procedural_clip
from examples.vocoder import mel as mel_lib
from examples.vocoder.models import HiFiGAN, MelGAN


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["hifigan", "melgan", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=3.0, help="audio to synthesize")
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 8], help="mel frames per chunk")
    parser.add_argument("--hifigan-channels", type=int, default=512, help="upsample_initial_channel (v1: 512)")
    parser.add_argument("--melgan-ngf", type=int, default=32, help="ngf (descriptinc: 32)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _seconds(fn, *args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def stream(streamer: Streamer, mel: jax.Array, frames: int) -> tuple[jax.Array, float]:
    """The whole stream of ``mel`` in chunks of ``frames``, and the seconds the steps took (each
    chunk's output made ready before the next chunk is fed, as a player would)."""
    state, pieces, busy = streamer.init(), [], 0.0
    for start in range(0, mel.shape[1], frames):
        begin = time.perf_counter()
        state, audio = streamer.step(state, mel[:, start : start + frames])
        audio.block_until_ready()
        busy += time.perf_counter() - begin
        pieces.append(audio)
    pieces.append(streamer.finish(state))
    return jnp.concatenate(pieces, axis=1), busy


def random_variables(model, mel: jax.Array, seed: int, std: float) -> dict:
    """Weights as both papers' code initializes them for training: every kernel from N(0, std)
    (HiFi-GAN 0.01, MelGAN 0.02), biases zero. Drawn by NumPy into ``model.init``'s shapes, which
    is much faster to set up than compiling ``model.init`` itself."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(seed), mel[:, :8])
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: jnp.asarray(
            rng.normal(0.0, std, leaf.shape) if path[-1].key == "kernel" else np.zeros(leaf.shape), leaf.dtype
        ),
        shapes,
    )


STD = {"hifigan": 0.01, "melgan": 0.02}


def run(name: str, model, mel: jax.Array, chunk_sizes, seed: int) -> list[dict]:
    variables = random_variables(model, mel, seed, STD[name])
    whole = jax.jit(model.apply)
    reference = whole(variables, mel)
    duration = reference.shape[1] / mel_lib.RATE
    whole_seconds = min(_seconds(whole, variables, mel) for _ in range(3))
    streamer = Streamer(model, variables, batch_size=1)
    rows = [dict(model=name, mode="whole signal", rtf=whole_seconds / duration, error=0.0, latency_ms=None)]
    for frames in chunk_sizes:
        stream(streamer, mel[:, : 2 * frames], frames)  # compile the step and finish for this size
        audio, busy = stream(streamer, mel, frames)
        # Relative to the output's peak: random weights make some outputs tiny.
        error = float(jnp.max(jnp.abs(audio[:, streamer.latency :] - reference)) / jnp.max(jnp.abs(reference)))
        if audio.shape[1] != streamer.latency + reference.shape[1] or not error <= 1e-5:
            raise AssertionError(f"{name}: the {frames}-frame stream differs from the whole signal by {error}")
        rows.append(
            dict(
                model=name,
                mode=f"stream, {frames}-frame chunks",
                rtf=busy / duration,
                error=error,
                latency_ms=1000 * streamer.latency / mel_lib.RATE,
            )
        )
    return rows


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    frames = max(8, int(args.seconds * mel_lib.RATE / mel_lib.HOP))
    frames -= frames % int(np.lcm.reduce(args.chunks))
    audio = procedural_clip(args.seed, 0, frames * mel_lib.HOP, mel_lib.RATE)
    mel = jnp.asarray(mel_lib.log_mel(audio))[None]  # (1, frames, 80)
    models = {"hifigan": HiFiGAN(upsample_initial_channel=args.hifigan_channels), "melgan": MelGAN(ngf=args.melgan_ngf)}
    names = list(models) if args.model == "both" else [args.model]
    print(
        f"{frames} mel frames -> {frames * mel_lib.HOP / mel_lib.RATE:.2f} s of audio at {mel_lib.RATE} Hz, "
        f"batch 1, {jax.devices()[0].platform.upper()}, random weights"
    )
    print(f"{'model':8} {'mode':24} {'real-time factor':>17} {'max |stream - whole| / peak':>28} {'latency':>9}")
    rows = []
    for name in names:
        for row in run(name, models[name], mel, args.chunks, args.seed):
            latency = "" if row["latency_ms"] is None else f"{row['latency_ms']:.0f} ms"
            print(f"{row['model']:8} {row['mode']:24} {row['rtf']:17.3f} {row['error']:28.1e} {latency:>9}")
            rows.append(row)
    return rows


if __name__ == "__main__":
    main()

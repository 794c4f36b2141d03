"""Upsample WAV files of any length with a trained run: jit-compiled, batched, in exact chunks.

    python -m examples.audio_upsampling.infer --checkpoint runs/demo --input in.wav --output out.wav

Chunking is exact, not approximate: every layer of the model is a "same"-padded convolution, so
output sample ``t`` depends only on the input within ``h = receptive_halo(model)`` samples of
``t / factor``. The input (``n`` samples) is cut into kept regions ``[s, s + chunk)``; each is
computed from the window ``[w, w + chunk + 2h)`` with ``w = clip(s - h, 0, n - chunk - 2h)`` and
cropped. A window either has ``h`` samples of real context on a side or ends exactly where the file
does (where whole-file processing sees the same zero padding), so the stitched result equals
applying the model to the whole file (up to float rounding of differently-sized convolutions). All
windows have one shape: one compilation, batched ``batch_size`` windows per call.

Inference only reads the run folder (it never creates or changes anything there, nor writes its
output into it), checks the output path before the model is loaded, never overwrites its input
file, and replaces an existing output only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import pathlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from examples.audio_upsampling import checkpoints, data, guards
from examples.audio_upsampling.model import Upsampler, receptive_halo


def load(run_dir: str | pathlib.Path) -> tuple[Upsampler, Any, int]:
    """``(model, params, rate)`` of the latest checkpoint of a training run folder (which it only reads)."""
    settings = _check_run(run_dir)
    rate = int(settings.pop("rate"))
    model = Upsampler(**settings)
    # Restore needs only the tree's structure and shapes: tracing the initializer abstractly skips
    # running it op by op (seconds on a CPU).
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 64)))["params"]
    template = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    with checkpoints.opened(run_dir, create=False) as mngr:
        step = mngr.latest_step()
        if step is None:
            raise ValueError(f"checkpoint={str(run_dir)!r}: no checkpoint in {run_dir}/checkpoints.")
        params, _ = checkpoints.restore(mngr, step, template)
    params = nn.unbox(params)
    if not all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(params)):
        raise ValueError(f"{run_dir}/checkpoints/{step}: the parameters hold NaN or infinite values.")
    return model, params, rate


def _check_run(run_dir: str | pathlib.Path) -> dict[str, Any]:
    """The validated model settings of a run folder that has a checkpoint (reading only)."""
    guards.refuse("checkpoint", str(run_dir), guards.path_problem(str(run_dir)))
    settings = checkpoints.read_model_settings(run_dir)
    if not checkpoints.saved_steps(run_dir):
        raise ValueError(f"checkpoint={str(run_dir)!r}: no checkpoint in {run_dir}/checkpoints.")
    return settings


def _check_sizes(chunk: Any, batch_size: Any) -> None:
    guards.refuse("--chunk", chunk, guards.integer_problem(chunk, 1))
    guards.refuse("--batch-size", batch_size, guards.integer_problem(batch_size, 1))


class ChunkedUpsampler:
    """``model`` with ``params``, applied to signals of any length in exact, batched chunks.

    Args:
      model: the :class:`Upsampler`.
      params: its (unboxed) parameters.
      chunk: input samples kept per window (each window adds ``2 * receptive_halo(model)``).
      batch_size: windows per compiled call.
    """

    def __init__(self, model: Upsampler, params: Any, chunk: int = 16384, batch_size: int = 8):
        if chunk < 1 or batch_size < 1:
            raise ValueError(f"chunk and batch_size must be >= 1, got chunk={chunk}, batch_size={batch_size}.")
        self.model, self.params, self.chunk, self.batch_size = model, params, int(chunk), int(batch_size)
        self.halo = receptive_halo(model)
        self._apply = jax.jit(lambda p, x: model.apply({"params": p}, x))

    def whole(self, x: np.ndarray) -> np.ndarray:
        """The model on whole signals: ``(rows, n) -> (rows, n * factor)`` (one call, no chunks)."""
        return np.asarray(self._apply(self.params, jnp.asarray(np.atleast_2d(x), jnp.float32)))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``(n,) -> (n * factor,)`` or ``(rows, n) -> (rows, n * factor)``, chunk by chunk."""
        x = np.asarray(x, np.float32)
        rows = np.atleast_2d(x)
        n, f = rows.shape[-1], self.model.factor
        window = self.chunk + 2 * self.halo
        if n <= window:
            out = self.whole(rows)
            return out[0] if x.ndim == 1 else out
        starts = np.arange(0, n, self.chunk)
        origins = np.clip(starts - self.halo, 0, n - window)
        windows = np.stack([row[w : w + window] for row in rows for w in origins])
        outputs = []
        size = min(self.batch_size, len(windows))  # padding to a huge --batch-size would only waste memory
        for i in range(0, len(windows), size):
            group = windows[i : i + size]
            padded = np.pad(group, ((0, size - len(group)), (0, 0)))  # one shape, one compile
            outputs.append(np.asarray(self._apply(self.params, padded))[: len(group)])
        outputs = np.concatenate(outputs).reshape(len(rows), len(starts), window * f)
        out = np.empty((len(rows), n * f), np.float32)
        for j, (s, w) in enumerate(zip(starts, origins)):
            e = min(s + self.chunk, n)
            out[:, s * f : e * f] = outputs[:, j, (s - w) * f : (e - w) * f]
        return out[0] if x.ndim == 1 else out


def upsample_file(
    run_dir: str, source: str, target: str, chunk: int = 16384, batch_size: int = 8, overwrite: bool = False
) -> int:
    """Upsample the WAV ``source`` into ``target`` (16-bit PCM, channels kept); returns its rate.

    The input is first resampled (band-limited) to the model's input rate if it differs. The sizes,
    the run folder, ``target`` (see :func:`.guards.output_file`) and ``source`` are all checked
    before the model is loaded; ``overwrite`` allows replacing an existing ``target``.
    """
    _check_sizes(chunk, batch_size)
    _check_run(run_dir)
    guards.refuse("--input", source, guards.path_problem(source))
    path = guards.output_file(target, source, run_dir, overwrite)
    audio, file_rate = data.read_audio(source)
    model, params, rate = load(run_dir)
    channels = audio[:, None] if audio.ndim == 1 else audio
    low = data.resample(channels.T, file_rate, rate // model.factor)  # (channels, n)
    high = ChunkedUpsampler(model, params, chunk, batch_size)(low)
    if not np.isfinite(high).all():
        raise ValueError(f"{source}: the model's output for this file is NaN or infinite; nothing was written.")
    out = high[0] if audio.ndim == 1 else high.T
    data.write_wav(path, out, rate)
    return rate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m examples.audio_upsampling.infer",
        description="Upsample a WAV file with a trained audio upsampler (exact chunked inference).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, help="a training run folder (its --out), e.g. runs/demo")
    parser.add_argument(
        "--input",
        required=True,
        help="WAV file to upsample (any rate, mono or stereo; resampled to the model's input rate first)",
    )
    parser.add_argument(
        "--output",
        required=True,
        help="where to write the upsampled WAV (16-bit PCM); outside the run folder, "
        "and a path that exists only with --overwrite",
    )
    parser.add_argument("--chunk", type=int, default=16384, help="input samples kept per chunk (memory vs. speed)")
    parser.add_argument("--batch-size", type=int, default=8, help="chunks processed per compiled call")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --output if it exists (never the input file, never inside the run folder)",
    )
    args = parser.parse_args(argv)
    rate = upsample_file(args.checkpoint, args.input, args.output, args.chunk, args.batch_size, args.overwrite)
    print(f"wrote {args.output} at {rate} Hz")


if __name__ == "__main__":
    main()

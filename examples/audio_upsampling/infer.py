"""Upsample audio files of any length with a trained run: jit-compiled, batched, in exact chunks.

    python examples/audio_upsampling/infer.py --checkpoint runs/demo --input in.wav --output out.wav
    python examples/audio_upsampling/infer.py --checkpoint runs/demo --input songs/ a.flac --output up/

(from any working directory; ``python -m examples.audio_upsampling.infer`` from the repository
root does the same.)

Inputs: ``--input`` takes audio files (WAV, FLAC, OGG; any rate, mono or stereo) and folders,
searched recursively (:func:`.data.audio_files`). With one input file, ``--output`` is the output
WAV. With several inputs or any folder, ``--output`` is a folder (made if missing) that receives each
file under its path relative to its input folder (a file given by itself: its name), with the suffix
``.wav``; two inputs that would get one output name are refused.

Rates: every input is resampled to the model's input rate ``rate / factor`` (from the run's
``model.json``) and the output is at ``rate``. A file at a *higher* rate than the model's input is
refused unless ``--allow-downsampling``: it would first be decimated to the input rate, discarding
its content above half that rate, so the output would be a degraded copy of it (a 16 kHz file
through an 8 -> 16 kHz model loses its 4-8 kHz band, which the model then only guesses back).

Chunking is exact, not approximate: every layer of the model is a "same"-padded convolution, so
output sample ``t`` depends only on the input within ``h = receptive_halo(model)`` samples of
``t / factor``. The input (``n`` samples) is cut into kept regions ``[s, s + chunk)``; each is
computed from the window ``[w, w + chunk + 2h)`` with ``w = clip(s - h, 0, n - chunk - 2h)`` and
cropped. A window either has ``h`` samples of real context on a side or ends exactly where the file
does (where whole-file processing sees the same zero padding), so the stitched result equals
applying the model to the whole file (up to float rounding of differently-sized convolutions). All
windows have one shape and every compiled call takes the same number of them (the last call of a
file padded), so one compilation serves every file longer than a window; a shorter file runs whole,
compiled for its own length. The model is loaded once per call of the tool.

Inference only reads the run folder (it never creates or changes anything there, nor writes into
it). Every input (its header, rate and samples) and every output path is checked before the model
is loaded, so nothing is written when any check fails. It never overwrites an input file, never
writes into an input folder, and replaces an existing output only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import pathlib
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

if not __package__:  # run as a file: the repository root replaces this folder on the import path
    _HERE = pathlib.Path(__file__).resolve().parent
    sys.path[:] = [str(_HERE.parents[1])] + [p for p in sys.path if pathlib.Path(p or ".").resolve() != _HERE]

from examples.audio_upsampling import checkpoints, data, guards
from examples.audio_upsampling.model import Upsampler, receptive_halo

AUDIO_FILE = "an audio file (WAV, FLAC or OGG) or a folder of them"


def load(run_dir: str | pathlib.Path) -> tuple[Upsampler, Any, int]:
    """``(model, params, rate)`` of the latest checkpoint of a training run folder (which it only reads)."""
    settings = check_run(run_dir)
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


def check_run(run_dir: str | pathlib.Path) -> dict[str, Any]:
    """The validated model settings of a run folder that has a checkpoint (reading only)."""
    guards.refuse("checkpoint", str(run_dir), guards.path_problem(str(run_dir)))
    settings = checkpoints.read_model_settings(run_dir)
    if not checkpoints.saved_steps(run_dir):
        raise ValueError(f"checkpoint={str(run_dir)!r}: no checkpoint in {run_dir}/checkpoints.")
    return settings


def check_sizes(chunk: Any, batch_size: Any) -> None:
    guards.refuse("--chunk", chunk, guards.integer_problem(chunk, 1))
    guards.refuse("--batch-size", batch_size, guards.integer_problem(batch_size, 1))


# The smallest chunk short signals are cut into; below it, windows would be mostly halo.
SMALLEST_CHUNK = 512


def window_count(n: int, chunk: int, halo: int) -> int:
    """Windows one row of ``n`` input samples is cut into (0: it runs whole, being at most a window long)."""
    return 0 if n <= chunk + 2 * halo else -(-n // chunk)


class ChunkedUpsampler:
    """``model`` with ``params``, applied to signals of any length in exact, batched chunks.

    One instance compiles once per window shape: every call on a signal longer than a window runs
    ``batch_size`` windows of ``chunk + 2 * halo`` samples (the last call padded), so all such signals,
    of any length and any number of rows, share one compilation. A shorter signal is cut into the
    largest of the smaller chunks ``chunk / 2, chunk / 4, ...`` (down to :data:`SMALLEST_CHUNK`)
    whose window it exceeds, so a folder of short recordings of many lengths costs at most one
    compilation per size of that ladder; only a signal no longer than the smallest window runs whole
    (one compilation per such length). ``traces`` counts the compilations.

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
        self.traces = 0

        def apply(p, x):
            self.traces += 1  # runs only while jax traces: once per compiled shape
            return model.apply({"params": p}, x)

        self._apply = jax.jit(apply)

    def chunk_for(self, n: int) -> int:
        """The chunk a row of ``n`` input samples is cut into (0: it runs whole)."""
        chunk = self.chunk
        while chunk >= SMALLEST_CHUNK or chunk == self.chunk:
            if window_count(n, chunk, self.halo):
                return chunk
            chunk //= 2
        return 0

    def whole(self, x: np.ndarray) -> np.ndarray:
        """The model on whole signals: ``(rows, n) -> (rows, n * factor)`` (one call, no chunks)."""
        return np.asarray(self._apply(self.params, jnp.asarray(np.atleast_2d(x), jnp.float32)))

    def __call__(self, x: np.ndarray, on_batch: Callable[[int, int], None] | None = None) -> np.ndarray:
        """``(n,) -> (n * factor,)`` or ``(rows, n) -> (rows, n * factor)``, chunk by chunk.

        ``on_batch(done, total)`` is called after each compiled call with the windows done so far.
        """
        x = np.asarray(x, np.float32)
        rows = np.atleast_2d(x)
        n, f = rows.shape[-1], self.model.factor
        chunk = self.chunk_for(n)
        window = chunk + 2 * self.halo
        if not chunk:
            out = self.whole(rows)
            if on_batch:
                on_batch(1, 1)
            return out[0] if x.ndim == 1 else out
        starts = np.arange(0, n, chunk)
        origins = np.clip(starts - self.halo, 0, n - window)
        windows = np.stack([row[w : w + window] for row in rows for w in origins])
        outputs = []
        size = self.batch_size
        for i in range(0, len(windows), size):
            group = windows[i : i + size]
            padded = np.pad(group, ((0, size - len(group)), (0, 0)))  # one shape, one compile
            outputs.append(np.asarray(self._apply(self.params, padded))[: len(group)])
            if on_batch:
                on_batch(i + len(group), len(windows))
        outputs = np.concatenate(outputs).reshape(len(rows), len(starts), window * f)
        out = np.empty((len(rows), n * f), np.float32)
        for j, (s, w) in enumerate(zip(starts, origins)):
            e = min(s + chunk, n)
            out[:, s * f : e * f] = outputs[:, j, (s - w) * f : (e - w) * f]
        return out[0] if x.ndim == 1 else out


def fitted_batch_size(lengths: Iterable[tuple[int, int]], chunk: int, halo: int, batch_size: int) -> int:
    """``batch_size``, lowered to the most windows any one signal needs (``lengths``: ``(rows, n)`` each).

    Every compiled call runs ``batch_size`` windows; when no file needs that many, the padding would
    only cost time and memory.
    """
    most = max((rows * window_count(n, chunk, halo) for rows, n in lengths), default=0)
    return max(1, min(batch_size, most))


class FileProgress:
    """Progress over files: a tqdm bar on stderr, or (``bar=False``) a line per finished file.

    Without the bar, a long file also gets a line after a compiled call whenever ``every`` seconds
    have passed since its last line, so a log shows it is still working.
    """

    def __init__(self, total: int, bar: bool, desc: str, every: float = 30.0, log: Callable[[str], None] = print):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="file", desc=desc, file=sys.stderr) if bar else None
        self.every, self.log = every, log
        self.name, self.tic, self.last = "", 0.0, 0.0

    def start(self, name: str) -> None:
        self.name, self.tic = name, time.perf_counter()
        self.last = self.tic

    def step(self, done: int, total: int) -> None:
        """After a compiled call: ``done`` of the file's ``total`` windows."""
        now = time.perf_counter()
        if self.bar is not None:
            self.bar.set_postfix_str(f"{pathlib.Path(self.name).name} {done}/{total}")
        elif total > 1 and done < total and now - self.last >= self.every:
            self.last = now
            self.log(f"{self.name}: {done}/{total} windows, {now - self.tic:.0f} s")

    def finish(self, seconds: float, note: str = "") -> None:
        """The file is done: ``seconds`` of audio (``note``: appended to its line)."""
        if self.bar is not None:
            self.bar.update(1)
        else:
            self.log(f"{self.name}: {seconds:.1f} s of audio in {time.perf_counter() - self.tic:.1f} s{note}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------------------------------------
# Inputs and outputs, all checked before the model is loaded.


def expand_inputs(
    entries: Sequence[str], flag: str = "--input"
) -> tuple[list[tuple[pathlib.Path, pathlib.PurePath]], list[pathlib.Path]]:
    """``(files, folders)``: each audio file with its output name, and the folders among ``entries``.

    A folder's files (:func:`.data.audio_files`) are named by their path relative to it, a file
    given by itself by its name (both with the suffix ``.wav``). A file named twice (by itself and
    in a folder, say) counts once. ``flag`` names the entries in errors.
    """
    files: list[tuple[pathlib.Path, pathlib.PurePath]] = []
    folders, seen = [], set()
    for entry in entries:
        guards.refuse(flag, entry, guards.path_problem(entry))
        path = pathlib.Path(entry)
        if path.is_dir():
            folders.append(path)
            try:
                found = [(p, pathlib.PurePath(p.relative_to(path))) for p in data.audio_files(path)]
            except ValueError as error:  # data names the folder as data=...
                raise ValueError(str(error).replace("data=", f"{flag}=", 1)) from None
        else:
            found = [(guards.existing_file(path, AUDIO_FILE), pathlib.PurePath(path.name))]
        for source, name in found:
            if source.resolve() not in seen:
                seen.add(source.resolve())
                files.append((source, name.with_suffix(".wav")))
    return files, folders


def audio_header(path: pathlib.Path) -> tuple[int, int, int]:
    """``(rate, frames, channels)`` from the header of the audio file ``path`` (a ValueError naming it)."""
    import soundfile

    path = guards.existing_file(path, AUDIO_FILE)
    try:
        info = soundfile.info(str(path))
    except Exception as error:  # libsndfile reports anything from a bad header to an unknown format
        raise ValueError(f"{path}: not a readable audio file ({type(error).__name__}: {error}).") from error
    problem = guards.integer_problem(info.samplerate, 1, guards.MAX_RATE)
    if problem:
        raise ValueError(f"{path}: sample rate {info.samplerate!r} in the header; {problem} Hz.")
    return int(info.samplerate), int(info.frames), int(info.channels)


def downsampling_problem(path: pathlib.Path, file_rate: int, in_rate: int, out_rate: int) -> str | None:
    """Why ``path`` at ``file_rate`` Hz should not go through a model from ``in_rate`` to ``out_rate`` Hz."""
    if file_rate <= in_rate:
        return None
    return (
        f"{path}: {file_rate} Hz is above the model's input rate ({in_rate} Hz; it upsamples {in_rate} Hz "
        f"to {out_rate} Hz). The file would first be decimated to {in_rate} Hz, discarding its content "
        f"above {in_rate / 2:g} Hz, so the output would be a degraded copy of it"
    )


@dataclasses.dataclass(frozen=True)
class Job:
    """One input file and where its upsampled WAV goes, with its header's numbers."""

    source: pathlib.Path
    target: pathlib.Path
    rate: int
    frames: int
    channels: int


def plan(
    run_dir: str,
    inputs: Sequence[str],
    output: str,
    overwrite: bool = False,
    allow_downsampling: bool = False,
) -> tuple[list[Job], list[str]]:
    """Check every input and output without loading the model; ``(jobs, warnings)``.

    ``warnings``: one line per file above the model's input rate (processed only with
    ``allow_downsampling``; else the first such file is a ValueError).
    """
    settings = check_run(run_dir)
    out_rate, factor = int(settings["rate"]), int(settings["factor"])
    in_rate = out_rate // factor
    files, folders = expand_inputs(inputs)
    headers = [audio_header(source) for source, _ in files]
    too_high = [(source, rate) for (source, _), (rate, _, _) in zip(files, headers) if rate > in_rate]
    if too_high and not allow_downsampling:
        source, rate = too_high[0]
        more = f" ({len(too_high) - 1} more of the inputs are above {in_rate} Hz too)" if len(too_high) > 1 else ""
        raise ValueError(
            downsampling_problem(source, rate, in_rate, out_rate)
            + f"{more}. Nothing was written. Use a model trained for this rate, or pass "
            "--allow-downsampling to upsample such files anyway."
        )
    warnings = [
        "warning: " + downsampling_problem(source, rate, in_rate, out_rate) + " (--allow-downsampling)."
        for source, rate in too_high
    ]
    if len(inputs) == 1 and not folders:
        targets = [guards.output_file(output, files[0][0], run_dir, overwrite)]
    else:
        folder = guards.output_folder(output, run_dir, folders)
        targets = guards.output_files(folder, files, run_dir, overwrite)
    jobs = [Job(source, target, *header) for (source, _), target, header in zip(files, targets, headers)]
    return jobs, warnings


def upsample_files(
    run_dir: str,
    inputs: Sequence[str],
    output: str,
    chunk: int = 16384,
    batch_size: int = 8,
    overwrite: bool = False,
    allow_downsampling: bool = False,
    progress: bool = False,
    log: Callable[[str], None] = print,
    every: float = 30.0,
) -> list[pathlib.Path]:
    """Upsample the audio files and folders ``inputs`` (see the module docstring); returns the outputs.

    Everything is checked first (:func:`plan`, then every input's samples), then the model is
    loaded once and one :class:`ChunkedUpsampler` serves every file. Outputs are 16-bit PCM WAVs at
    the model's rate with the input's channels. ``progress``: a bar over the files; else ``log``
    gets a line per file (and every ``every`` seconds within a long one).
    """
    check_sizes(chunk, batch_size)
    jobs, warnings = plan(run_dir, inputs, output, overwrite, allow_downsampling)
    for job in jobs:  # samples (NaN, empty, absurd peaks): decoded once here so no output is left half-done
        data.read_audio(job.source)
    for line in warnings:
        print(line, file=sys.stderr)
    model, params, rate = load(run_dir)
    in_rate = rate // model.factor
    lengths = [(job.channels, _resampled_length(job.frames, job.rate, in_rate)) for job in jobs]
    size = fitted_batch_size(lengths, chunk, receptive_halo(model), batch_size)
    upsampler = ChunkedUpsampler(model, params, chunk, size)
    bar = FileProgress(len(jobs), progress, "upsample", every, log)
    try:
        for index, job in enumerate(jobs):
            bar.start(str(job.source))
            audio, file_rate = data.read_audio(job.source)
            channels = audio[:, None] if audio.ndim == 1 else audio
            low = data.resample(channels.T, file_rate, in_rate)  # (channels, n)
            high = upsampler(low, bar.step)
            if not np.isfinite(high).all():
                raise ValueError(
                    f"{job.source}: the model's output for this file is NaN or infinite; nothing was written "
                    f"for it ({index} earlier files were written)."
                )
            job.target.parent.mkdir(parents=True, exist_ok=True)
            data.write_wav(job.target, high[0] if audio.ndim == 1 else high.T, rate)
            bar.finish(len(audio) / file_rate, f" -> {job.target}")
    finally:
        bar.close()
    return [job.target for job in jobs]


def _resampled_length(frames: int, rate_in: int, rate_out: int) -> int:
    """Samples of :func:`.data.resample` of ``frames`` samples (``resample_poly``'s ``ceil(n * up / down)``)."""
    g = math.gcd(rate_in, rate_out)
    return -(-frames * (rate_out // g) // (rate_in // g))


def upsample_file(
    run_dir: str, source: str, target: str, chunk: int = 16384, batch_size: int = 8, overwrite: bool = False
) -> int:
    """Upsample the audio file ``source`` into the WAV ``target``; returns the output rate.

    :func:`upsample_files` for one file, without progress lines.
    """
    upsample_files(run_dir, [source], target, chunk, batch_size, overwrite, log=lambda line: None)
    return int(check_run(run_dir)["rate"])


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """The flags every tool that runs a trained model shares: the run, chunking and progress."""
    parser.add_argument("--checkpoint", required=True, help="a training run folder (its --out), e.g. runs/demo")
    parser.add_argument("--chunk", type=int, default=16384, help="input samples kept per chunk (memory vs. speed)")
    parser.add_argument("--batch-size", type=int, default=8, help="chunks processed per compiled call")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a progress bar over the files on stderr (--no-progress: a line per file, for logs)",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python examples/audio_upsampling/infer.py",
        description="Upsample audio files with a trained audio upsampler (exact chunked inference).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_run_flags(parser)
    parser.add_argument(
        "--input",
        required=True,
        nargs="+",
        help="audio files (WAV, FLAC, OGG; any rate up to the model's input rate, mono or stereo; resampled "
        "to the model's input rate first) and folders of them (searched recursively)",
    )
    parser.add_argument(
        "--output",
        required=True,
        help="one input file: the WAV to write (16-bit PCM); several inputs or a folder: the folder to write "
        "them into (made if missing), under their paths relative to their input folder. Outside the run "
        "folder and the input folders; a file that exists is replaced only with --overwrite",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace outputs that exist (never an input file, never inside the run folder)",
    )
    parser.add_argument(
        "--allow-downsampling",
        action="store_true",
        help="also process files above the model's input rate (decimated to it first, losing their top "
        "band: the output is a degraded copy); a warning per file",
    )
    args = parser.parse_args(argv)
    targets = upsample_files(
        args.checkpoint,
        args.input,
        args.output,
        args.chunk,
        args.batch_size,
        args.overwrite,
        args.allow_downsampling,
        args.progress,
    )
    rate = int(check_run(args.checkpoint)["rate"])
    one_file = len(args.input) == 1 and not pathlib.Path(args.input[0]).is_dir()
    where = targets[0] if one_file else f"{len(targets)} files to {args.output}"
    print(f"wrote {where} at {rate} Hz")


if __name__ == "__main__":
    main()

"""Score a trained run on audio files against scipy's ``resample_poly`` and linear interpolation.

    python examples/audio_upsampling/evaluate.py --checkpoint runs/demo --data ~/speech/test
    python examples/audio_upsampling/evaluate.py --checkpoint runs/demo --data a.wav b.flac --per-file --json s.json

(from any working directory; ``python -m examples.audio_upsampling.evaluate`` from the repository
root does the same.)

Every audio file (``--data``: files and folders, searched recursively) is a *target*: read with
:func:`.data.load_mono` at the model's rate, its leading and trailing silence removed
(:func:`.data.trim_silence` at ``--trim-db``), cut to a multiple of the factor and decimated by it
exactly as training makes its inputs (:func:`.data.decimate`). The model (exact chunked inference,
:class:`.infer.ChunkedUpsampler`), ``scipy.signal.resample_poly(x, factor, 1)`` and
:func:`.train.linear_upsample` upsample that input, and each is scored against the target with
:func:`.metrics.snr_db` and :func:`.metrics.lsd_db`. A file shorter than 1024 samples after trimming
(the LSD's frame) is skipped with a note.

Printed: a Markdown table of the means over the files, and on how many files the model's SNR is at
least ``resample_poly``'s; ``--per-file`` adds a table with a row per file; ``--json`` writes all
of it (the schema: :func:`evaluate_files`).

The run folder and the audio files are only read. The one file written is ``--json``, after every
file is scored; it is checked before the model is loaded: never inside the run folder, never an
input, and an existing file is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import signal

if not __package__:  # run as a file: the repository root replaces this folder on the import path
    _HERE = pathlib.Path(__file__).resolve().parent
    sys.path[:] = [str(_HERE.parents[1])] + [p for p in sys.path if pathlib.Path(p or ".").resolve() != _HERE]

from examples.audio_upsampling import data, guards, infer, metrics
from examples.audio_upsampling.model import Upsampler, receptive_halo
from examples.audio_upsampling.train import linear_upsample

# The longest frame of the LSD (metrics.lsd_db's n_fft): shorter targets have no spectrum to compare.
MIN_SAMPLES = 1024
METHODS = ("model", "resample_poly", "linear")


def evaluate_files(
    model: Upsampler,
    params: Any,
    rate: int,
    paths: Sequence[str | pathlib.Path],
    trim_db: float = 40.0,
    chunk: int = 16384,
    batch_size: int = 8,
    upsampler: infer.ChunkedUpsampler | None = None,
    progress: infer.FileProgress | None = None,
) -> dict[str, Any]:
    """SNR and LSD of the model and both baselines on every audio file of ``paths`` (targets at ``rate`` Hz).

    ``upsampler``: the :class:`.infer.ChunkedUpsampler` to run (default: one of ``chunk`` and
    ``batch_size``); ``progress``: told of each file. Returns (all numbers in dB; ``baselines`` maps
    ``resample_poly`` and ``linear`` to scores like the model's)::

        {"rate": ..., "factor": ..., "trim_db": ..., "evaluated": <files scored>,
         "model": {"snr_db": <mean over files>, "lsd_db": ...}, "baselines": {...},
         "model_snr_at_least_resample_poly": <files where the model's SNR >= resample_poly's>,
         "files": [{"path": ..., "file_rate": <Hz>, "seconds": <after trimming>, "model": {...},
                    "baselines": {...}}, ...],
         "skipped": [{"path": ..., "reason": ...}, ...],
         "notes": [<a line per file below the model's rate>, ...]}

    A ValueError when no file is long enough to score.
    """
    factor = model.factor
    if upsampler is None:
        upsampler = infer.ChunkedUpsampler(model, params, chunk, batch_size)
    files, skipped, notes = [], [], []
    for path in paths:
        if progress:
            progress.start(str(path))
        target = data.trim_silence(data.load_mono(path, rate), rate, trim_db)
        target = target[: len(target) // factor * factor]  # as training's clips: a multiple of the factor
        if len(target) < MIN_SAMPLES:
            reason = (
                f"{len(target)} samples at {rate} Hz after trimming silence ({trim_db:g} dB below its peak); "
                f"the LSD needs at least {MIN_SAMPLES}"
            )
            skipped.append({"path": str(path), "reason": reason})
            if progress:
                progress.finish(len(target) / rate, " (skipped: too short)")
            continue
        x = data.decimate(target, factor)
        estimates = {
            "model": upsampler(x, progress.step if progress else None),
            "resample_poly": signal.resample_poly(x, factor, 1).astype(np.float32),
            "linear": linear_upsample(x, factor)[0],
        }
        scores = {
            name: {"snr_db": metrics.snr_db(target, y), "lsd_db": metrics.lsd_db(target, y)}
            for name, y in estimates.items()
        }
        file_rate = infer.audio_header(pathlib.Path(path))[0]
        if file_rate < rate:
            notes.append(
                f"{path} is at {file_rate} Hz, below the model's {rate} Hz: its target holds nothing above "
                f"{file_rate / 2:g} Hz, so its scores say little about the band the model restores"
            )
        files.append({"path": str(path), "file_rate": file_rate, "seconds": len(target) / rate, **_grouped(scores)})
        if progress:
            progress.finish(len(target) / rate, f" (SNR {scores['model']['snr_db']:.2f} dB)")
    if not files:
        raise ValueError(
            f"none of the {len(skipped)} files is long enough to score: each has fewer than {MIN_SAMPLES} "
            f"samples at {rate} Hz after trimming silence (try a higher --trim-db)."
        )
    mean = {
        name: {key: float(np.mean([_score(f, name)[key] for f in files])) for key in ("snr_db", "lsd_db")}
        for name in METHODS
    }
    return {
        "rate": int(rate),
        "factor": int(factor),
        "trim_db": float(trim_db),
        "evaluated": len(files),
        **_grouped(mean),
        "model_snr_at_least_resample_poly": sum(
            f["model"]["snr_db"] >= f["baselines"]["resample_poly"]["snr_db"] for f in files
        ),
        "files": files,
        "skipped": skipped,
        "notes": notes,
    }


def _grouped(scores: dict[str, dict[str, float]]) -> dict[str, Any]:
    """``{"model": ..., "baselines": {"resample_poly": ..., "linear": ...}}``, as train's metrics.json."""
    return {"model": scores["model"], "baselines": {name: scores[name] for name in METHODS[1:]}}


def _score(entry: dict[str, Any], name: str) -> dict[str, float]:
    return entry["model"] if name == "model" else entry["baselines"][name]


def format_tables(result: dict[str, Any], per_file: bool = False) -> str:
    """The means (and with ``per_file`` every file) as Markdown tables, with the notes on skipped files."""
    lines = [f"skipped {s['path']}: {s['reason']}" for s in result["skipped"]]
    lines += [f"note: {note}" for note in result["notes"]]
    lines += [
        *([""] if lines else []),
        f"Files: {result['evaluated']} scored"
        + (f", {len(result['skipped'])} skipped" if result["skipped"] else "")
        + f"; targets at {result['rate']} Hz, inputs decimated by {result['factor']}, "
        f"silence trimmed at {result['trim_db']:g} dB",
        "",
        "| method | mean SNR (dB, higher is better) | mean LSD (dB, lower is better) |",
        "|---|---:|---:|",
    ]
    names = {"model": "convtrans upsampler", "resample_poly": "baseline: resample_poly", "linear": "baseline: linear"}
    for n in METHODS:
        lines.append(f"| {names[n]} | {_score(result, n)['snr_db']:.2f} | {_score(result, n)['lsd_db']:.2f} |")
    lines += [
        "",
        f"The model's SNR is at least resample_poly's on {result['model_snr_at_least_resample_poly']} of "
        f"{result['evaluated']} files.",
    ]
    if per_file:
        lines += [
            "",
            "| file | seconds | SNR model | SNR resample_poly | SNR linear "
            "| LSD model | LSD resample_poly | LSD linear |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for f in result["files"]:
            cells = [f"{_score(f, n)[key]:.2f}" for key in ("snr_db", "lsd_db") for n in METHODS]
            lines.append(f"| {f['path']} | {f['seconds']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python examples/audio_upsampling/evaluate.py",
        description="Score a trained audio upsampler on audio files (decimated as in training) against "
        "scipy resample_poly and linear interpolation: SNR and log-spectral distance per file and on average.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    infer.add_run_flags(parser)
    parser.add_argument(
        "--data",
        required=True,
        nargs="+",
        help="audio files (WAV, FLAC, OGG; any rate, mixed to mono and resampled to the model's rate) and "
        "folders of them (searched recursively): the targets",
    )
    parser.add_argument(
        "--trim-db", type=float, default=40.0, help="trim leading and trailing audio this many dB below the peak"
    )
    parser.add_argument("--json", help="also write every number here (outside the run folder)")
    parser.add_argument("--per-file", action="store_true", help="print a row per file too")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    args = parser.parse_args(argv)

    # Every check before the model is loaded.
    infer.check_sizes(args.chunk, args.batch_size)
    guards.refuse("--trim-db", args.trim_db, guards.number_problem(args.trim_db, 0, inclusive=False))
    infer.check_run(args.checkpoint)
    files, _ = infer.expand_inputs(args.data, "--data")
    paths = [source for source, _ in files]
    headers = [infer.audio_header(path) for path in paths]
    if args.json is not None:
        guards.output_file(args.json, paths, args.checkpoint, args.overwrite, "--json", "--data", "a JSON file path")

    model, params, rate = infer.load(args.checkpoint)
    # An upper bound of each target's length (before trimming): the batch need not exceed any file's windows.
    lengths = [(1, math.ceil(frames * rate / file_rate) // model.factor) for file_rate, frames, _ in headers]
    size = infer.fitted_batch_size(lengths, args.chunk, receptive_halo(model), args.batch_size)
    upsampler = infer.ChunkedUpsampler(model, params, args.chunk, size)
    progress = infer.FileProgress(len(paths), args.progress, "evaluate")
    tic = time.perf_counter()
    try:
        result = evaluate_files(model, params, rate, paths, args.trim_db, upsampler=upsampler, progress=progress)
    finally:
        progress.close()
    result["checkpoint"] = str(args.checkpoint)
    result["wall_s"] = time.perf_counter() - tic
    print(format_tables(result, args.per_file), flush=True)
    if args.json is not None:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

"""Checks of everything that reaches the example from outside: numbers, paths and run folders.

The command-line tools call these before they write anything, so a bad value or a folder they did
not make is refused with a message that names it, and nothing on disk changes.

Run-folder policy of :mod:`.train` (only ever delete or replace what the program wrote itself):

- a fresh run goes into a folder that does not exist yet, or is empty;
- a non-empty folder is refused, unless it is a run this program made (its ``model.json`` carries
  :data:`.checkpoints.CREATED_BY`) and ``--overwrite`` is given: then only the run's own outputs
  (:data:`OUTPUT_FILES`, ``checkpoints/`` holding nothing but orbax steps, ``examples/clip*.wav``)
  are removed, and any other file there is kept;
- ``--resume`` needs a run whose ``model.json`` matches the flags and that has a checkpoint.
"""

from __future__ import annotations

import math
import numbers
import os
import pathlib
import re
import shutil
from collections.abc import Iterable, Sequence
from typing import Any

# jax's default integers (and optax's step counter) are int32: larger counts would wrap.
MAX_INT = 2**31 - 1
# The highest common audio rate; resampling filters grow with the rate, so a corrupt header
# claiming gigahertz would otherwise allocate gigabytes before failing.
MAX_RATE = 768_000
# A 7-tap convolution of this width already holds ~0.5 GB of weights.
MAX_CHANNELS = 4096

# Files a training run writes at the top of its folder (besides checkpoints/ and examples/).
OUTPUT_FILES = ("model.json", "loss_history.json", "metrics.json", "loss.png", "spectrogram.png", "waveform.png")
_EXAMPLE_WAV = re.compile(r"clip\d+_(input|resample_poly|model|target)\.wav")
_ORBAX_STEP = re.compile(r"\d+(\.orbax-checkpoint-tmp.*)?")


# --------------------------------------------------------------------------------------------
# Values.


def integer_problem(value: Any, minimum: int, maximum: int = MAX_INT) -> str | None:
    """What is wrong with ``value`` as an integer in ``[minimum, maximum]`` (``None``: nothing)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not minimum <= value <= maximum:
        return f"expected an integer >= {minimum} and <= {maximum}"
    return None


def number_problem(value: Any, minimum: float, inclusive: bool) -> str | None:
    """What is wrong with ``value`` as a finite number ``>= minimum`` (or ``> minimum``)."""
    bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        return f"expected a finite number {bound}"
    if value < minimum or (value == minimum and not inclusive):
        return f"expected a finite number {bound}"
    return None


def factor_problem(value: Any) -> str | None:
    """What is wrong with ``value`` as an upsampling factor (a power of two >= 2)."""
    if integer_problem(value, 2) or value & (value - 1):
        return "expected a power of two >= 2 (2, 4, 8, ...)"
    return None


def rate_problem(rate: int, factor: int, names: tuple[str, str]) -> str | None:
    """Why the input rate ``rate / factor`` would not be a whole number of Hz (``names``: how to call them)."""
    if rate % factor:
        return (
            f"{names[0]}={rate} is not divisible by {names[1]}={factor}: the input rate "
            f"{names[0]} / {names[1]} must be a whole number of Hz"
        )
    return None


def refuse(label: str, value: Any, problem: str | None) -> None:
    """Raise ``ValueError("label=value: problem.")`` when there is a problem."""
    if problem:
        raise ValueError(f"{label}={value!r}: {problem}.")


def path_problem(text: Any) -> str | None:
    """What makes ``text`` unusable as a path given on the command line."""
    if not isinstance(text, str) or not text.strip():
        # pathlib reads "" as the working directory: never what an empty flag meant.
        return "expected a path (an empty one would mean the working directory)"
    if "\0" in text:
        return "a path cannot contain a NUL character"
    return None


# --------------------------------------------------------------------------------------------
# Files.


def existing_file(path: str | pathlib.Path, what: str) -> pathlib.Path:
    """``path`` when it is an existing regular file (following links); else a ValueError naming it."""
    path = pathlib.Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file; expected {what}.")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file; expected {what}.")
    return path


def same_file(a: pathlib.Path, b: pathlib.Path) -> bool:
    """Whether ``a`` and ``b`` are one file (through links and relative paths) or one path."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return a.resolve() == b.resolve()


def is_inside(path: pathlib.Path, folder: pathlib.Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def output_file(
    target: str,
    sources: str | pathlib.Path | Sequence[str | pathlib.Path],
    run_dir: str,
    overwrite: bool,
    flag: str = "--output",
    input_flag: str = "--input",
    what: str = "a WAV file path",
) -> pathlib.Path:
    """Check a file a tool writes (``flag``): never an input, never into the run, replace only if asked.

    ``sources``: the input file(s), given by ``input_flag``; ``what``: what ``target`` should be.
    """
    refuse(flag, target, path_problem(target))
    path = pathlib.Path(target)
    for source in [sources] if isinstance(sources, (str, os.PathLike)) else sources:
        if same_file(path, pathlib.Path(source)):
            raise ValueError(
                f"{flag}={target!r} is the input file {input_flag}={str(source)!r}; it is never overwritten."
            )
    _refuse_inside_run(flag, target, run_dir)
    if path.is_dir():
        raise ValueError(f"{flag}={target!r} is a folder; expected {what}.")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise ValueError(f"{flag}={target!r} exists; pass --overwrite to replace it, or pick another path.")
    if not path.parent.is_dir():
        raise ValueError(f"{flag}={target!r}: the folder {str(path.parent)!r} does not exist.")
    return path


def output_folder(target: str, run_dir: str, input_folders: Sequence[pathlib.Path]) -> pathlib.Path:
    """Check the folder :mod:`.infer` writes several files into (it may not exist yet; it is made later).

    Refused: a file, a link to nothing, the run folder or a folder inside it, and an input folder or
    a folder inside one (its outputs could replace inputs, and would be read as inputs next time).
    """
    refuse("--output", target, path_problem(target))
    folder = pathlib.Path(target)
    if folder.is_symlink() and not folder.exists():
        raise ValueError(f"--output={target!r} is a link to nothing; expected a folder for the upsampled files.")
    if folder.exists() and not folder.is_dir():
        raise ValueError(
            f"--output={target!r} is a file; with several inputs or an input folder, --output is the "
            "folder the upsampled WAVs go into."
        )
    _refuse_inside_run("--output", target, run_dir)
    for source in input_folders:
        if is_inside(folder, source):
            where = "the input folder" if folder.resolve() == source.resolve() else "inside the input folder"
            raise ValueError(
                f"--output={target!r} is {where} --input={str(source)!r}: the upsampled files could replace "
                "inputs there, and would be read as inputs by the next call. Pick a folder outside it."
            )
    if not folder.exists():
        _check_creatable(folder, "--output")
    return folder


def output_files(
    folder: pathlib.Path,
    names: Sequence[tuple[pathlib.Path, pathlib.PurePath]],
    run_dir: str,
    overwrite: bool,
) -> list[pathlib.Path]:
    """The checked path under ``folder`` of every ``(input file, relative output name)`` in ``names``.

    Refused: two inputs with one output name (compared ignoring case, as some file systems do), an
    output that is one of the input files (through links too), a folder, a path inside the run
    folder, a path below a file, and any existing output unless ``overwrite``.
    """
    inputs = {_file_id(source): source for source, _ in names}
    inputs.pop(None, None)
    seen: dict[str, pathlib.Path] = {}
    targets, existing = [], []
    for source, name in names:
        path = folder / name
        key = str(name).casefold()
        if key in seen:
            raise ValueError(
                f"--output={str(folder)!r}: {seen[key]} and {source} would both be written to {path}; "
                "nothing was written. Upsample them in separate calls, or rename one."
            )
        seen[key] = source
        _refuse_inside_run("--output", str(path), run_dir)
        for parent in reversed(name.parents[:-1]):  # the subfolders between folder and path
            if (folder / parent).exists() and not (folder / parent).is_dir():
                raise ValueError(f"{folder / parent}: a file, where the folder of the output {path} goes.")
        if path.exists() or path.is_symlink():
            if _file_id(path) in inputs:
                raise ValueError(f"{path} is the input file {inputs[_file_id(path)]}; it is never overwritten.")
            if path.is_dir():
                raise ValueError(f"{path}: a folder, where the upsampled WAV of {source} goes.")
            existing.append(path)
        targets.append(path)
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more of the outputs)" if len(existing) > 1 else ""
        raise ValueError(
            f"--output={str(folder)!r}: {existing[0]} exists{more}; nothing was written. Pass --overwrite to "
            "replace them, or pick another folder."
        )
    return targets


def _refuse_inside_run(flag: str, target: str, run_dir: str) -> None:
    if is_inside(pathlib.Path(target), pathlib.Path(run_dir)):
        raise ValueError(
            f"{flag}={target!r} is inside the run folder {run_dir!r}; inference writes nothing "
            "there (it holds the model's checkpoints). Pick a path outside it."
        )


def _file_id(path: pathlib.Path) -> tuple[int, int] | None:
    """The (device, inode) of the file at ``path`` (through links), or ``None`` where there is none."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


# --------------------------------------------------------------------------------------------
# Run folders.


def fresh_run_folder(out: pathlib.Path, is_own_run: bool, overwrite: bool) -> list[pathlib.Path]:
    """Check that a fresh run may use ``out``; returns the old run outputs ``--overwrite`` must remove first.

    ``is_own_run``: whether ``out`` holds a ``model.json`` this program wrote.
    """
    if out.is_symlink() and not out.exists():
        raise ValueError(f"--out={str(out)!r} is a link to nothing; expected a new or empty run folder.")
    if not out.exists():
        _check_creatable(out)
        return []
    if not out.is_dir():
        raise ValueError(f"--out={str(out)!r} is not a folder; expected a new or empty run folder.")
    if not any(out.iterdir()):
        return []
    if not is_own_run:
        raise ValueError(
            f"--out={str(out)!r}: this folder is not empty and is not a run of this program (no "
            "model.json written by it); nothing was changed. Pick a new or empty folder."
        )
    if not overwrite:
        raise ValueError(
            f"--out={str(out)!r} holds a run already; nothing was changed. Continue it with --resume, "
            "replace it with --overwrite (only the run's own outputs are removed) or pick another folder."
        )
    return _old_outputs(out)


def resumable_run_folder(
    out: pathlib.Path, given: dict[str, Any], recorded: dict[str, Any], saved_steps: list[int], last: int
) -> int:
    """Check that ``--resume`` can continue the run in ``out``; returns its latest checkpoint step.

    ``given``: the flags' model settings; ``recorded``: the run's (from its model.json);
    ``last``: the step this invocation would stop after.
    """
    differing = [
        f"--{key.replace('_', '-')}={given[key]!r} (the run has {recorded[key]!r})"
        for key in recorded
        if given[key] != recorded[key]
    ]
    if differing:
        raise ValueError(
            f"--resume: settings differ from the run's {out / 'model.json'}: {', '.join(differing)}; "
            "nothing was changed. Pass the run's settings, or start a new run in another folder."
        )
    if not saved_steps:
        raise ValueError(
            f"--resume: no checkpoint in {out / 'checkpoints'}; nothing to continue (start a "
            "fresh run without --resume)."
        )
    step = max(saved_steps)
    if last < step:
        raise ValueError(
            f"--resume: the run's checkpoint is at step {step}, past the requested end {last} "
            "(--stop-after / --steps); nothing was changed."
        )
    for path in _existing_outputs(out):
        _check_own_file(path)
    return step


def remove(paths: Iterable[pathlib.Path]) -> None:
    """Delete ``paths`` (files, or folders :func:`fresh_run_folder` checked), then an emptied ``examples/``."""
    folders = set()
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
            folders.add(path.parent)
    for folder in folders:
        if folder.name == "examples" and not any(folder.iterdir()):
            folder.rmdir()


def _check_creatable(out: pathlib.Path, flag: str = "--out") -> None:
    """The nearest existing ancestor must be a folder, or ``mkdir`` would fail half-way."""
    for ancestor in out.absolute().parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise ValueError(f"{flag}={str(out)!r}: {str(ancestor)!r} is not a folder.")
            return


def _existing_outputs(out: pathlib.Path) -> list[pathlib.Path]:
    """The run outputs that exist in ``out``: top-level files and the example WAVs."""
    paths = [out / name for name in OUTPUT_FILES if (out / name).exists() or (out / name).is_symlink()]
    examples = out / "examples"
    if examples.is_symlink() or (examples.exists() and not examples.is_dir()):
        raise ValueError(
            f"{examples}: expected the run's folder of example WAVs, found a link or a file; nothing was changed."
        )
    if examples.is_dir():
        paths += sorted(p for p in examples.iterdir() if _EXAMPLE_WAV.fullmatch(p.name))
    return paths


def _check_own_file(path: pathlib.Path) -> None:
    # A link or folder under an output's name was not written by the run: writing through it
    # would change a file elsewhere.
    if path.is_symlink() or not path.is_file():
        raise ValueError(f"{path}: expected a file written by the run, found a link or a folder; nothing was changed.")


def _old_outputs(out: pathlib.Path) -> list[pathlib.Path]:
    paths = _existing_outputs(out)
    for path in paths:
        _check_own_file(path)
    folder = out / "checkpoints"
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise ValueError(
            f"{folder}: expected the run's checkpoint folder, found a link or a file; nothing was changed."
        )
    if folder.is_dir():
        strangers = sorted(p.name for p in folder.iterdir() if not (_ORBAX_STEP.fullmatch(p.name) and p.is_dir()))
        if strangers:
            raise ValueError(
                f"{folder} holds {', '.join(strangers)}, not written by the run; --overwrite removes "
                "nothing there. Move those away, or pick another folder."
            )
        paths.append(folder)
    return paths

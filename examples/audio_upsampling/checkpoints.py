"""Orbax checkpoints of (params, optimizer state), and the run's model settings as JSON.

Trees are stored by leaf index (``{"0": array, "1": ...}``) and restored into the structure of a
freshly built tree, so the :class:`convtrans.Constrained` boxes and optax's state classes need no
special handling by orbax. ``params`` and ``opt_state`` are separate items: inference restores
``params`` alone.

``model.json`` is read back strictly (see :func:`read_model_settings`): it may have been edited by
hand, and a wrong value there would otherwise surface as an error deep inside the model or orbax.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
from collections.abc import Iterator
from typing import Any

import jax
import orbax.checkpoint as ocp

from examples.audio_upsampling import guards

MODEL_SETTINGS_FILE = "model.json"
# Written into model.json: marks a folder as a run of this program, the only kind that
# `train --overwrite` may clear.
CREATED_BY = "examples.audio_upsampling.train"
MODEL_KEYS = ("factor", "channels", "max_norm", "l2", "high_band_gain", "rate")
# Keys a model.json of an earlier version may lack, with the value that reproduces that version's model.
_DEFAULTS = {"high_band_gain": 1.0}


def manager(run_dir: str | pathlib.Path, max_to_keep: int = 2, create: bool = True) -> ocp.CheckpointManager:
    """The checkpoint manager of ``run_dir`` (checkpoints live in ``run_dir/checkpoints/<step>``).

    ``create=False`` for readers: orbax would otherwise make an empty ``checkpoints/`` in any folder.
    """
    directory = pathlib.Path(run_dir).resolve() / "checkpoints"
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create)
    return ocp.CheckpointManager(directory, options=options, item_names=("params", "opt_state"))


@contextlib.contextmanager
def opened(run_dir: str | pathlib.Path, create: bool) -> Iterator[ocp.CheckpointManager]:
    """:func:`manager`, closed on the way out (after its pending saves) however the block ends.

    A manager left open when an error propagates makes orbax print "Event loop is closed"
    tracebacks at exit that bury the error; on that path a failure to close is not reported.
    """
    mngr = manager(run_dir, create=create)
    try:
        yield mngr
    except BaseException:
        with contextlib.suppress(Exception):
            mngr.close()
        raise
    mngr.close()


def saved_steps(run_dir: str | pathlib.Path) -> list[int]:
    """The steps under ``run_dir/checkpoints`` (read from the folder names; creates nothing)."""
    folder = pathlib.Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir())


def _by_index(tree: Any) -> dict[str, Any]:
    return {str(i): leaf for i, leaf in enumerate(jax.tree.leaves(tree))}


def _abstract(tree: Any) -> dict[str, Any]:
    return {
        str(i): jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=getattr(leaf, "sharding", None))
        for i, leaf in enumerate(jax.tree.leaves(tree))
    }


def _into(template: Any, by_index: dict[str, Any]) -> Any:
    leaves, treedef = jax.tree.flatten(template)
    return jax.tree.unflatten(treedef, [by_index[str(i)] for i in range(len(leaves))])


def save(mngr: ocp.CheckpointManager, step: int, params: Any, opt_state: Any) -> None:
    """Save (asynchronously; call ``mngr.wait_until_finished()`` before exiting)."""
    mngr.save(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardSave(_by_index(params)),
            opt_state=ocp.args.StandardSave(_by_index(opt_state)),
        ),
    )


def restore(mngr: ocp.CheckpointManager, step: int, params: Any, opt_state: Any | None = None):
    """``(params, opt_state)`` of ``step`` in the structure (and shardings) of the given templates.

    With ``opt_state=None`` only the parameters are read (and ``None`` is returned for the state).
    """
    items = {"params": ocp.args.StandardRestore(_abstract(params))}
    if opt_state is not None:
        items["opt_state"] = ocp.args.StandardRestore(_abstract(opt_state))
    try:
        restored = mngr.restore(step, args=ocp.args.Composite(**items))
    except Exception as error:  # orbax's errors name neither the folder nor the likely cause
        raise ValueError(
            f"{mngr.directory / str(step)}: cannot restore this checkpoint into the model described by "
            f"{MODEL_SETTINGS_FILE} ({type(error).__name__}: {error}); was either file changed?"
        ) from error
    new_params = _into(params, restored["params"])
    new_state = None if opt_state is None else _into(opt_state, restored["opt_state"])
    return new_params, new_state


def write_model_settings(run_dir: str | pathlib.Path, settings: dict[str, Any]) -> None:
    """Record the model's constructor arguments (and ``rate``) next to the checkpoints, for inference."""
    path = pathlib.Path(run_dir) / MODEL_SETTINGS_FILE
    path.write_text(json.dumps({**settings, "created_by": CREATED_BY}, indent=2) + "\n")


def read_model_settings(run_dir: str | pathlib.Path, flag: str = "checkpoint") -> dict[str, Any]:
    """The validated settings of ``run_dir/model.json``: the keys :data:`MODEL_KEYS`.

    ``flag`` names the command-line flag that gave ``run_dir``, for the message when the file is
    missing. Every other problem is a ValueError naming the file and what is wrong with it.
    """
    path = pathlib.Path(run_dir) / MODEL_SETTINGS_FILE
    if not path.exists():
        raise ValueError(
            f"{flag}={str(run_dir)!r}: no {MODEL_SETTINGS_FILE} there; pass a training run's --out folder."
        )
    raw = _read_json(path)
    return {key: raw.get(key, _DEFAULTS.get(key)) for key in MODEL_KEYS}


def is_own_run(run_dir: str | pathlib.Path) -> bool:
    """Whether ``run_dir`` holds a valid ``model.json`` that this program wrote."""
    path = pathlib.Path(run_dir) / MODEL_SETTINGS_FILE
    try:
        return path.is_file() and _read_json(path).get("created_by") == CREATED_BY
    except ValueError:
        return False


def _read_json(path: pathlib.Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read it ({error}).") from error
    except (ValueError, RecursionError) as error:  # bad syntax, absurd nesting, a 5000-digit number
        raise ValueError(
            f"{path}: not valid JSON ({error}); expected the model settings a training run writes."
        ) from error
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object of model settings, found a {type(raw).__name__}.")
    _check_settings(path, raw)
    return raw


def _check_settings(path: pathlib.Path, raw: dict[str, Any]) -> None:
    raw = {**_DEFAULTS, **raw}
    missing = [key for key in MODEL_KEYS if key not in raw]
    unknown = sorted(set(raw) - set(MODEL_KEYS) - {"created_by"})
    parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
        [f"unexpected {', '.join(unknown)}"] if unknown else []
    )
    if parts:
        raise ValueError(f"{path}: {'; '.join(parts)}; expected the keys {', '.join(MODEL_KEYS)} (and created_by).")
    problems = {
        "factor": guards.factor_problem(raw["factor"]),
        "channels": guards.integer_problem(raw["channels"], 1, guards.MAX_CHANNELS),
        "max_norm": guards.number_problem(raw["max_norm"], 0, inclusive=False),
        "l2": guards.number_problem(raw["l2"], 0, inclusive=True),
        "high_band_gain": guards.number_problem(raw["high_band_gain"], 0, inclusive=True)
        or (None if raw["high_band_gain"] <= 1 else "expected a finite number >= 0 and <= 1"),
        "rate": guards.integer_problem(raw["rate"], 1, guards.MAX_RATE),
        "created_by": None if raw.get("created_by", CREATED_BY) == CREATED_BY else f"expected {CREATED_BY!r}",
    }
    for key, problem in problems.items():
        if problem:
            raise ValueError(f"{path}: {key}={raw[key]!r}: {problem}.")
    problem = guards.rate_problem(raw["rate"], raw["factor"], ("rate", "factor"))
    if problem:
        raise ValueError(f"{path}: {problem}.")

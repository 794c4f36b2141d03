"""Orbax checkpoints of (params, optimizer state), and the run's model settings as JSON.

Trees are stored by leaf index (``{"0": array, "1": ...}``) and restored into the structure of a
freshly built tree, so the :class:`convtrans.Constrained` boxes and optax's state classes need no
special handling by orbax. ``params`` and ``opt_state`` are separate items: inference restores
``params`` alone.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

MODEL_SETTINGS_FILE = "model.json"


def manager(run_dir: str | pathlib.Path, max_to_keep: int = 2) -> ocp.CheckpointManager:
    """The checkpoint manager of ``run_dir`` (checkpoints live in ``run_dir/checkpoints/<step>``)."""
    directory = pathlib.Path(run_dir).resolve() / "checkpoints"
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(directory, options=options, item_names=("params", "opt_state"))


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
    mngr.save(step, args=ocp.args.Composite(
        params=ocp.args.StandardSave(_by_index(params)),
        opt_state=ocp.args.StandardSave(_by_index(opt_state)),
    ))


def restore(mngr: ocp.CheckpointManager, step: int, params: Any, opt_state: Optional[Any] = None):
    """``(params, opt_state)`` of ``step`` in the structure (and shardings) of the given templates.

    With ``opt_state=None`` only the parameters are read (and ``None`` is returned for the state).
    """
    items = {"params": ocp.args.StandardRestore(_abstract(params))}
    if opt_state is not None:
        items["opt_state"] = ocp.args.StandardRestore(_abstract(opt_state))
    restored = mngr.restore(step, args=ocp.args.Composite(**items))
    new_params = _into(params, restored["params"])
    new_state = None if opt_state is None else _into(opt_state, restored["opt_state"])
    return new_params, new_state


def write_model_settings(run_dir: str | pathlib.Path, settings: dict[str, Any]) -> None:
    """Record the model's constructor arguments next to the checkpoints (for inference)."""
    path = pathlib.Path(run_dir) / MODEL_SETTINGS_FILE
    path.write_text(json.dumps(settings, indent=2) + "\n")


def read_model_settings(run_dir: str | pathlib.Path) -> dict[str, Any]:
    path = pathlib.Path(run_dir) / MODEL_SETTINGS_FILE
    if not path.exists():
        raise ValueError(f"checkpoint={str(run_dir)!r}: no {MODEL_SETTINGS_FILE} there; pass a training run's --out folder.")
    return json.loads(path.read_text())

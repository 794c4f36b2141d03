"""Keras's weight constraints inside an optax optimizer.

Keras applies a variable's constraint right after each optimizer step: ``w_new = c(w + update)``.
:func:`keras_constraints` is an ``optax.GradientTransformation`` that does the same for every
constrained parameter of a model. Chain it *last*::

    tx = optax.chain(optax.adam(1e-3), convtrans.keras_constraints())

How it finds the constraints, without parameter paths:

- linen: :class:`convtrans.Conv1DTranspose` stores a constrained ``kernel``/``bias`` in a
  :class:`Constrained` box (a ``flax.linen.meta.AxisMetadata``, like ``nn.Partitioned``) that
  carries the constraint as static metadata. ``model.apply`` unboxes it by itself; optax and
  ``jax.tree.map`` see through it to the array.
- nnx: :class:`convtrans.nnx.Conv1DTranspose` gives a constrained ``nnx.Param`` the metadata
  ``constraint=...``.

``init`` records, for every leaf of the parameter tree it is given, the constraint found there
(in the optimizer state, as static tree structure: nothing to checkpoint); ``update`` applies the
recorded constraint of each leaf, and also honours :class:`Constrained` boxes in the ``params`` it
receives. ``nnx.Optimizer`` calls ``init`` with the model's ``nnx.Param`` variables and
``update`` with plain arrays, which is why the constraints are recorded at ``init``. So: call
``tx.init`` on the boxed linen ``params`` straight from ``model.init`` (not on ``nn.unbox``-ed
ones), and build ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` as usual.

The update returned is ``c(w + u) - w``, so ``optax.apply_updates`` yields ``c(w + u)`` up to one
rounding of that difference (exact whenever ``c(w + u)`` is within a factor of 2 of ``w``, as for
small steps, or zero; otherwise within about one ulp). :func:`apply_constraints` projects a tree
directly. Other flax layers' weights can be constrained too, with :func:`with_constraint`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, ParamSpec, TypeVar, cast

import jax
import numpy as np
import optax
from flax import nnx, struct
from flax.core import meta

from convtrans._src.keras import constraints

# What a constraint is to this module: ``w -> w'`` (a convtrans.constraints object, or any such function).
_ConstraintFn = Callable[[jax.Array], jax.Array]


class Constrained(struct.PyTreeNode, meta.AxisMetadata[Any]):
    """A parameter boxed with the Keras constraint applied to it after each optimizer update.

    The array is the only pytree child, so ``jax.tree.map``, ``jax.grad`` and optax treat the box
    as transparent and keep it; ``constraint`` is static metadata. Flax's ``self.param`` unboxes
    it, and ``nn.unbox(tree)`` strips all boxes.

    Attributes:
      value: the parameter array.
      constraint: ``w -> w'``, e.g. a :mod:`convtrans.constraints` object (a Keras name or dict
        is refused: resolve it with :func:`convtrans.constraints.get`, as :func:`with_constraint`
        does).
    """

    value: Any
    constraint: _ConstraintFn = struct.field(pytree_node=False)

    def __post_init__(self) -> None:
        _check_constraint(self.constraint)

    def unbox(self) -> Any:
        """The parameter array (flax's ``AxisMetadata`` interface)."""
        return self.value

    def replace_boxed(self, val: Any) -> Constrained:
        """The same box around another value ``val`` (flax's ``AxisMetadata`` interface)."""
        return self.replace(value=val)

    # A constraint acts on the whole weight; under nn.vmap / nn.scan it acts on each slice.
    def add_axis(self, index: int, params: dict[Any, Any]) -> Constrained:
        """For ``nn.vmap`` / ``nn.scan`` stacking the parameter along axis ``index``: the constraint
        then applies to each slice along that axis separately."""
        return self.replace(constraint=_Sliced(self.constraint, index))

    def remove_axis(self, index: int, params: dict[Any, Any]) -> Constrained:
        """The inverse of :meth:`add_axis`: the per-slice constraint on axis ``index`` unwrapped."""
        inner = self.constraint
        if isinstance(inner, _Sliced) and inner.axis == index:
            return self.replace(constraint=inner.constraint)
        return self

    def to_nnx_metadata(self) -> dict[str, Any]:
        """``{"value": ..., "constraint": ...}``: the box as the metadata of an ``nnx.Param``."""
        return {"value": self.value, "constraint": self.constraint}

    @classmethod
    def from_nnx_metadata(cls, metadata: dict[str, Any]) -> Constrained:
        """The box of an ``nnx.Param``'s metadata, the inverse of :meth:`to_nnx_metadata`."""
        return cls(metadata["value"], metadata["constraint"])


_P = ParamSpec("_P")
_Tree = TypeVar("_Tree")


def with_constraint(init: Callable[_P, Any], constraint: Any) -> Callable[_P, Constrained]:
    """Wrap a flax initializer so that its weight is boxed with a Keras ``constraint``.

    Like ``nn.with_partitioning``: ``nn.Dense(8, kernel_init=convtrans.with_constraint(
    nn.initializers.lecun_normal(), "max_norm"))`` makes :func:`keras_constraints` project that
    kernel too. ``constraint`` is a Keras name, Keras dict or :mod:`convtrans.constraints` object.

    Raises:
      TypeError: if ``init`` is not callable, or for a ``constraint`` that is no constraint.
      ValueError: for ``constraint=None`` or an unknown constraint name.
    """
    if not callable(init):
        raise TypeError(
            f"init must be a callable initializer, (key, shape, dtype) -> array, e.g. "
            f"nn.initializers.lecun_normal(); got {init!r} of type {type(init).__name__}."
        )
    resolved = constraints.get(constraint, "constraint")
    if resolved is None:
        raise ValueError("constraint must not be None; use the initializer itself for no constraint.")

    def boxed_init(*args: _P.args, **kwargs: _P.kwargs) -> Constrained:
        return Constrained(init(*args, **kwargs), resolved)

    return boxed_init


@struct.dataclass
class _Sliced:
    """``constraint`` applied independently to each slice along ``axis`` (a stacked weight)."""

    constraint: _ConstraintFn = struct.field(pytree_node=False)
    axis: int = struct.field(pytree_node=False)

    def __call__(self, w: jax.Array) -> jax.Array:
        return jax.vmap(self.constraint, in_axes=self.axis, out_axes=self.axis)(w)


def _check_constraint(constraint: Any) -> _ConstraintFn | None:
    """A carried constraint, which must be callable (or None, for none): a Keras name would only
    fail when the optimizer applies it."""
    if constraint is not None and not callable(constraint):
        raise TypeError(
            f"constraint must be callable, w -> w' (e.g. convtrans.constraints.get({constraint!r:.60}) for a Keras "
            f"name or dict, or use convtrans.with_constraint); got {constraint!r:.60} of type "
            f"{type(constraint).__name__}."
        )
    return cast(_ConstraintFn | None, constraint)


def _constraint_of(node: Any) -> _ConstraintFn | None:
    """The constraint a parameter-tree node carries, if any (linen box or nnx variable)."""
    if isinstance(node, Constrained):
        return node.constraint
    if _is_nnx_variable(node):
        return _check_constraint(node.get_metadata().get("constraint"))
    return None


def _is_nnx_variable(node: Any) -> bool:
    return isinstance(node, nnx.Variable)


def _is_carrier(node: Any) -> bool:
    return isinstance(node, Constrained) or _is_nnx_variable(node)


def leaf_constraints(tree: Any) -> tuple[_ConstraintFn | None, ...]:
    """One entry per array leaf of ``tree`` (in ``jax.tree.leaves`` order): its constraint (from a
    :class:`Constrained` box or an nnx variable's ``constraint`` metadata) or None."""
    found: list[_ConstraintFn | None] = []
    for node in jax.tree.leaves(tree, is_leaf=_is_carrier):
        constraint = _constraint_of(node)
        found.extend([constraint] * len(jax.tree.leaves(node)) if _is_carrier(node) else [constraint])
    return tuple(found)


@jax.tree_util.register_static
class _Recorded:
    """Static (treedef-only) record of the constraints found at ``init``; holds no arrays."""

    def __init__(
        self,
        constraints: tuple[_ConstraintFn | None, ...],
        paths: tuple[str, ...] = (),
        shapes: tuple[tuple[int, ...], ...] = (),
    ) -> None:
        self.constraints = constraints
        self.paths = paths
        self.shapes = shapes

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, _Recorded)
            and self.constraints == other.constraints
            and self.paths == other.paths
            and self.shapes == other.shapes
        )

    def __hash__(self) -> int:
        return hash((self.constraints, self.paths, self.shapes))

    def __repr__(self) -> str:
        return f"_Recorded({sum(c is not None for c in self.constraints)} constrained leaves)"


class KerasConstraintsState(NamedTuple):
    """Optimizer state of :func:`keras_constraints`: the recorded constraints, no arrays."""

    recorded: _Recorded


def apply_constraints(params: _Tree) -> _Tree:
    """``params`` with every :class:`Constrained` box (or nnx ``constraint`` variable) projected:
    ``w <- constraint(w)``, the tree's structure, shapes and dtypes kept.

    Use it once after initialization if the initial weights must already satisfy the constraint
    (Keras does not do this: it constrains only after updates).
    """

    def project(node: Any) -> Any:
        constraint = _constraint_of(node)
        if constraint is None:
            return node
        return jax.tree.map(constraint, node)

    return jax.tree.map(project, params, is_leaf=_is_carrier)


def _leaf_paths(tree: Any) -> tuple[str, ...]:
    """The key path of every array leaf, boxes seen through (``['conv']['kernel']``)."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return tuple(jax.tree_util.keystr(path).replace(".value", "") for path, _ in leaves)


def _leaf_shapes(tree: Any) -> tuple[tuple[int, ...], ...]:
    """The shape of every array leaf (``()`` for a scalar), boxes seen through."""
    return tuple(tuple(leaf.shape) if hasattr(leaf, "shape") else np.shape(leaf) for leaf in jax.tree.leaves(tree))


def _check_same_shapes(
    expected: tuple[tuple[int, ...], ...],
    got: tuple[tuple[int, ...], ...],
    paths: tuple[str, ...],
    what: str,
    reference: str,
) -> None:
    """ValueError naming the first leaf of ``what`` whose shape is not that of ``reference``."""
    for path, shape, reference_shape in zip(paths, got, expected):
        if shape != reference_shape:
            raise ValueError(
                f"{what}{path} has shape {shape}, but {reference} has {reference_shape} there; "
                "pass the same parameter tree."
            )


def _check_same_paths(expected: tuple[str, ...], got: tuple[str, ...], what: str, reference: str) -> None:
    if expected and got != expected:
        index = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))
        raise ValueError(
            f"{what} have another structure than {reference}: leaf {index} is "
            f"{got[index] if index < len(got) else 'missing'} where {reference} has "
            f"{expected[index] if index < len(expected) else 'nothing'}; pass the same parameter tree."
        )


def keras_constraints() -> optax.GradientTransformation:
    """Project every constrained parameter after the update, as Keras does: ``w <- c(w + u)``.

    Chain it last: ``optax.chain(optax.adam(1e-3), convtrans.keras_constraints())``. It needs
    ``params`` in ``update`` (``tx.update(grads, state, params)``, which ``nnx.Optimizer`` passes).

    linen::

        variables = model.init(key, x)
        params = variables["params"]            # constrained weights are Constrained boxes
        tx = optax.chain(optax.sgd(0.1), convtrans.keras_constraints())
        opt_state = tx.init(params)             # init on the boxed params
        grads = jax.grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)

    nnx::

        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        optimizer.update(model, grads)

    Parameters without a constraint get their update unchanged. Works for any number of layers
    anywhere in the tree, and for other modules' parameters boxed with :class:`Constrained`.
    """

    def init_fn(params: Any) -> KerasConstraintsState:
        return KerasConstraintsState(_Recorded(leaf_constraints(params), _leaf_paths(params), _leaf_shapes(params)))

    def update_fn(
        updates: optax.Updates, state: optax.OptState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, optax.OptState]:
        recorded_state = getattr(state, "recorded", None)
        if not isinstance(recorded_state, _Recorded):
            raise TypeError(
                f"state must be the state of keras_constraints() that tx.init(params) returned, got "
                f"{type(state).__name__}."
            )
        if params is None:
            raise ValueError("keras_constraints() needs the current params: call tx.update(updates, state, params).")
        update_leaves, treedef = jax.tree.flatten(updates)
        param_leaves = jax.tree.leaves(params)
        boxed = leaf_constraints(params)
        recorded = recorded_state.constraints
        if not (len(update_leaves) == len(param_leaves) == len(boxed)):
            raise ValueError(
                f"updates have {len(update_leaves)} array leaves but params have "
                f"{len(param_leaves)}; pass the same parameter tree to both."
            )
        if recorded and len(recorded) != len(param_leaves):
            raise ValueError(
                f"keras_constraints() was initialized on a tree with {len(recorded)} leaves, but "
                f"params have {len(param_leaves)}; call tx.init on the same parameter tree."
            )
        # Equal counts are not enough: a leaf moved elsewhere would get another leaf's constraint.
        param_paths = _leaf_paths(params)
        _check_same_paths(recorded_state.paths, param_paths, "params", "the tree tx.init saw")
        _check_same_paths(param_paths, _leaf_paths(updates), "updates", "params")
        param_shapes = _leaf_shapes(params)
        if recorded_state.shapes:
            _check_same_shapes(recorded_state.shapes, param_shapes, param_paths, "params", "the tree tx.init saw")
        _check_same_shapes(param_shapes, _leaf_shapes(updates), param_paths, "updates", "params")
        new_leaves = []
        for i, (u, w) in enumerate(zip(update_leaves, param_leaves)):
            constraint = boxed[i] if boxed[i] is not None else (recorded[i] if recorded else None)
            if constraint is None or u is None:
                new_leaves.append(u)
            else:
                projected = constraint(w + u.astype(w.dtype))
                new_leaves.append((projected - w).astype(u.dtype))
        return jax.tree.unflatten(treedef, new_leaves), state

    # optax types a state as a nest of arrays; this one is a NamedTuple of static, leafless data,
    # which optax takes at runtime like its own EmptyState.
    return optax.GradientTransformation(init_fn, update_fn)  # pyright: ignore[reportArgumentType]


__all__ = [
    "Constrained",
    "KerasConstraintsState",
    "apply_constraints",
    "keras_constraints",
    "leaf_constraints",
    "with_constraint",
]

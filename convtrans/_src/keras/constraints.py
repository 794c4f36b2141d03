"""Implementation of :mod:`convtrans.constraints` (documented there)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from convtrans._src.keras.objects import KerasObject, check_axes_in_rank, check_axis, check_number, resolve

EPSILON = 1e-7


@dataclasses.dataclass(frozen=True)
class Constraint(KerasObject):
    """A projection ``w -> w'`` of the same shape and dtype, applied after each optimizer update.

    Subclasses are frozen dataclasses (hashable, so a config holding one can be a static argument
    of ``jax.jit``) that serialize to Keras with :meth:`to_keras`.
    """

    keras_module = "keras.constraints"

    def __call__(self, w: jnp.ndarray) -> jnp.ndarray:
        """The projected weight: ``w``'s shape and floating dtype."""
        raise NotImplementedError

    def check_target(self, rank: int, argument: str) -> None:
        """ValueError if this constraint cannot apply to a weight of ``rank`` (``argument`` names
        where it was given); the norm constraints check their axes."""
        axis = getattr(self, "axis", None)
        if axis is not None:
            check_axes_in_rank(axis, rank, f"{argument}={type(self).__name__}")


def _norms(w: jnp.ndarray, axis: int | tuple[int, ...]) -> jnp.ndarray:
    return jnp.sqrt(jnp.sum(jnp.square(w), axis=axis, keepdims=True))


def _checked_norms(constraint: MaxNorm | MinMaxNorm | UnitNorm, w: jnp.ndarray) -> jnp.ndarray:
    if not jnp.issubdtype(jnp.result_type(w), jnp.floating):
        raise TypeError(f"{type(constraint).__name__} needs a floating weight, got dtype {jnp.result_type(w)}.")
    constraint.check_target(jnp.ndim(w), "constraint")
    return _norms(w, constraint.axis)


@dataclasses.dataclass(frozen=True)
class MaxNorm(Constraint):
    """Caps the L2 norm over ``axis``: ``w * clip(norm, 0, max_value) / (EPSILON + norm)``.

    ``norm = sqrt(sum(w ** 2, axis, keepdims=True))``. With the default ``axis=0`` and the
    ``(kernel_size, filters // groups, in_channels)`` kernel, each (filter, input channel) pair's
    taps are scaled so that their norm is at most ``max_value`` (Keras name ``"max_norm"``).

    Attributes:
      max_value: the largest norm allowed, >= 0 (2 by default).
      axis: an axis or a tuple of axes the norm is taken over.
    """

    max_value: float = 2.0
    axis: int | tuple[int, ...] = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_value", check_number(self.max_value, "max_value", minimum=0.0))
        object.__setattr__(self, "axis", check_axis(self.axis, "axis"))

    def __call__(self, w: jax.Array) -> jax.Array:
        norms = _checked_norms(self, w)
        desired = jnp.clip(norms, 0, self.max_value)
        return w * (desired / (EPSILON + norms))


@dataclasses.dataclass(frozen=True)
class MinMaxNorm(Constraint):
    """Moves the L2 norm over ``axis`` into ``[min_value, max_value]``, by ``rate``:

    ``w * (rate * clip(norm, min_value, max_value) + (1 - rate) * norm) / (EPSILON + norm)``
    with ``norm = sqrt(sum(w ** 2, axis, keepdims=True))`` (Keras name ``"min_max_norm"``).

    Attributes:
      min_value: the norm's lower bound, ``>= 0`` (0).
      max_value: the norm's upper bound, ``>= min_value`` (1).
      rate: in ``[0, 1]``; 1 (the default) projects onto the bounds, smaller rates move part way.
      axis: an axis or a tuple of axes the norm is taken over (0).
    """

    min_value: float = 0.0
    max_value: float = 1.0
    rate: float = 1.0
    axis: int | tuple[int, ...] = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "min_value", check_number(self.min_value, "min_value", minimum=0.0))
        object.__setattr__(self, "max_value", check_number(self.max_value, "max_value", minimum=0.0))
        object.__setattr__(self, "rate", check_number(self.rate, "rate", minimum=0.0, maximum=1.0))
        object.__setattr__(self, "axis", check_axis(self.axis, "axis"))
        if self.max_value < self.min_value:
            raise ValueError(
                f"MinMaxNorm needs min_value <= max_value, got min_value={self.min_value}, max_value={self.max_value}."
            )

    def __call__(self, w: jax.Array) -> jax.Array:
        norms = _checked_norms(self, w)
        desired = self.rate * jnp.clip(norms, self.min_value, self.max_value) + (1 - self.rate) * norms
        return w * (desired / (EPSILON + norms))


@dataclasses.dataclass(frozen=True)
class UnitNorm(Constraint):
    """Scales to unit L2 norm over ``axis``: ``w / (EPSILON + sqrt(sum(w ** 2, axis, keepdims=True)))``
    (Keras name ``"unit_norm"``).

    Attributes:
      axis: an axis or a tuple of axes the norm is taken over (0).
    """

    axis: int | tuple[int, ...] = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "axis", check_axis(self.axis, "axis"))

    def __call__(self, w: jax.Array) -> jax.Array:
        return w / (EPSILON + _checked_norms(self, w))


@dataclasses.dataclass(frozen=True)
class NonNeg(Constraint):
    """Clips negative entries to zero: ``max(w, 0)``, elementwise (Keras name ``"non_neg"``)."""

    def __call__(self, w: jax.Array) -> jax.Array:
        return jnp.maximum(w, 0)


_REGISTRY = {
    "MaxNorm": MaxNorm,
    "MinMaxNorm": MinMaxNorm,
    "UnitNorm": UnitNorm,
    "NonNeg": NonNeg,
    "max_norm": MaxNorm,
    "min_max_norm": MinMaxNorm,
    "unit_norm": UnitNorm,
    "non_neg": NonNeg,
}


def get(identifier: Any, argument: str = "constraint") -> Constraint | None:
    """A :class:`Constraint` from None (returned as None), a Keras name (``"max_norm"``,
    ``"min_max_norm"``, ``"unit_norm"``, ``"non_neg"`` or the class names), a Keras config dict
    ``{"class_name": ..., "config": {...}}``, a Keras constraint object, or a Constraint.

    Raises:
      ValueError: for an unknown name or class name, or a config the class does not take.
      TypeError: for anything else; ``argument`` names where it was given.
    """
    return resolve(identifier, argument=argument, registry=_REGISTRY, base=Constraint, kind="constraint")

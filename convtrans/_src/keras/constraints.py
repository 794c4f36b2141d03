"""Implementation of :mod:`convtrans.constraints` (documented there)."""

from __future__ import annotations

import dataclasses
from typing import Any, Union

import jax

import jax.numpy as jnp

from convtrans._src.keras.objects import KerasObject, check_axes_in_rank, check_axis, check_number, resolve

EPSILON = 1e-7


@dataclasses.dataclass(frozen=True)
class Constraint(KerasObject):
    """A projection ``w -> w'`` of the same shape and dtype."""

    keras_module = "keras.constraints"

    def __call__(self, w: jnp.ndarray) -> jnp.ndarray:
        raise NotImplementedError

    def check_target(self, rank: int, argument: str) -> None:
        """ValueError if this constraint cannot apply to a weight of ``rank`` (``argument`` names
        where it was given); the norm constraints check their axes."""
        axis = getattr(self, "axis", None)
        if axis is not None:
            check_axes_in_rank(axis, rank, f"{argument}={type(self).__name__}")


def _norms(w: jnp.ndarray, axis: Union[int, tuple[int, ...]]) -> jnp.ndarray:
    return jnp.sqrt(jnp.sum(jnp.square(w), axis=axis, keepdims=True))


def _checked_norms(constraint: Union[MaxNorm, MinMaxNorm, UnitNorm], w: jnp.ndarray) -> jnp.ndarray:
    if not jnp.issubdtype(jnp.result_type(w), jnp.floating):
        raise TypeError(f"{type(constraint).__name__} needs a floating weight, got dtype {jnp.result_type(w)}.")
    constraint.check_target(jnp.ndim(w), "constraint")
    return _norms(w, constraint.axis)


@dataclasses.dataclass(frozen=True)
class MaxNorm(Constraint):
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
                f"MinMaxNorm needs min_value <= max_value, got min_value={self.min_value}, "
                f"max_value={self.max_value}."
            )

    def __call__(self, w: jax.Array) -> jax.Array:
        norms = _checked_norms(self, w)
        desired = self.rate * jnp.clip(norms, self.min_value, self.max_value) + (1 - self.rate) * norms
        return w * (desired / (EPSILON + norms))


@dataclasses.dataclass(frozen=True)
class UnitNorm(Constraint):
    axis: int | tuple[int, ...] = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "axis", check_axis(self.axis, "axis"))

    def __call__(self, w: jax.Array) -> jax.Array:
        return w / (EPSILON + _checked_norms(self, w))


@dataclasses.dataclass(frozen=True)
class NonNeg(Constraint):
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
    """A :class:`Constraint` from None, a name, a Keras config dict or a Constraint."""
    return resolve(identifier, argument=argument, registry=_REGISTRY, base=Constraint, kind="constraint")

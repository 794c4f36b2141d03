"""Implementation of :mod:`convtrans.regularizers` (documented there)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from convtrans._src.keras.objects import KerasObject, as_keras_dict, check_number, resolve


@dataclasses.dataclass(frozen=True)
class Regularizer(KerasObject):
    """A penalty ``array -> scalar``: a frozen dataclass (hashable, so configs holding one stay
    static arguments of ``jax.jit``) that serializes to Keras with :meth:`to_keras`."""

    keras_module = "keras.regularizers"

    def __call__(self, x: ArrayLike) -> jax.Array:
        """The penalty of ``x`` (any shape, floating): a scalar of ``x``'s dtype."""
        raise NotImplementedError


def _checked(x: ArrayLike) -> jax.Array:
    """``x`` as an array; TypeError unless floating (a penalty of a complex weight is not real)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"a regularizer needs a floating weight, got dtype {x.dtype}.")
    return x


@dataclasses.dataclass(frozen=True)
class L1L2(Regularizer):
    """``l1 * sum(|x|) + l2 * sum(x ** 2)``, summed over every entry of ``x``; Keras's defaults are
    0 for both (name ``"l1l2"``; ``"l1_l2"`` is TF 2.x's ``L1L2(0.01, 0.01)``).

    Returns a scalar of ``x``'s dtype; a zero coefficient's term is left out (not multiplied).

    Attributes:
      l1: the coefficient of the absolute values, >= 0.
      l2: the coefficient of the squares, >= 0.
    """

    l1: float = 0.0
    l2: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "l1", check_number(0.0 if self.l1 is None else self.l1, "l1", minimum=0.0))
        object.__setattr__(self, "l2", check_number(0.0 if self.l2 is None else self.l2, "l2", minimum=0.0))

    def __call__(self, x: ArrayLike) -> jax.Array:
        x = _checked(x)
        penalty = jnp.zeros((), x.dtype)
        if self.l1:
            penalty = penalty + self.l1 * jnp.sum(jnp.abs(x))
        if self.l2:
            penalty = penalty + self.l2 * jnp.sum(jnp.square(x))
        return penalty


@dataclasses.dataclass(frozen=True)
class L1(Regularizer):
    """``l1 * sum(|x|)`` over every entry of ``x`` (Keras default ``l1=0.01``, name ``"l1"``); a
    scalar of ``x``'s dtype.

    Attributes:
      l1: the coefficient, >= 0.
    """

    l1: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "l1", check_number(self.l1, "l1", minimum=0.0))

    def __call__(self, x: ArrayLike) -> jax.Array:
        x = _checked(x)
        return self.l1 * jnp.sum(jnp.abs(x))


@dataclasses.dataclass(frozen=True)
class L2(Regularizer):
    """``l2 * sum(x ** 2)`` over every entry of ``x`` (Keras default ``l2=0.01``, name ``"l2"``); a
    scalar of ``x``'s dtype (no factor 1/2, unlike ``tf.nn.l2_loss``).

    Attributes:
      l2: the coefficient, >= 0.
    """

    l2: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "l2", check_number(self.l2, "l2", minimum=0.0))

    def __call__(self, x: ArrayLike) -> jax.Array:
        x = _checked(x)
        return self.l2 * jnp.sum(jnp.square(x))


_REGISTRY = {
    "L1": L1,
    "L2": L2,
    "L1L2": L1L2,
    "l1": L1,
    "l2": L2,
    "l1l2": L1L2,
    "l1_l2": lambda: L1L2(l1=0.01, l2=0.01),
}


def get(identifier: Any, argument: str = "regularizer") -> Regularizer | None:
    """A :class:`Regularizer` from None (returned as None), a name (``"l1"``, ``"l2"``, ``"l1l2"``,
    ``"l1_l2"`` or a class name), a Keras config dict ``{"class_name": ..., "config": {...}}``, a
    Keras regularizer object, or a Regularizer.

    Raises:
      ValueError: for an unknown name, a config the class does not take, or Keras's
        ``OrthogonalRegularizer`` (it needs a rank-2 weight).
      TypeError: for anything else; ``argument`` names where it was given.
    """
    identifier = as_keras_dict(identifier)
    name = identifier.get("class_name") if isinstance(identifier, dict) else identifier
    if isinstance(name, str) and name in ("OrthogonalRegularizer", "orthogonal_regularizer"):
        raise ValueError(
            f"{argument}: OrthogonalRegularizer needs a rank-2 weight, and this layer's kernel is "
            "rank 3 (Keras raises on it too)."
        )
    return resolve(identifier, argument=argument, registry=_REGISTRY, base=Regularizer, kind="regularizer")

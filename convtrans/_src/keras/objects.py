"""Turning Keras identifiers (names, config dicts, our objects) into hashable objects and back.

Keras serializes initializers, regularizers and constraints as
``{"module": ..., "class_name": ..., "config": {...}, "registered_name": ...}`` (TF 2.x omits
``module``), and accepts snake-case names. Our objects are frozen dataclasses, so a
:class:`~convtrans.Conv1DTransposeConfig` that holds them stays hashable and can be a static
argument of ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any, ClassVar


@dataclasses.dataclass(frozen=True)
class KerasObject:
    """Base of our Keras-compatible objects: ``get_config`` and Keras-style serialization."""

    keras_module: ClassVar[str] = ""

    def get_config(self) -> dict[str, Any]:
        """The object's arguments by name (tuples as lists), as Keras's ``get_config`` gives them."""
        return {
            f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in dataclasses.fields(self)
        }

    def to_keras(self) -> dict[str, Any]:
        """The dict Keras 3 writes for this object in a layer's ``get_config()``."""
        return {
            "module": self.keras_module,
            "class_name": type(self).__name__,
            "config": self.get_config(),
            "registered_name": None,
        }


# Top-level packages whose objects serialize themselves with Keras's ``get_config``.
_KERAS_PACKAGES = ("keras", "tf_keras", "tensorflow")


def is_keras_object(value: Any) -> bool:
    """Whether ``value`` is an object of Keras itself (Keras 3, tf.keras or tf_keras)."""
    package = (type(value).__module__ or "").split(".")[0]
    return package in _KERAS_PACKAGES and callable(getattr(value, "get_config", None))


def as_keras_dict(identifier: Any) -> Any:
    """A Keras object as the ``{'class_name', 'config'}`` dict Keras writes for it; anything
    else unchanged. Lets users pass ``keras.regularizers.L2(0.1)`` where a dict is accepted."""
    if is_keras_object(identifier):
        try:
            config = identifier.get_config()
        except NotImplementedError:  # Keras's abstract bases: left for the caller to refuse
            return identifier
        return {"class_name": type(identifier).__name__, "config": config}
    return identifier


def resolve(
    identifier: Any,
    *,
    argument: str,
    registry: Mapping[str, type],
    base: type,
    kind: str,
    allow_callable: bool = False,
) -> Any:
    """Turn ``identifier`` (None, name, Keras dict, object, maybe callable) into an object.

    ``registry`` maps Keras names (class names and snake-case aliases) to a class or to a
    zero-argument factory. Keras objects themselves are read through their ``get_config``, so
    they are never mistaken for plain callables.
    """
    identifier = as_keras_dict(identifier)
    if identifier is None or isinstance(identifier, base):
        return identifier
    if isinstance(identifier, str):
        if identifier not in registry:
            raise ValueError(
                f"{argument}={identifier!r} is not a known {kind}; expected one of "
                f"{sorted(k for k in registry if not k[0].isupper())} (or a Keras class name)."
            )
        return registry[identifier]()
    if isinstance(identifier, Mapping):
        if "class_name" not in identifier:
            raise ValueError(
                f"{argument}={identifier!r} is not a Keras {kind} dict; expected "
                "{'class_name': ..., 'config': {...}}."
            )
        name = identifier["class_name"]
        if not isinstance(name, str) or name not in registry:
            raise ValueError(
                f"{argument} has class_name={name!r}, which is not a known {kind}; expected one "
                f"of {sorted(k for k in registry if k[0].isupper())}."
            )
        options = identifier.get("config") or {}
        if not isinstance(options, Mapping) or not all(isinstance(key, str) for key in options):
            raise ValueError(f"{argument}: the config of {name} must be a dict of argument names, got {options!r}.")
        options = dict(options)
        try:
            return registry[name](**options)
        except (TypeError, ValueError) as err:  # unknown keys or out-of-range values
            raise ValueError(f"{argument}: bad config {options!r} for {name}: {err}") from None
    if allow_callable and callable(identifier):
        return identifier
    expected = f"a {kind} name, a Keras config dict or object, or a convtrans {base.__name__}"
    if allow_callable:
        expected += ", or a callable"
    raise TypeError(f"{argument} must be {expected}; got {identifier!r} of type {type(identifier).__name__}.")


# NumPy's largest rank: no weight has an axis beyond it.
MAX_RANK = 64


def check_number(value: Any, argument: str, *, minimum: float | None = None, maximum: float | None = None) -> float:
    """A finite real number (not bool) in ``[minimum, maximum]``, as a Python float."""
    if (
        isinstance(value, (bool, complex))
        or (not isinstance(value, (int, float)) and not hasattr(value, "__float__"))
        or "complex" in type(value).__name__
    ):
        raise TypeError(f"{argument} must be a number (real), got {value!r}.")
    try:
        value = float(value)
    except OverflowError:
        raise ValueError(f"{argument} must be a finite number, got {value!r}.") from None
    except (TypeError, ValueError):
        raise TypeError(f"{argument} must be a number, got {value!r}.") from None
    if not math.isfinite(value):
        raise ValueError(f"{argument} must be a finite number, got {value!r}.")
    if minimum is not None and not value >= minimum:
        raise ValueError(f"{argument} must be >= {minimum}, got {value!r}.")
    if maximum is not None and not value <= maximum:
        raise ValueError(f"{argument} must be <= {maximum}, got {value!r}.")
    return value


def check_seed(seed: Any, argument: str = "seed") -> int | None:
    """None or an integer (Keras's seeds), as an int."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{argument} must be None or an integer, got {seed!r}.")
    return int(seed)


def check_axis(axis: Any, argument: str) -> int | tuple[int, ...]:
    """An int axis, or a list/tuple of distinct ones stored as a tuple."""
    if isinstance(axis, (list, tuple)):
        if not axis or any(isinstance(a, (list, tuple)) for a in axis):
            raise ValueError(f"{argument} must be an int or a non-empty list of ints, got {axis!r}.")
        axes = tuple(check_axis(a, argument) for a in axis)
        if len(set(axes)) != len(axes):
            raise ValueError(f"{argument}={axis!r} names an axis twice.")
        return axes  # type: ignore[return-value]
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{argument} must be an int or a list of ints, got {axis!r}.")
    if not -MAX_RANK <= int(axis) < MAX_RANK:
        raise ValueError(f"{argument}={axis!r} is out of range: an array has at most {MAX_RANK} axes (NumPy's limit).")
    return int(axis)


def check_axes_in_rank(axis: int | tuple[int, ...], rank: int, argument: str) -> None:
    """ValueError unless every axis of ``axis`` names a distinct axis of a rank-``rank`` weight."""
    axes = axis if isinstance(axis, tuple) else (axis,)
    if any(not -rank <= a < rank for a in axes):
        raise ValueError(
            f"{argument}: axis={axis!r} is out of range for the rank-{rank} weight it "
            f"constrains; expected axes in [{-rank}, {rank - 1}]."
        )
    if len({a % rank for a in axes}) != len(axes):
        raise ValueError(f"{argument}: axis={axis!r} names an axis twice.")

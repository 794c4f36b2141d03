"""Turning Keras identifiers (names, config dicts, our objects) into hashable objects and back.

Keras serializes initializers, regularizers and constraints as
``{"module": ..., "class_name": ..., "config": {...}, "registered_name": ...}`` (TF 2.x omits
``module``), and accepts snake-case names. Our objects are frozen dataclasses, so a
:class:`~convtrans.Conv1DTransposeConfig` that holds them stays hashable and can be a static
argument of ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping


@dataclasses.dataclass(frozen=True)
class KerasObject:
    """Base of our Keras-compatible objects: ``get_config`` and Keras-style serialization."""

    keras_module: ClassVar[str] = ""

    def get_config(self) -> dict[str, Any]:
        return {
            f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
            for f in dataclasses.fields(self)
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
        if name not in registry:
            raise ValueError(
                f"{argument} has class_name={name!r}, which is not a known {kind}; expected one "
                f"of {sorted(k for k in registry if k[0].isupper())}."
            )
        options = dict(identifier.get("config") or {})
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


def check_number(value: Any, argument: str, *, minimum: float | None = None) -> float:
    """A real number (not bool) at least ``minimum``, as a Python float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise TypeError(f"{argument} must be a number, got {value!r}.")
    value = float(value)
    if minimum is not None and not value >= minimum:
        raise ValueError(f"{argument} must be >= {minimum}, got {value!r}.")
    return value


def check_axis(axis: Any, argument: str) -> int | tuple[int, ...]:
    """An int axis, or a list/tuple of them stored as a tuple."""
    if isinstance(axis, (list, tuple)):
        return tuple(check_axis(a, argument) for a in axis)  # type: ignore[misc]
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"{argument} must be an int or a list of ints, got {axis!r}.")
    return axis

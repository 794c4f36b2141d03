"""The public API is typed and its modules say what is public, checked without a type checker.

- every name in a public module's ``__all__`` exists;
- every public function, and every public method of a public class (``__init__``, ``__call__`` and
  other dunders included), annotates all its parameters and its return, and the annotations
  resolve (``typing.get_type_hints``), as do the field annotations of the public classes;
- a public module binds no public name outside its ``__all__``, except names that are not the
  module's own API: modules, typing constructs, and objects the package exports from another
  public module (e.g. ``Conv1DTransposeConfig`` used by ``convtrans.linen``). Helpers get a
  leading underscore, imported ones too (``check_config as _check_config``).

pyright (``--verifytypes``) and mypy (tests/typing/public_api_usage.py) check more; this test
keeps the basics from regressing in the ordinary test run.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import sys
import types
import typing
from pathlib import Path

import pytest

import convtrans

PUBLIC_MODULES = (
    "convtrans",
    "convtrans.activations",
    "convtrans.constraints",
    "convtrans.initializers",
    "convtrans.regularizers",
    "convtrans.streaming",
    "convtrans.linen",
    "convtrans.nnx",
    "convtrans.optim",
    "convtrans.interop",
)

PACKAGE_DIR = Path(convtrans.__file__).resolve().parent

# Typing names that modules bind by `from __future__ import annotations` and `if TYPE_CHECKING:`.
ALLOWED_TYPING_NAMES = frozenset({"annotations", "TYPE_CHECKING"})
TYPING_MODULES = frozenset({"typing", "typing_extensions", "collections.abc", "types"})


def _module(name: str) -> types.ModuleType:
    return importlib.import_module(name)


def _public_objects() -> set[int]:
    """The ids of the objects that the public modules export."""
    return {
        id(getattr(_module(module_name), name))
        for module_name in PUBLIC_MODULES
        for name in _module(module_name).__all__
    }


def _is_typing_construct(value: object) -> bool:
    if isinstance(value, (typing.TypeVar, typing.ParamSpec, types.GenericAlias, types.UnionType)):
        return True
    return getattr(value, "__module__", None) in TYPING_MODULES or type(value).__module__ in TYPING_MODULES


def _own_function(function: typing.Callable[..., object]) -> bool:
    """A function written in this package (not one a decorator such as dataclass generated)."""
    code = getattr(inspect.unwrap(function), "__code__", None)
    return code is not None and Path(code.co_filename).resolve().is_relative_to(PACKAGE_DIR)


def _public_callables(module_name: str) -> list[tuple[str, typing.Callable[..., object]]]:
    """(qualified name, function) for the module's public functions and its public classes'
    own methods and properties."""
    module = _module(module_name)
    found: list[tuple[str, typing.Callable[..., object]]] = []
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isfunction(value) and _own_function(value):
            found.append((f"{module_name}.{name}", value))
        elif inspect.isclass(value):
            for klass in value.__mro__:
                if not klass.__module__.startswith("convtrans"):
                    continue
                for attribute, member in vars(klass).items():
                    if attribute.startswith("_") and not (attribute.startswith("__") and attribute.endswith("__")):
                        continue
                    if isinstance(member, (classmethod, staticmethod)):
                        member = member.__func__
                    elif isinstance(member, property):
                        member = member.fget
                    if inspect.isfunction(member) and _own_function(member):
                        found.append((f"{module_name}.{name}.{attribute} ({klass.__qualname__})", member))
    return found


CALLABLES = [entry for module_name in PUBLIC_MODULES for entry in _public_callables(module_name)]


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_name_in_all_exists_once(module_name):
    module = _module(module_name)
    assert len(set(module.__all__)) == len(module.__all__), f"{module_name}.__all__ repeats a name"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{module_name}.__all__ names what the module lacks: {missing}"


def test_the_public_surface_has_callables_to_check():
    assert len(CALLABLES) > 100


@pytest.mark.parametrize("qualified, function", CALLABLES, ids=[q for q, _ in CALLABLES])
def test_public_callables_annotate_every_parameter_and_the_return(qualified, function):
    signature = inspect.signature(function)
    hints = typing.get_type_hints(function)  # raises for an annotation that does not resolve
    parameters = [p for i, p in enumerate(signature.parameters.values()) if not (i == 0 and p.name in ("self", "cls"))]
    unannotated = [p.name for p in parameters if p.name not in hints]
    assert not unannotated, f"{qualified}: parameters without annotation: {unannotated}"
    assert "return" in hints, f"{qualified}: no return annotation"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_classes_field_annotations_resolve(module_name):
    module = _module(module_name)
    for name in module.__all__:
        value = getattr(module, name)
        if not inspect.isclass(value):
            continue
        for klass in value.__mro__:
            if not klass.__module__.startswith("convtrans"):
                continue
            namespace = vars(sys.modules[klass.__module__])
            for field, annotation in vars(klass).get("__annotations__", {}).items():
                if isinstance(annotation, str):
                    try:
                        eval(annotation, dict(namespace), {klass.__name__: klass})
                    except Exception as error:
                        pytest.fail(
                            f"{module_name}.{name}: {klass.__qualname__}.{field}: {annotation!r} "
                            f"does not resolve ({type(error).__name__}: {error})"
                        )
        if dataclasses.is_dataclass(value):
            assert all(f.type is not dataclasses.MISSING for f in dataclasses.fields(value))


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_no_public_name_outside_all(module_name):
    module = _module(module_name)
    exported = _public_objects()
    stray = []
    for name, value in vars(module).items():
        if name.startswith("_") or name in module.__all__ or name in ALLOWED_TYPING_NAMES:
            continue
        if isinstance(value, types.ModuleType) or _is_typing_construct(value):
            continue
        if id(value) in exported:
            continue  # a public object of another public module, used here
        stray.append(name)
    assert not stray, (
        f"{module_name} has public names outside __all__: {stray}; add them to __all__ "
        "or give them a leading underscore"
    )

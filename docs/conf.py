"""Sphinx configuration of convtrans's documentation site (``make docs``).

Strict by design: the build runs as ``sphinx-build -W --keep-going -n``, so every warning,
including every reference that does not resolve, fails it. Only these references are let
through, each deliberately:

- references to other packages (JAX, flax, optax, NumPy, Keras, PyTorch, the standard library),
  whose inventories are not fetched (the build is offline): ``nitpick_ignore_regex`` below names
  those packages and Python's builtins, and nothing under ``convtrans``;
- type annotations in signatures that name convtrans's private types (``convtrans._src...`` or an
  underscored name): a public object's signature may mention a private type alias, type variable
  or protocol. ``_annotation_targets`` links such a name to the public name of the same object
  where there is one, prints it as plain text where the private object exists, and leaves a name
  that exists nowhere to fail the build. Pieces of annotations that are not names at all (flax
  keeps its generated ``__init__``'s annotations as text) print as text.

Docstring text gets no such help: a ``:func:``, ``:class:``, ``:mod:`` ... that names a convtrans
object the reference does not document fails (a private path of a documented object, such as
``convtrans._src.plan.Plan``, resolves to its public entry through autodoc's canonical names).
"""

from __future__ import annotations

import importlib
import os
import re
import sys

from docutils import nodes
from sphinx import addnodes

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
sys.path.insert(0, ROOT)
os.environ.setdefault("KERAS_BACKEND", "jax")

import convtrans  # noqa: E402

project = "convtrans"
author = "convtrans contributors"
copyright = "convtrans contributors"
release = version = convtrans.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
templates_path: list[str] = []

html_theme = "furo"
html_title = f"convtrans {release}"
html_static_path: list[str] = []

# The reST roles of the docstrings (:func:, :class:, ...) resolve natively; Google sections
# (Args:, Returns:, Raises:, Attributes:) go through napoleon.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True
autodoc_mock_imports: list[str] = []
python_use_unqualified_type_names = True
add_module_names = False

# Markdown pages: heading anchors make links such as design.md#nan-and-inf resolve.
myst_heading_anchors = 4

nitpicky = True
_EXTERNAL_PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "numpy",
    "np",
    "jnp",
    "keras",
    "tf_keras",
    "torch",
    "orbax",
    "scipy",
    "ml_dtypes",
    "chex",
    "jaxtyping",
    "typing",
    "typing_extensions",
    "collections",
    "types",
    "functools",
    "fractions",
    "dataclasses",
    "builtins",
    "enum",
    "abc",
    "os",
    "pathlib",
)
_BUILTINS = (
    "int",
    "float",
    "complex",
    "str",
    "bytes",
    "bool",
    "dict",
    "list",
    "tuple",
    "set",
    "frozenset",
    "object",
    "type",
    "callable",
    "None",
    "Ellipsis",
    "NotImplemented",
    "TypeError",
    "ValueError",
    "RuntimeError",
    "KeyError",
    "Exception",
)
nitpick_ignore_regex = [
    (r"py:.*", r"({})(\..+)?".format("|".join(_EXTERNAL_PACKAGES))),
    (r"py:.*", r"({})".format("|".join(_BUILTINS))),
]


def _public_names() -> dict[int, str]:
    """``id(object) -> public qualified name`` for every name in a public module's ``__all__``."""
    found: dict[int, str] = {}
    modules = (
        ["convtrans"]
        + [f"convtrans.{name}" for name in convtrans._LAZY_MODULES]
        + ["convtrans.activations", "convtrans.constraints", "convtrans.initializers", "convtrans.regularizers"]
    )
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            if isinstance(value, (type, type(len))) or callable(value):
                # The first public module that lists an object names it (convtrans.Conv1D is
                # linen's, documented as convtrans.linen.Conv1D).
                found.setdefault(id(value), f"{module_name}.{name}")
    return found


_PUBLIC: dict[int, str] = {}


def _private_object(target: str):
    """The object a dotted ``convtrans._src...`` name, or a bare name defined in some convtrans
    module (an annotation Sphinx could not qualify), denotes; None if there is none."""
    candidates = [target] if target.startswith("convtrans.") else []
    if "." not in target:
        import pkgutil

        candidates += [f"{info.name}.{target}" for info in pkgutil.walk_packages(convtrans.__path__, "convtrans.")]
    for candidate in candidates:
        module_name, _, attribute = candidate.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, attribute):
            return getattr(module, attribute)
    return None


def _in_signature(node) -> bool:
    """Whether ``node`` is part of an object's signature (its annotations), not of its docstring."""
    parent = node.parent
    while parent is not None:
        if isinstance(parent, addnodes.desc_signature):
            return True
        parent = parent.parent
    return False


def _annotation_targets(app, env, node, contnode):
    """Resolves the private convtrans types that signatures mention (see the module docstring)."""
    if node.get("refdomain") != "py" or not _in_signature(node):
        return None
    target = node.get("reftarget", "")
    if not re.fullmatch(r"[A-Za-z_][\w.]*", target):
        # Not a name: the piece of an annotation Sphinx could not parse (flax's generated
        # dataclass __init__ holds annotations as text, e.g. "str | int | tuple[int, int]").
        return nodes.literal(text=target)
    private = target.startswith("convtrans.") and any(part.startswith("_") for part in target.split("."))
    if not (private or "." not in target):
        return None
    obj = _private_object(target)
    if obj is None:
        return None
    if not _PUBLIC:
        _PUBLIC.update(_public_names())
    public = _PUBLIC.get(id(obj))
    if public is not None:
        domain = env.get_domain("py")
        resolved = domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], public, node, contnode)
        if resolved is not None:
            return resolved
    return nodes.literal(text=target.rpartition(".")[2])


class _Source:
    """A default value shown as the source text that names it (``jax.numpy.float32``)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _class_signature(app, what, name, obj, options, signature, return_annotation):
    """The signature users call a class with, where autodoc's is not it: flax.nnx's modules are
    made through their metaclass (autodoc finds ``(*args, **kwargs)``), and flax.linen's generated
    ``__init__`` ends in ``parent``, which users never pass and whose default is a sentinel
    object. Defaults that are classes (``param_dtype=jnp.float32``) print by name."""
    if what != "class" or not signature or "__init__" not in vars(obj):
        return None
    import flax.linen as nn
    from sphinx.util.inspect import signature as signature_of
    from sphinx.util.inspect import stringify_signature

    linen = issubclass(obj, nn.Module)
    if not (linen or signature.startswith("(*args")):
        return None
    own = signature_of(obj.__init__, bound_method=True)
    parameters = []
    for parameter in own.parameters.values():
        if linen and parameter.name == "parent":
            continue
        if isinstance(parameter.default, type) and parameter.default is not parameter.empty:
            parameter = parameter.replace(
                default=_Source(f"{parameter.default.__module__}.{parameter.default.__qualname__}")
            )
        parameters.append(parameter)
    own = own.replace(parameters=parameters)
    return stringify_signature(own, show_return_annotation=False, unqualified_typehints=True), None


def setup(app):
    app.connect("missing-reference", _annotation_targets)
    app.connect("autodoc-process-signature", _class_signature)

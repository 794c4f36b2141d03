"""The documentation site's sources are complete: every public name has a reference entry and a
docstring, and the Markdown pages' relative links lead somewhere. No Sphinx needed (``make docs``
builds the site itself, strictly)."""

import dataclasses
import importlib
import inspect
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).parent.parent
DOCS = ROOT / "docs"
PUBLIC_MODULES = ["convtrans"] + [
    f"convtrans.{name}"
    for name in (
        "activations",
        "constraints",
        "initializers",
        "regularizers",
        "streaming",
        "linen",
        "nnx",
        "optim",
        "interop",
    )
]
# reST directives that document a name, and the Markdown/MyST-free forms they take in the pages.
DIRECTIVE = re.compile(
    r"^\.\. (?:auto(?:function|class|data|exception)|py:(?:function|class|data|"
    r"exception|attribute)):: +([\w.]+)",
    re.M,
)
MODULE_ROLE = re.compile(r":mod:`([\w.]+)`")


def public_names(module_name):
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:  # a module without __all__: its public attributes defined in convtrans
        names = [
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and not inspect.ismodule(value)
            and (getattr(value, "__module__", "") or "").startswith("convtrans")
        ]
    return module, list(names)


def api_page(module_name):
    return DOCS / "api" / f"{module_name.rsplit('.', 1)[-1]}.rst"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_has_a_reference_entry(module_name):
    module, names = public_names(module_name)
    page = api_page(module_name)
    assert page.exists(), f"{module_name} has no API page {page.relative_to(ROOT)}"
    text = page.read_text()
    assert f".. automodule:: {module_name}\n" in text, f"{page.name} does not document the module itself"
    documented = set()
    for target in DIRECTIVE.findall(text):
        documented.add(
            target.rsplit(".", 1)[-1] if target.rsplit(".", 1)[0] == module_name or "." not in target else target
        )
    documented |= {
        target.rsplit(".", 1)[-1] for target in MODULE_ROLE.findall(text) if target.rsplit(".", 1)[0] == module_name
    }
    missing = []
    for name in names:
        value = getattr(module, name)
        if inspect.ismodule(value):
            if value.__name__ not in MODULE_ROLE.findall(text) and name not in documented:
                missing.append(name)
        elif name not in documented:
            missing.append(name)
    assert not missing, f"{page.relative_to(ROOT)} lacks entries for {missing}"


def _own_doc(obj):
    """``obj``'s docstring, or '' where there is only the one dataclasses generate (its signature)."""
    doc = inspect.getdoc(obj) or ""
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj) and doc.startswith(f"{obj.__name__}("):
        return ""
    return doc.strip()


def _public_methods(cls):
    """Public methods and properties ``cls`` defines or inherits from convtrans classes."""
    for klass in cls.__mro__:
        if not (klass.__module__ or "").startswith("convtrans"):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            if isinstance(value, (classmethod, staticmethod)):
                yield name, value.__func__
            elif isinstance(value, property) or inspect.isfunction(value):
                yield name, getattr(cls, name) if inspect.isfunction(value) else value


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_callable_and_class_has_a_docstring(module_name):
    module, names = public_names(module_name)
    assert (module.__doc__ or "").strip(), f"{module_name} has no module docstring"
    undocumented = []
    for name in names:
        value = getattr(module, name)
        if inspect.ismodule(value) or not (inspect.isclass(value) or inspect.isfunction(value)):
            continue  # data (documented in the API page itself) and typing aliases
        if not _own_doc(value):
            undocumented.append(name)
        if inspect.isclass(value):
            undocumented += [
                f"{name}.{method}"
                for method, member in _public_methods(value)
                if not (inspect.getdoc(member) or "").strip()
            ]
    assert not undocumented, f"{module_name}: no docstring for {sorted(set(undocumented))}"


MARKDOWN_PAGES = sorted(DOCS.glob("*.md")) + sorted(DOCS.glob("guide/*.md")) + [ROOT / "README.md"]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading):
    """The anchor GitHub and MyST give a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path):
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {_slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


@pytest.mark.parametrize("page", MARKDOWN_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_existing_files_and_headings(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path_part, _, anchor = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken relative links {broken}"


def test_the_site_lists_every_api_page_and_guide_page():
    index = (DOCS / "api" / "index.rst").read_text()
    for module_name in PUBLIC_MODULES:
        assert f"\n   {api_page(module_name).stem}\n" in index, f"api/index.rst does not list {module_name}"
    guide = (DOCS / "guide" / "index.md").read_text()
    for page in sorted(DOCS.glob("guide/*.md")):
        if page.stem != "index":
            assert f"\n{page.stem}\n" in guide, f"guide/index.md does not list {page.name}"

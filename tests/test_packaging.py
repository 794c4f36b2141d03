"""What a downstream project gets: the built wheel and sdist carry the license, the typing marker and,
for the sdist, what its own test suite needs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

import convtrans as ct

ROOT = Path(__file__).resolve().parent.parent

# One worker runs this file (make test uses --dist loadgroup): builds of the wheel and the sdist
# write into the source tree (egg-info, build/), and two at once on two workers can collide.
pytestmark = pytest.mark.xdist_group("packaging")


def test_this_file_runs_as_one_xdist_group(request):
    # Guards the builds below against running on two workers at once: under `--dist loadgroup`,
    # pytest-xdist marks a grouped test's node id with its group, and schedules by that mark (its
    # workers, which run the tests, carry the setting as the `loadgroup` option).
    if getattr(request.config.option, "loadgroup", False):
        assert request.node.nodeid.endswith("@packaging"), request.node.nodeid


def _build(kind: str, out: Path) -> Path:
    code = f"import sys; from setuptools import build_meta; build_meta.build_{kind}(sys.argv[1])"
    result = subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"building the {kind} failed:\n{result.stderr[-4000:]}"
    (built,) = out.glob("*.whl" if kind == "wheel" else "*.tar.gz")
    return built


def test_the_wheel_carries_the_license_the_typing_marker_and_the_version(tmp_path):
    wheel = _build("wheel", tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "convtrans/py.typed" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert wheel.name.startswith(f"convtrans-{ct.__version__}-")


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    return _build("sdist", tmp_path_factory.mktemp("sdist"))


def _sdist_names(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as archive:
        return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}


def test_the_sdist_carries_what_its_test_suite_needs(sdist):
    names = _sdist_names(sdist)
    needed = {
        "LICENSE",
        "tests/__init__.py",
        "tests/conftest.py",
        "tests/numpy_reference.py",
        "examples/__init__.py",
        "benchmarks/run.py",
        "convtrans/py.typed",
        ".ci/lowest_constraints.py",
        "pyproject.toml",
    }
    assert needed <= names, needed - names


def test_the_sdist_holds_every_python_file_of_the_package_its_tests_examples_and_benchmarks(sdist):
    sources = {
        str(path.relative_to(ROOT))
        for folder in ("convtrans", "tests", "examples", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    missing = sources - _sdist_names(sdist)
    assert not missing, sorted(missing)


def test_the_unpacked_sdist_collects_its_whole_suite_and_passes_a_test_file_against_its_own_package(sdist, tmp_path):
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    (root,) = (tmp_path / "unpacked").iterdir()
    imported = subprocess.run(
        [sys.executable, "-c", "import convtrans; print(convtrans.__file__)"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert Path(imported).is_relative_to(root), imported
    pytest_in_sdist = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    collected = subprocess.run([*pytest_in_sdist, "--collect-only", "tests"], cwd=root, capture_output=True, text=True)
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    assert "error" not in collected.stdout.lower().splitlines()[-1], collected.stdout[-3000:]
    ran = subprocess.run([*pytest_in_sdist, "tests/test_smoke.py"], cwd=root, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]


def _lowest_constraints_module():
    spec = importlib.util.spec_from_file_location("lowest_constraints", ROOT / ".ci" / "lowest_constraints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_dependency_of_every_extra_has_the_lower_bound_the_lowest_versions_step_installs():
    lowest = _lowest_constraints_module()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = lowest.lowest_constraints(list(project["optional-dependencies"]))
    assert pins["flax"] == "0.12.6" and pins["jax"] == "0.8.1" and pins["torch"] == "2.13.0"
    assert project["requires-python"] == ">=3.11"
    assert sys.version_info >= (3, 11)


@pytest.mark.parametrize("requirement", ["newlib", "newlib<2", "newlib>=1,>=2"])
def test_a_requirement_without_exactly_one_lower_bound_is_refused(tmp_path, requirement):
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\ndependencies = ["{requirement}"]\n[project.optional-dependencies]\ntest = []\n'
    )
    with pytest.raises(ValueError, match="newlib"):
        _lowest_constraints_module().lowest_constraints([], tmp_path / "pyproject.toml")


def test_an_unknown_extra_is_refused_naming_the_extras_there_are():
    with pytest.raises(ValueError, match=r"no extra named \['tset'\].*'test'"):
        _lowest_constraints_module().lowest_constraints(["tset"])

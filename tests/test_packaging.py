"""What a downstream project gets: the built wheel and sdist carry the license, the typing marker and,
for the sdist, what its own test suite needs."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import convtrans as ct

ROOT = Path(__file__).resolve().parent.parent


def _build(kind: str, out: Path) -> Path:
    code = f"import sys; from setuptools import build_meta; build_meta.build_{kind}(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, check=True, capture_output=True)
    (built,) = out.glob("*.whl" if kind == "wheel" else "*.tar.gz")
    return built


def test_the_wheel_carries_the_license_the_typing_marker_and_the_version(tmp_path):
    wheel = _build("wheel", tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "convtrans/py.typed" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert wheel.name.startswith(f"convtrans-{ct.__version__}-")


def test_the_sdist_carries_what_its_test_suite_needs(tmp_path):
    names = {name.split("/", 1)[1] for name in tarfile.open(_build("sdist", tmp_path)).getnames() if "/" in name}
    needed = {"LICENSE", "tests/__init__.py", "tests/conftest.py", "tests/numpy_reference.py", "examples/__init__.py",
              "benchmarks/run.py", "convtrans/py.typed"}
    assert needed <= names, needed - names

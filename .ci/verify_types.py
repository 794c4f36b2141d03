"""Fail when ``pyright --verifytypes convtrans`` scores the public API's type completeness below a floor.

    python .ci/verify_types.py [--floor 0.95]

pyright only finds a package for --verifytypes through an import path, not in the folder it is run
from, so it runs in a scratch folder with this checkout first on PYTHONPATH. Types that come from
jax, flax and optax are not counted (--ignoreexternal): their completeness is theirs to fix.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def completeness(package: str = "convtrans") -> dict:
    """pyright's ``typeCompleteness`` report for ``package`` as found in this checkout."""
    pyright = shutil.which("pyright", path=str(Path(sys.executable).parent)) or shutil.which("pyright")
    if pyright is None:
        raise SystemExit("pyright is not installed: pip install -e '.[lint]'")
    # This interpreter's folder first on PATH: pyright then resolves flax's classes through it (with
    # --pythonpath alone it finds the packages but not flax's Module bases).
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    with tempfile.TemporaryDirectory() as scratch:
        done = subprocess.run(
            [pyright, "--verifytypes", package, "--ignoreexternal", "--outputjson"],
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
        )
    try:
        report = json.loads(done.stdout)["typeCompleteness"]
    except (json.JSONDecodeError, KeyError):
        raise SystemExit(f"pyright gave no report:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}") from None
    found = Path(report.get("moduleRootDirectory") or report.get("packageRootDirectory") or "")
    if not found.is_relative_to(ROOT):
        raise SystemExit(f"pyright analysed {package} at {found!s}, not this checkout ({ROOT})")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--floor", type=float, default=0.95, help="lowest completeness score accepted (0 to 1)")
    floor = parser.parse_args().floor
    report = completeness()
    score = report["completenessScore"]
    for symbol in report.get("symbols", []):
        if not symbol.get("isTypeKnown", True) and symbol.get("isExported", False):
            for diagnostic in symbol.get("diagnostics", []):
                print(f"{symbol['name']}: {diagnostic['message']}")
    print(f"type completeness of the public API: {score:.1%} (floor {floor:.0%})")
    if score < floor:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

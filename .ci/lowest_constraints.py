"""Print pip constraints pinning each dependency of pyproject.toml to its declared lower bound.

    python .ci/lowest_constraints.py test example > lowest.txt
    pip install -c lowest.txt -e ".[test,example]"

The runtime dependencies are always pinned; the extras named on the command line are pinned too.
Each requirement must carry a lower bound (``>=`` or ``==``), so a requirement added without one
fails here instead of going untested. Dependencies of dependencies are left to the resolver, which
then checks the declared bounds the way a user's install meets them ("lowest direct").
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
# name, optional [extras], then the specifier list, up to an environment marker.
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*)")


def lower_bound(requirement: str) -> tuple[str, str]:
    """``(name, version)`` of a requirement's ``>=`` or ``==`` clause; ValueError when it has neither."""
    match = REQUIREMENT.match(requirement)
    if match is None:
        raise ValueError(f"cannot read the requirement {requirement!r}")
    name, _, specifiers = match.groups()
    bounds = [clause.strip()[2:].strip() for clause in specifiers.split(",") if clause.strip().startswith((">=", "=="))]
    if len(bounds) != 1:
        raise ValueError(
            f"the requirement {requirement!r} needs exactly one lower bound (>= or ==), found {len(bounds)}"
        )
    return name, bounds[0]


def lowest_constraints(extras: list[str], pyproject: Path = PYPROJECT) -> dict[str, str]:
    """Package name -> lowest allowed version, for the runtime dependencies and ``extras``."""
    project = tomllib.loads(pyproject.read_text())["project"]
    unknown = sorted(set(extras) - set(project["optional-dependencies"]))
    if unknown:
        raise ValueError(
            f"no extra named {unknown} in {pyproject.name}; it has {sorted(project['optional-dependencies'])}"
        )
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    pins: dict[str, str] = {}
    for requirement in requirements:
        name, version = lower_bound(requirement)
        key = name.lower().replace("_", "-")
        if pins.setdefault(key, version) != version:
            raise ValueError(f"{name} is bounded below by both {pins[key]} and {version}")
    return pins


if __name__ == "__main__":
    for name, version in lowest_constraints(sys.argv[1:]).items():
        print(f"{name}=={version}")

"""Runs cases of tests/fuzz_cases.py for tests/test_fuzz.py, in a process of its own.

``python -m tests.fuzz_child`` (from the repository root) limits its address space to
``CONVTRANS_FUZZ_MEMORY`` bytes before importing anything heavy, prints ``READY``, then reads case
names from stdin, one a line. For each it prints ``START <name>`` and, once the case is done,
``RESULT <json>`` (each line flushed): the parent knows which case was running if the process
aborts or hangs. The JSON holds ``status`` (``returned``, ``wrong`` when the case's check refused
the result, or ``raised``), the exception's type, its bases and message, a summary of the result,
and the seconds the case took.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback


def _limit_memory() -> None:
    limit = int(os.environ.get("CONVTRANS_FUZZ_MEMORY", 4 << 30))
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _summary(value, depth=0):
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{type(value).__name__}{tuple(value.shape)} {value.dtype}"
    if isinstance(value, (tuple, list)) and depth < 2:
        inner = ", ".join(_summary(v, depth + 1) for v in list(value)[:6])
        return f"({inner}{', ...' if len(value) > 6 else ''})"
    if isinstance(value, dict) and depth < 2:
        return "{" + ", ".join(f"{k!r}: {_summary(v, depth + 1)}" for k, v in list(value.items())[:6]) + "}"
    text = repr(value)
    return text if len(text) < 200 else text[:200] + "..."


def _block(value) -> None:
    import jax

    try:
        leaves = jax.tree.leaves(value)
    except Exception:
        return
    for leaf in leaves:
        if callable(getattr(leaf, "block_until_ready", None)):
            leaf.block_until_ready()


def _run(case) -> dict:
    start = time.monotonic()
    try:
        value = case.call()
        _block(value)  # errors of asynchronous dispatch (e.g. out of memory) belong to the case
    except BaseException as error:
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        return {
            "status": "raised",
            "type": f"{type(error).__module__}.{type(error).__qualname__}",
            "bases": [cls.__name__ for cls in type(error).__mro__],
            "message": str(error)[:4000],
            "where": "".join(traceback.format_tb(error.__traceback__)[-3:])[-2000:],
            "seconds": time.monotonic() - start,
        }
    result = {"status": "returned", "summary": _summary(value), "seconds": time.monotonic() - start}
    if case.check is not None:
        try:
            case.check(value)
        except BaseException as error:
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise
            result.update(status="wrong", detail=f"{type(error).__name__}: {error}"[:4000])
    return result


def main() -> None:
    _limit_memory()
    from tests import fuzz_cases

    print("READY", flush=True)
    for line in sys.stdin:
        name = line.strip()
        if not name:
            continue
        print(f"START {name}", flush=True)
        case = fuzz_cases.CASES.get(name)
        if case is None:
            result = {"status": "unknown", "seconds": 0.0}
        else:
            result = _run(case)
        result["name"] = name
        print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

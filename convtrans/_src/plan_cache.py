"""Where tuned plans are kept: in memory for the process, and on disk for the next one.

A tuned plan is only as good as the machine and the software it was timed on, so every entry lives
in a file of one *environment* (:func:`environment`: platform, device kind, for CPUs the processor
model and the cores this process may use, jax, jaxlib and convtrans versions, ``XLA_FLAGS``), and
within it under the layer's *signature* (:func:`layer_signature`: the convolution's fields, the
input's shape and dtype, the precision). Another environment never reads it.

Files are JSON, written atomically (a temporary file renamed over the old one) after merging with
what is on disk at that moment, so that processes tuning different layers side by side keep each
other's entries. A file that cannot be read is ignored with a warning and rewritten on the next
save; a folder that cannot be written to leaves the plans in memory, with a warning.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import os
import platform as platform_module
import tempfile
import threading
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax

from convtrans._src.plan import Plan
from convtrans._src.version import __version__

CACHE_DIR_VARIABLE = "CONVTRANS_CACHE_DIR"
# Raised whenever the meaning of a stored entry changes; files of another format are not read.
FORMAT = 1
# The convolution's own fields: the rest of a config (initializers, activation, bias,
# regularizers, constraints) does not change what is timed.
SIGNATURE_FIELDS = (
    "filters",
    "kernel_size",
    "strides",
    "padding",
    "output_padding",
    "dilation_rate",
    "groups",
    "data_format",
)


def default_cache_dir() -> str:
    """``$CONVTRANS_CACHE_DIR``, else ``$XDG_CACHE_HOME/convtrans``, else ``~/.cache/convtrans``."""
    chosen = os.environ.get(CACHE_DIR_VARIABLE)
    if chosen:
        return os.path.expanduser(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "convtrans")


def _processor_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform_module.processor() or platform_module.machine()


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def environment(platform: str) -> dict[str, Any]:
    """What a timing on ``platform``'s first device depends on, besides the layer itself."""
    return dict(_environment(platform))


@functools.cache
def _environment(platform: str) -> dict[str, Any]:
    device = jax.devices(platform)[0]
    described: dict[str, Any] = {
        "platform": device.platform,
        "device_kind": device.device_kind,
        "jax": jax.__version__,
        "jaxlib": importlib.metadata.version("jaxlib"),
        "convtrans": __version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    if device.platform == "cpu":
        # Every CPU's device kind is "cpu": the processor and the cores say which one it is.
        described["processor"] = _processor_model()
        described["cores"] = _usable_cores()
    return described


def layer_signature(config: Any, shape: tuple[int, ...], dtype: Any, precision: Any) -> str:
    """A text naming what a tuned plan was timed for: the convolution's fields, the rank-3 input
    shape, its dtype and the precision."""
    fields = " ".join(f"{name}={getattr(config, name)!r}" for name in SIGNATURE_FIELDS)
    return f"{fields} x={tuple(int(n) for n in shape)} dtype={jax.numpy.dtype(dtype).name} precision={precision}"


class TunedPlan(NamedTuple):
    """A plan chosen by timing, with the timings behind the choice.

    Attributes:
      plan (convtrans.Plan): the plan that runs.
      static_plan (convtrans.Plan): the plan :func:`convtrans.plan` gives without tuning.
      forward_ms: median milliseconds of the forward pass per candidate (a plan's
        ``forward`` and ``correlation``, as ``"forward/correlation"``).
      forward_backward_ms: median milliseconds of the forward and backward passes per candidate
        gradient pair (``"input_gradient/kernel_gradient"``), with the chosen forward.
    """

    plan: Plan
    static_plan: Plan
    forward_ms: Mapping[str, float]
    forward_backward_ms: Mapping[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": dataclasses.asdict(self.plan),
            "static_plan": dataclasses.asdict(self.static_plan),
            "forward_ms": dict(self.forward_ms),
            "forward_backward_ms": dict(self.forward_backward_ms),
        }

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> TunedPlan:
        return cls(
            Plan(**entry["plan"]),
            Plan(**entry["static_plan"]),
            {str(k): float(v) for k, v in entry["forward_ms"].items()},
            {str(k): float(v) for k, v in entry["forward_backward_ms"].items()},
        )


def cache_file(cache_dir: str, described: Mapping[str, Any]) -> str:
    """The file of one environment in ``cache_dir``: named by its platform and device kind (to be
    found by eye) and a digest of the whole environment (to be unique)."""
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]
    kind = "".join(c if c.isalnum() else "-" for c in str(described["device_kind"]).lower()).strip("-")
    return os.path.join(cache_dir, f"plans-{described['platform']}-{kind}-{digest}.json")


def _read(path: str, described: Mapping[str, Any]) -> dict[str, TunedPlan]:
    try:
        with open(path) as f:
            document = json.load(f)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except (OSError, ValueError) as error:
        warnings.warn(f"convtrans: ignoring the plan cache {path}, which cannot be read ({error}).", stacklevel=3)
        return {}
    if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("environment") != described:
        return {}
    plans = {}
    for signature, entry in document.get("plans", {}).items():
        try:
            plans[signature] = TunedPlan.from_json(entry)
        except (KeyError, TypeError, ValueError, AttributeError):
            warnings.warn(f"convtrans: ignoring a malformed entry of the plan cache {path}: {signature}", stacklevel=3)
    return plans


def _write(path: str, described: Mapping[str, Any], plans: Mapping[str, TunedPlan]) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    document = {
        "format": FORMAT,
        "environment": dict(described),
        "plans": {signature: plans[signature].to_json() for signature in sorted(plans)},
    }
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".plans-", suffix=".json")
    try:
        with os.fdopen(handle, "w") as f:
            json.dump(document, f, indent=1, sort_keys=True)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


class PlanCache:
    """The tuned plans of every environment this process has seen: loaded from ``cache_dir`` on
    first use, saved there after each new entry. ``cache_dir`` None reads
    :func:`default_cache_dir` at each use, so that ``CONVTRANS_CACHE_DIR`` may be set late."""

    def __init__(self, cache_dir: str | None = None):
        self._cache_dir = cache_dir
        self._plans: dict[str, dict[str, TunedPlan]] = {}  # file -> signature -> entry
        self._lock = threading.Lock()

    @property
    def cache_dir(self) -> str:
        return self._cache_dir if self._cache_dir is not None else default_cache_dir()

    def _entries(self, path: str, described: Mapping[str, Any]) -> dict[str, TunedPlan]:
        if path not in self._plans:
            self._plans[path] = _read(path, described)
        return self._plans[path]

    def get(self, described: Mapping[str, Any], signature: str) -> TunedPlan | None:
        """The stored plan of ``signature`` in the environment ``described``, or None."""
        path = cache_file(self.cache_dir, described)
        with self._lock:
            return self._entries(path, described).get(signature)

    def entries(self, described: Mapping[str, Any]) -> dict[str, TunedPlan]:
        """Every stored plan of the environment ``described``, by signature."""
        path = cache_file(self.cache_dir, described)
        with self._lock:
            return dict(self._entries(path, described))

    def put(self, described: Mapping[str, Any], signature: str, tuned: TunedPlan) -> None:
        """Keeps ``tuned`` in memory and writes it to disk, merged with the file's entries."""
        path = cache_file(self.cache_dir, described)
        with self._lock:
            entries = self._entries(path, described)
            entries[signature] = tuned
            try:
                merged = {**_read(path, described), **entries}
                _write(path, described, merged)
                entries.update(merged)
            except OSError as error:
                warnings.warn(
                    f"convtrans: the tuned plan is kept in memory only; {path} cannot be written ({error}).",
                    stacklevel=3,
                )

    def forget(self) -> None:
        """Drops what is in memory (the files stay): the next use reads them again."""
        with self._lock:
            self._plans.clear()

    def clear(self, described: Mapping[str, Any]) -> str:
        """Deletes the environment's file and its entries in memory; returns the file's path."""
        path = cache_file(self.cache_dir, described)
        with self._lock:
            self._plans.pop(path, None)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        return path

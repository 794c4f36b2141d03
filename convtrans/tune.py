"""Autotuning ahead of time: time a model's transposed convolutions once, before it is used.

:func:`convtrans.autotune` tunes each layer the first time it is traced. This module pays that cost
up front (on the machine the model will run on) and shows what was chosen::

    python -m convtrans.tune my_project.models:tune_target

where ``tune_target()`` returns ``(fn, args)`` (or ``(fn, args, kwargs)``): ``fn(*args,
**kwargs)`` is traced once, as :func:`jax.eval_shape` traces it, and every transposed convolution
it meets is tuned and stored in the plan cache (``CONVTRANS_CACHE_DIR``, default
``~/.cache/convtrans``). ``args`` may be arrays or :class:`jax.ShapeDtypeStruct`\\ s; trace a
training step (a ``jax.grad`` of the loss) to tune the backward pass as it will run. A later
process with autotuning on (``convtrans.autotune(True)`` or ``CONVTRANS_AUTOTUNE=1``) reads the
plans and times nothing.

From Python: :func:`tune` (a function's layers), :func:`tune_layer` (one layer), :func:`lookup`
(the stored plan of a layer, timing nothing) and :func:`clear_cache`.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from convtrans._src import autotune as _autotune
from convtrans._src import plan_cache
from convtrans._src.api import _layer_shape, transposed_convolution
from convtrans._src.autotune import TuningRecord
from convtrans._src.config import Conv1DTransposeConfig
from convtrans._src.plan_cache import TunedPlan

__all__ = ["TunedPlan", "TuningRecord", "clear_cache", "format_records", "lookup", "main", "tune", "tune_layer"]


def tune(fn: Callable[..., Any], *args: Any, retune: bool = False, **kwargs: Any) -> list[TuningRecord]:
    """Tunes every transposed convolution ``fn(*args, **kwargs)`` runs, tracing it once.

    Args:
      fn: any function of arrays that calls convtrans's transposed convolutions (a model's apply,
        a training step); it is traced with :func:`jax.eval_shape`, so nothing of it runs except
        the timing of its layers.
      *args: its positional arguments, arrays or :class:`jax.ShapeDtypeStruct`.
      **kwargs: its keyword arguments, likewise.
      retune: time the layers again even when the cache has them (and store the new choice).

    Returns:
      one :class:`TuningRecord` per distinct layer signature met, in the order first met.
    """
    with _autotune.recording(retune=retune) as records:
        jax.eval_shape(fn, *args, **kwargs)
    unique: dict[str, TuningRecord] = {}
    for record in records:
        unique.setdefault(record.signature, record)
    return list(unique.values())


def _rank3(config: Conv1DTransposeConfig, x_shape: Sequence[int]) -> tuple[int, int, int]:
    _layer_shape(config, x_shape, "float32")  # checks the shape against the config
    return _autotune.rank3_shape(x_shape)


def tune_layer(
    config: Conv1DTransposeConfig,
    x_shape: Sequence[int],
    dtype: DTypeLike = "float32",
    precision: Any = None,
    *,
    retune: bool = False,
) -> TunedPlan:
    """The tuned plan of one layer on the default backend for inputs of ``x_shape`` (any rank >= 2,
    as :func:`convtrans.conv1d_transpose` takes them), timed now unless cached."""
    shape = _rank3(config, x_shape)
    x = jax.ShapeDtypeStruct(shape, jnp.dtype(dtype))
    kernel = jax.ShapeDtypeStruct(config.kernel_shape(shape[config.channel_axis]), jnp.dtype(dtype))
    convolution = functools.partial(transposed_convolution, config=config, precision=precision)
    return tune(convolution, x, kernel, retune=retune)[0].tuned


def lookup(
    config: Conv1DTransposeConfig, x_shape: Sequence[int], dtype: DTypeLike = "float32", precision: Any = None
) -> TunedPlan | None:
    """The stored plan of a layer on the default backend, or None; times nothing."""
    _rank3(config, x_shape)
    return _autotune.stored_plan(config, x_shape, dtype, precision)


def clear_cache() -> str:
    """Deletes the stored plans of this environment (default backend, versions); returns the file."""
    return _autotune.CACHE.clear(plan_cache.environment(jax.default_backend()))


# --- the command line ------------------------------------------------------------------------


def _load(target: str) -> Callable[[], Any]:
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise SystemExit(f"convtrans.tune: expected MODULE:FACTORY (e.g. my_models:tune_target), got {target!r}.")
    module = importlib.import_module(module_name)
    try:
        factory = getattr(module, attribute)
    except AttributeError:
        raise SystemExit(f"convtrans.tune: module {module_name!r} has no attribute {attribute!r}.") from None
    return factory


def _call_target(factory: Callable[[], Any]) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
    made = factory()
    if not isinstance(made, tuple) or len(made) not in (2, 3) or not callable(made[0]):
        raise SystemExit(
            f"convtrans.tune: the factory must return (fn, args) or (fn, args, kwargs), got {type(made).__name__}."
        )
    fn, args = made[0], tuple(made[1])
    kwargs = dict(made[2]) if len(made) == 3 else {}
    return fn, args, kwargs


def _fields(signature: str) -> str:
    """A signature without the fields at their defaults, for the table."""
    defaults = ("output_padding=None", "dilation_rate=1", "groups=1", "data_format='channels_last'", "precision=None")
    return " ".join(word for word in signature.split(" ") if word not in defaults)


def format_records(records: Sequence[TuningRecord]) -> str:
    """A table of tuned layers: the static and the tuned plan, and the speed-ups of the tuned
    parts over the static ones (forward; forward and backward)."""
    lines = []
    for record in records:
        tuned = record.tuned
        static, chosen = tuned.static_plan, tuned.plan

        def speedup(times: Any, static_label: str, chosen_label: str) -> str:
            if static_label in times and chosen_label in times:
                return f"{times[static_label] / times[chosen_label]:.2f}x"
            return "-"

        forward = speedup(
            tuned.forward_ms, f"{static.forward}/{static.correlation}", f"{chosen.forward}/{chosen.correlation}"
        )
        backward = speedup(
            tuned.forward_backward_ms,
            f"{static.input_gradient}/{static.kernel_gradient}",
            f"{chosen.input_gradient}/{chosen.kernel_gradient}",
        )
        lines += [
            f"{_fields(record.signature)}  [{'cached' if record.cached else 'timed now'}]",
            f"  static: {static}",
            f"  tuned:  {chosen}  (forward {forward}, forward+backward {backward} over the static parts)",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m convtrans.tune",
        description="Tune a model's transposed convolutions ahead of time and store the plans.",
    )
    parser.add_argument("target", nargs="?", help="MODULE:FACTORY; FACTORY() returns (fn, args) or (fn, args, kwargs)")
    parser.add_argument("--retune", action="store_true", help="time layers again even when the cache has them")
    parser.add_argument(
        "--cache-dir",
        help=f"where plans are stored (default: ${plan_cache.CACHE_DIR_VARIABLE}, else ~/.cache/convtrans)",
    )
    parser.add_argument("--list", action="store_true", help="print the stored plans of this environment and exit")
    parser.add_argument("--clear", action="store_true", help="delete the stored plans of this environment and exit")
    args = parser.parse_args(argv)
    if args.cache_dir:
        _autotune.CACHE = plan_cache.PlanCache(args.cache_dir)
    described = plan_cache.environment(jax.default_backend())
    where = plan_cache.cache_file(_autotune.CACHE.cache_dir, described)
    if args.clear:
        print(f"deleted {_autotune.CACHE.clear(described)}")
        return 0
    if args.list:
        entries = _autotune.CACHE.entries(described)
        print(f"{len(entries)} plans in {where}")
        print(format_records([TuningRecord(s, t, True) for s, t in sorted(entries.items())]))
        return 0
    if not args.target:
        parser.error("give MODULE:FACTORY, or --list or --clear")
    fn, fn_args, fn_kwargs = _call_target(_load(args.target))
    device = jax.devices()[0]
    print(f"tuning {args.target} on {device.platform} ({device.device_kind}); plans go to {where}", flush=True)
    records = tune(fn, *fn_args, retune=args.retune, **fn_kwargs)
    if not records:
        print("no transposed convolution was traced: nothing to tune.")
        return 0
    print(format_records(records))
    timed = sum(not record.cached for record in records)
    print(f"{len(records)} layers: {timed} timed now, {len(records) - timed} from the cache.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

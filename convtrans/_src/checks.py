"""Validators shared by the public entry points, each with its message written once.

Nothing here imports the config: checks of a config live beside it
(:func:`convtrans._src.config.check_config`).
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import resource
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

FLOATING_DTYPES = "float16, bfloat16, float32, float64"

# The largest size accepted for one axis or size argument. Real layers stay far below it (2**31
# samples are 12 hours at 48 kHz); far above it, products of sizes overflow XLA's 64-bit shape
# arithmetic, which aborts the interpreter instead of raising.
MAX_SIZE = 2**31 - 1


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (numpy's too) and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_symbolic(size: Any) -> bool:
    """Whether ``size`` is a symbolic dimension of :mod:`jax.export` (e.g. a batch ``b``)."""
    return jax.export.is_symbolic_dim(size)


def check_count(value: Any, argument: str, *, minimum: int | None = 1) -> int:
    """``value`` as an int; TypeError unless an integer, ValueError if below ``minimum`` (None:
    no bound) or above :data:`MAX_SIZE`."""
    if not is_int(value):
        raise TypeError(f"{argument} must be an integer, got {value!r} of type {type(value).__name__}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{argument} must be an integer >= {minimum}, got {value!r}.")
    check_size(value, argument)
    return int(value)


def check_size(value: int, what: str) -> None:
    """ValueError if the size ``value`` (an argument, or one derived from arguments that ``what``
    names) exceeds :data:`MAX_SIZE`."""
    if value > MAX_SIZE:
        raise ValueError(
            f"{what}={value} is larger than {MAX_SIZE} (2**31 - 1), the largest size convtrans accepts for one axis."
        )


def _format_bytes(size: int) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


@functools.cache
def _host_memory_bytes() -> int:
    """Physical memory, or the container's memory limit (cgroup v2) when that is smaller."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        with open("/sys/fs/cgroup/memory.max") as limit:
            text = limit.read().strip()
        if text.isdigit():
            total = min(total, int(text))
    except OSError:
        pass
    return total


def _address_space_left() -> int | None:
    """Bytes the process may still map under ``ulimit -v`` (None: unlimited)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/statm") as statm:
            mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        mapped = 0
    return max(soft - mapped, 0)


def memory_limit_bytes() -> tuple[int, str]:
    """The most one array can take here, and where that bound comes from: the accelerators'
    memory summed over devices (an array may be sharded over all of them), else the host's
    memory, container limit or ``ulimit -v``, whichever is least."""
    devices = jax.devices()
    stats = [device.memory_stats() for device in devices] if devices[0].platform != "cpu" else []
    if stats and all(stat and "bytes_limit" in stat for stat in stats):
        total = sum(stat["bytes_limit"] for stat in stats)
        return total, f"the memory of {len(devices)} {devices[0].platform} device(s)"
    limit, source = _host_memory_bytes(), "the host's memory"
    left = _address_space_left()
    if left is not None and left < limit:
        limit, source = left, "the address space left under ulimit -v"
    return limit, source


def check_allocation(arrays: Mapping[str, tuple[Any, ...]], dtype: Any, cause: str) -> None:
    """ValueError before the ``arrays`` (a name and a shape each, all of ``dtype``) are made, if
    together they could not be: more bytes than :func:`memory_limit_bytes`. ``cause`` names the
    arguments the shapes come from. Symbolic shapes are not checked."""
    shapes = {
        name: tuple(int(n) for n in shape) for name, shape in arrays.items() if not any(is_symbolic(n) for n in shape)
    }
    itemsize = jnp.dtype(dtype).itemsize
    sizes = {name: math.prod(shape) * itemsize for name, shape in shapes.items()}
    total = sum(sizes.values())
    if total < 2**26:  # 64 MiB: nothing to bound
        return
    limit, source = memory_limit_bytes()
    if total > limit:
        parts = " and ".join(
            f"{name} {shapes[name]}" + (f" ({_format_bytes(sizes[name])})" if len(shapes) > 1 else "")
            for name in shapes
        )
        raise ValueError(
            f"{parts} of {jnp.dtype(dtype).name} would take {_format_bytes(total)}, more "
            f"than {source} ({_format_bytes(limit)}); {cause}."
        )


def check_not_foreign(x: Any, argument: str) -> None:
    """TypeError for the array-likes JAX cannot take as they are: a torch tensor, or a
    ``jax.ShapeDtypeStruct`` (a shape without values)."""
    if type(x).__module__.split(".")[0] == "torch":
        raise TypeError(
            f"{argument} is a torch.Tensor; pass a JAX or NumPy array, e.g. "
            f"jnp.asarray({argument}.detach().cpu().numpy())."
        )
    if isinstance(x, jax.ShapeDtypeStruct):
        raise TypeError(
            f"{argument} is a jax.ShapeDtypeStruct, a shape without values; pass an "
            "array, or trace the call with jax.eval_shape."
        )


def check_array(x: Any, argument: str = "x") -> None:
    """TypeError unless ``x`` is an array (a JAX or NumPy one, or a tracer)."""
    check_not_foreign(x, argument)
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{argument} must be an array, got {type(x).__name__}.")


def floating_input(x: Any, argument: str = "x") -> jax.Array:
    """A module's input as a JAX array: nested lists are converted, anything else must be an array
    of a floating dtype (casting integer input, such as token ids or PCM codes, would hide the
    caller's bug)."""
    if isinstance(x, (list, tuple)):
        x = jnp.asarray(x)
    check_array(x, argument)
    check_floating(x.dtype, argument)
    return jnp.asarray(x)


_PRECISION_NAMES = ("default", "high", "highest", "bfloat16", "tensorfloat32", "float32")


def check_module_options(dtype: Any, param_dtype: Any, precision: Any, weight_norm: Any) -> None:
    """The options a layer module adds to its config, each refused by name when it cannot work."""
    if dtype is not None:
        floating_dtype(dtype, "dtype")
    floating_dtype(param_dtype, "param_dtype")
    algorithms = tuple(
        getattr(jax.lax, name) for name in ("DotAlgorithm", "DotAlgorithmPreset") if hasattr(jax.lax, name)
    )
    single = (precision,) if not isinstance(precision, (tuple, list)) else tuple(precision)
    if len(single) not in (1, 2) or not all(
        p is None
        or isinstance(p, (jax.lax.Precision, *algorithms))
        or (isinstance(p, str) and p.lower() in _PRECISION_NAMES)
        for p in single
    ):
        raise ValueError(
            f"precision={precision!r} is not a jax.lax precision; expected None, a "
            f"Precision or dot algorithm, one of {_PRECISION_NAMES} or a pair of them."
        )
    if not isinstance(weight_norm, (bool, np.bool_)):
        raise TypeError(f"weight_norm must be True or False, got {weight_norm!r}.")


def check_floating(dtype: Any, argument: str = "x") -> None:
    """TypeError unless ``dtype`` is a floating dtype (integer inputs are a caller's bug)."""
    if _supported_floating(dtype) is None:
        raise TypeError(
            f"{argument} must have a floating dtype ({FLOATING_DTYPES}), got {dtype}; "
            f"cast it first, e.g. {argument}.astype(jnp.float32)."
        )


def _supported_floating(dtype: Any) -> jnp.dtype | None:
    """``dtype`` resolved if it is one of :data:`FLOATING_DTYPES`, else None. (float8 and float4
    are floating too, but no convolution computes in them.)"""
    try:
        resolved = jnp.dtype(dtype) if dtype is not None else None
    except TypeError:
        return None
    if resolved is None or not jnp.issubdtype(resolved, jnp.floating) or resolved.itemsize < 2:
        return None
    return resolved


def floating_dtype(dtype: Any, argument: str = "dtype") -> jnp.dtype:
    """``dtype`` as a ``jnp.dtype``; TypeError unless it names a floating dtype."""
    resolved = _supported_floating(dtype)
    if resolved is None:
        try:
            shown = jnp.dtype(dtype).name if dtype is not None else repr(dtype)
        except TypeError:
            shown = repr(dtype)
        raise TypeError(f"{argument} must be a floating dtype ({FLOATING_DTYPES}), got {shown}.")
    return resolved


def check_params_mapping(params: Any) -> None:
    """TypeError unless ``params`` is a mapping, like ``{"kernel": ..., "bias": ...}``."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping {{'kernel': ..., 'bias': ...}}, got {type(params).__name__}.")


def check_floating_weight(value: Any, argument: str) -> None:
    """TypeError unless the weight ``value`` (an array) is floating."""
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise TypeError(f"{argument} must be floating, got dtype {value.dtype}.")


def check_input_rank(shape: tuple[Any, ...], data_format: str, argument: str = "x") -> None:
    """ValueError unless ``shape`` has rank >= 2: ``(..., steps, channels)`` or channels first."""
    if len(shape) < 2:
        layout = "(..., steps, channels)" if data_format == "channels_last" else "(..., channels, steps)"
        raise ValueError(
            f"{argument} must have rank >= 2 {layout} for data_format={data_format!r}, got shape "
            f"{tuple(shape)} (rank {len(shape)})."
        )


def check_channels(
    shape: tuple[Any, ...], channel_axis: int, groups: int, data_format: str, argument: str = "x"
) -> int:
    """The input's channel count, which must be static and divisible by ``groups``."""
    in_channels = shape[channel_axis]
    if is_symbolic(in_channels):
        raise ValueError(
            f"{argument} has a symbolic channel count {in_channels} (shape {tuple(shape)}); the "
            "kernel's shape depends on it, so channels must be a concrete size."
        )
    if in_channels % groups:
        raise ValueError(
            f"groups={groups} must divide the input's {in_channels} channels ({argument} shape "
            f"{tuple(shape)}, data_format={data_format!r})."
        )
    return int(in_channels)


def check_built_channels(
    kernel_shape: tuple[int, ...], built: int, in_channels: int, x_shape: tuple[Any, ...], data_format: str
) -> None:
    """ValueError when a module's kernel of ``kernel_shape`` was ``built`` for another input
    channel count than ``in_channels``."""
    if built != in_channels:
        raise ValueError(
            f"x has {in_channels} channels (shape {tuple(x_shape)}, data_format={data_format!r}), "
            f"but params['kernel'] {tuple(kernel_shape)} was built for {built}."
        )

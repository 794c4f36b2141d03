"""Validators shared by the public entry points, each with its message written once.

Nothing here imports the config: checks of a config live beside it
(:func:`convtrans._src.config.check_config`).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any, Optional

import jax
import jax.numpy as jnp

FLOATING_DTYPES = "float16, bfloat16, float32, float64"


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (numpy's too) and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_symbolic(size: Any) -> bool:
    """Whether ``size`` is a symbolic dimension of :mod:`jax.export` (e.g. a batch ``b``)."""
    return jax.export.is_symbolic_dim(size)


def check_count(value: Any, argument: str, *, minimum: Optional[int] = 1) -> int:
    """``value`` as an int; TypeError unless an integer, ValueError if below ``minimum`` (None:
    no bound)."""
    if not is_int(value):
        raise TypeError(f"{argument} must be an integer, got {value!r} of type {type(value).__name__}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{argument} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_array(x: Any, argument: str = "x") -> None:
    """TypeError unless ``x`` has a ``shape`` and a ``dtype``."""
    if type(x).__module__.split(".")[0] == "torch":
        raise TypeError(f"{argument} is a torch.Tensor; pass a JAX or NumPy array, e.g. "
                        f"jnp.asarray({argument}.detach().cpu().numpy()).")
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{argument} must be an array, got {type(x).__name__}.")


def check_floating(dtype: Any, argument: str = "x") -> None:
    """TypeError unless ``dtype`` is a floating dtype (integer inputs are a caller's bug)."""
    if _supported_floating(dtype) is None:
        raise TypeError(
            f"{argument} must have a floating dtype ({FLOATING_DTYPES}), got {dtype}; "
            f"cast it first, e.g. {argument}.astype(jnp.float32)."
        )


def _supported_floating(dtype: Any) -> Optional[jnp.dtype]:
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
        raise TypeError(
            f"params must be a mapping {{'kernel': ..., 'bias': ...}}, got {type(params).__name__}."
        )


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


def check_channels(shape: tuple[Any, ...], channel_axis: int, groups: int, data_format: str,
                   argument: str = "x") -> int:
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


def check_built_channels(kernel_shape: tuple[int, ...], built: int, in_channels: int,
                         x_shape: tuple[Any, ...], data_format: str) -> None:
    """ValueError when a module's kernel of ``kernel_shape`` was ``built`` for another input
    channel count than ``in_channels``."""
    if built != in_channels:
        raise ValueError(
            f"x has {in_channels} channels (shape {tuple(x_shape)}, data_format={data_format!r}), "
            f"but params['kernel'] {tuple(kernel_shape)} was built for {built}."
        )

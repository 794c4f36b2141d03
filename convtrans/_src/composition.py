"""The bodies of the composition modules (``Residual``, ``Parallel``, ``Pad1D``), shared by the
linen and nnx versions: on a whole signal, or on a chunk inside a stream pass."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp

from convtrans._src.checks import check_allocation, check_input_rank, floating_input
from convtrans._src.streaming import graph

COMBINES = ("sum", "mean")

# A part of a model: a module or function mapping a signal to a signal.
Layer = Callable[[jax.Array], jax.Array]
# One part, or a sequence of them applied in order.
Layers = Layer | Sequence[Layer]


def in_order(layers: Any, x: jax.Array) -> jax.Array:
    """``x`` through ``layers``: one callable, or a sequence of them applied in order."""
    for layer in layers if isinstance(layers, Sequence) else (layers,):
        if not callable(layer):
            raise TypeError(f"a layer must be a module or a callable, got {layer!r}.")
        x = cast(jax.Array, layer(x))  # callable() leaves the result type unknown (object)
    return x


def residual(x: jax.Array, layers: Any, key: Callable[[], str]) -> jax.Array:
    """``x + layers(x)``; ``key()`` names the module's stream state."""
    stream = graph.active()
    if stream is None:
        y = in_order(layers, x)
    else:
        x, y = graph.residual(stream, key(), x, functools.partial(in_order, layers))
    if y.shape != x.shape:
        raise ValueError(
            f"Residual needs layers that keep the input's shape: x is {tuple(x.shape)}, the "
            f"layers give {tuple(y.shape)}."
        )
    return x + y


def check_branches(branches: Any, combine: Any) -> None:
    if combine not in COMBINES:
        raise ValueError(f"combine={combine!r} is unknown; expected 'sum' or 'mean'.")
    if isinstance(branches, (str, bytes)) or not isinstance(branches, Sequence) or not branches:
        raise TypeError(f"branches must be a non-empty sequence of modules, got {branches!r}.")


def parallel(x: jax.Array, branches: Sequence[Any], combine: str, key: Callable[[], str]) -> jax.Array:
    """The branches' outputs on ``x``, summed or averaged."""
    check_branches(branches, combine)
    stream = graph.active()
    if stream is None:
        outputs = [in_order(branch, x) for branch in branches]
    else:
        outputs = graph.parallel(stream, key(), x, [functools.partial(in_order, branch) for branch in branches])
    shapes = {tuple(y.shape) for y in outputs}
    if len(shapes) != 1:
        raise ValueError(
            f"Parallel needs branches with one output shape; they give {[tuple(y.shape) for y in outputs]}."
        )
    total = functools.reduce(jnp.add, outputs)
    return total / len(outputs) if combine == "mean" else total


def pad(x: Any, padding: Any, mode: str, data_format: str, key: Callable[[], str]) -> jax.Array:
    """``x`` padded along time by ``padding`` (see ``Pad1D``)."""
    left, right = graph.check_pad(padding, mode, data_format)
    x = floating_input(x)
    check_input_rank(tuple(x.shape), data_format)
    stream = graph.active()
    if stream is not None:
        if stream.mode == graph.PROBE:  # the input channels are the next layer's
            return x
        return graph.pad(stream, key(), x, left, right, mode, data_format)
    axis = x.ndim - 2 if data_format == "channels_last" else x.ndim - 1
    if mode == "reflect" and x.shape[axis] <= max(left, right):
        raise ValueError(
            f"reflect padding by {(left, right)} needs more than {max(left, right)} "
            f"steps, got x of shape {tuple(x.shape)}."
        )
    padded = list(x.shape)
    padded[axis] += left + right
    check_allocation(
        {"the padded signal": tuple(padded)},
        x.dtype,
        f"it comes from x of shape {tuple(x.shape)} and padding={padding!r}",
    )
    widths = [(0, 0)] * x.ndim
    widths[axis] = (left, right)
    return jnp.pad(x, widths, mode={"replicate": "edge"}.get(mode, mode))

"""``Conv1DTranspose`` as a ``flax.nnx`` module: Keras's arguments, :func:`convtrans.conv1d_transpose` inside.

The same layers as :mod:`convtrans.linen` (:class:`Conv1DTranspose`, :class:`Conv1D`,
:class:`Pad1D`, :class:`Residual`, :class:`Parallel`), as ``flax.nnx`` modules that take
``in_channels`` and ``rngs`` when made.

Parameters (Keras layout and names), both ``nnx.Param``:

- ``kernel``: ``(kernel_size, filters // groups, in_channels)``, drawn by ``kernel_initializer``;
- ``bias``: ``(filters,)``, drawn by ``bias_initializer`` (None without ``use_bias``).

A Keras constraint is kept as the variable's metadata (``model.kernel.get_metadata()["constraint"]``),
where :func:`convtrans.keras_constraints` finds it when ``nnx.Optimizer`` initializes.

Regularization: when the forward pass runs under ``nnx.capture(..., RegularizationLoss)``, each
call sows the configured penalties (kernel, bias, activity; see
:func:`convtrans.conv1d_transpose`'s ``aux``) as :class:`RegularizationLoss` values; outside a capture
nothing is stored (inference stays free of side effects). :func:`with_regularization_loss` does the
capturing and sums the terms of every convtrans layer in the model, so a training loss reads::

    forward = convtrans.nnx.with_regularization_loss(lambda model, x: model(x))

    def loss_fn(model):
        y, penalty = forward(model, x)
        return task_loss(y) + penalty

:meth:`Conv1DTranspose.weight_regularization` gives the kernel and bias penalties alone, without a
forward pass.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, Generic, ParamSpec, TypeVar, cast

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax
from jax.typing import DTypeLike

from convtrans._src import composition
from convtrans._src import weight_norm as weight_norm_lib
from convtrans._src.api import REGULARIZATION_KEYS as _REGULARIZATION_KEYS
from convtrans._src.api import Implementation, conv1d, conv1d_transpose
from convtrans._src.checks import check_module_options as _check_module_options
from convtrans._src.checks import check_size as _check_size
from convtrans._src.checks import floating_input as _floating_input
from convtrans._src.checks import is_int as _is_int
from convtrans._src.composition import Layers
from convtrans._src.config import Conv1DConfig, Conv1DTransposeConfig, Padding
from convtrans._src.config import check_config as _check_config
from convtrans._src.config import check_conv_config as _check_conv_config
from convtrans._src.keras.activations import Activation
from convtrans._src.streaming import graph


class RegularizationLoss(nnx.Variable[Any]):
    """A regularization penalty sown by a convtrans layer during its forward pass: a scalar
    (float32, or the parameters' dtype if wider) under the names ``kernel_regularization``,
    ``bias_regularization`` and ``activity_regularization``; :func:`with_regularization_loss`
    collects and sums them."""


_P = ParamSpec("_P")
_Out = TypeVar("_Out")


def with_regularization_loss(fn: Callable[_P, _Out]) -> Callable[_P, tuple[_Out, jax.Array]]:
    """``fn(model, *args) -> out`` becomes ``(model, *args) -> (out, penalty)``.

    ``penalty`` is the sum (float32 scalar, 0 if none) of every :class:`RegularizationLoss` that the
    convtrans layers inside ``model`` sow while ``fn`` runs: Keras's ``sum(model.losses)``. ``fn``
    may also be a module or a bound method, as for ``nnx.capture``. Works under ``nnx.jit`` and
    ``nnx.grad``.
    """
    captured = nnx.capture(fn, RegularizationLoss)

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> tuple[_Out, jax.Array]:
        out, losses = captured(*args, **kwargs)
        return out, sum(jax.tree.leaves(losses), jnp.zeros((), jnp.float32))

    return wrapper


_LayerConfigT = TypeVar("_LayerConfigT", Conv1DTransposeConfig, Conv1DConfig)


class _Layer(nnx.Module, Generic[_LayerConfigT]):
    """What convtrans's nnx layers share: Keras-initialized ``kernel`` and ``bias`` parameters, the
    weight penalties, and a forward pass that sows its penalties under ``nnx.capture``."""

    config: _LayerConfigT
    in_channels: int
    dtype: DTypeLike | None
    param_dtype: DTypeLike
    precision: lax.PrecisionLike
    kernel: nnx.Param[jax.Array]
    bias: nnx.Param[jax.Array] | None
    scale: nnx.Param[jax.Array] | None

    def _build(
        self,
        config: _LayerConfigT,
        in_channels: Any,
        dtype: DTypeLike | None,
        param_dtype: DTypeLike,
        precision: lax.PrecisionLike,
        rngs: Any,
        weight_norm: bool = False,
    ) -> None:
        if not _is_int(in_channels) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}.")
        in_channels = int(in_channels)
        _check_size(in_channels, "in_channels")
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"rngs must be a flax.nnx.Rngs, e.g. nnx.Rngs(0), got {rngs!r}.")
        if not any(stream in rngs for stream in ("params", "default")):
            raise ValueError(
                f"rngs has no 'params' or 'default' stream to draw the weights from, got "
                f"{rngs!r}; e.g. nnx.Rngs(0) or nnx.Rngs(params=0)."
            )
        _check_module_options(dtype, param_dtype, precision, weight_norm)
        if in_channels % config.groups:
            raise ValueError(f"groups={config.groups} must divide in_channels={in_channels}.")
        self.config = config
        self.in_channels = in_channels
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self.kernel = _param(
            config.kernel_initializer(rngs.params(), config.new_kernel_shape(in_channels, param_dtype), param_dtype),
            config.kernel_constraint,
        )
        self.bias = (
            _param(config.bias_initializer(rngs.params(), (config.filters,), param_dtype), config.bias_constraint)
            if config.use_bias
            else None
        )
        # PyTorch's weight norm: kernel is the direction v, scale g starts at ||v||.
        self.scale = nnx.Param(weight_norm_lib.direction_norm(self.kernel[...])) if weight_norm else None

    def _apply(self, params: dict[str, jax.Array], x: jax.Array) -> tuple[jax.Array, Any]:
        raise NotImplementedError

    @property
    def params(self) -> dict[str, jax.Array]:
        """The arrays ``{"kernel": ..., "bias": ...}`` the pure function takes as ``params``, the kernel
        in Keras's layout (with weight norm, the kernel ``g * v / ||v||`` it computes with) and the
        ``(filters,)`` bias when there is one."""
        params = {"kernel": self.kernel[...]}
        if self.scale is not None:
            params["kernel"] = weight_norm_lib.kernel(params["kernel"], self.scale[...])
        if self.bias is not None:
            params["bias"] = self.bias[...]
        return params

    def weight_regularization(self) -> jax.Array:
        """Kernel plus bias penalty (Keras's weight losses), a float32 scalar (float64 for float64
        parameters); no forward pass, so no activity term."""
        config, params = self.config, self.params
        total = jnp.zeros((), jnp.promote_types(params["kernel"].dtype, jnp.float32))
        if config.kernel_regularizer is not None:
            total = total + config.kernel_regularizer(params["kernel"])
        if config.bias_regularizer is not None and "bias" in params:
            total = total + config.bias_regularizer(params["bias"])
        return total

    def _stream(self, stream: graph.StreamContext, params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        raise NotImplementedError

    def __call__(self, x: jax.Array) -> jax.Array:
        config, params = self.config, self.params
        stream = graph.active()
        if stream is not None and stream.mode == graph.PROBE:
            raise graph.Probed(self.in_channels, config.data_format)
        x = _floating_input(x)
        dtype = self.dtype or jnp.result_type(x.dtype, *(p.dtype for p in params.values()))
        if stream is not None:
            return self._stream(stream, params, x.astype(dtype))
        y, aux = self._apply(params, x.astype(dtype))
        regularizers = (config.kernel_regularizer, config.bias_regularizer, config.activity_regularizer)
        capturing = hasattr(self, "__captures__")
        for key, regularizer in zip(_REGULARIZATION_KEYS, regularizers):
            # Sow only under nnx.capture: outside it, flax's sow mutates the module (deprecated).
            if capturing and regularizer is not None and (key != "bias" or config.use_bias):
                self.sow(RegularizationLoss, f"{key}_regularization", aux[key])
        return y


class Conv1DTranspose(_Layer[Conv1DTransposeConfig]):
    """Keras's ``Conv1DTranspose`` layer for flax.nnx.

    ``filters``, ``kernel_size``, ``strides``, ``padding``, ``output_padding``, ``data_format``,
    ``dilation_rate``, ``activation``, ``use_bias``, the initializers, regularizers and
    constraints, and ``groups`` are those of :class:`convtrans.Conv1DTransposeConfig` (Keras's
    names and defaults). Parameters: ``kernel`` ``(kernel_size, filters // groups, in_channels)``
    and ``bias`` ``(filters,)`` (None without ``use_bias``), ``nnx.Param`` of ``param_dtype``.

    Args:
      in_channels: channels of the input (the kernel's last axis).
      dtype: dtype of the computation and the output; None promotes the input's and the
        parameters' dtypes. ``jnp.bfloat16`` gives bfloat16 outputs with float32 parameters.
      param_dtype: dtype of ``kernel`` and ``bias`` (float32).
      precision: ``lax.Precision`` of the convolution.
      implementation: None (the plan of the platform the program is lowered for), a name
        (``"lhs_dilation"``, ``"gemm"``, ``"polyphase"``) or a :class:`convtrans.Plan`; see
        :func:`convtrans.conv1d_transpose`.
      weight_norm: PyTorch's weight norm, as for :class:`convtrans.Conv1DTranspose`: ``kernel`` is
        the direction ``v``, ``scale`` the gain ``g`` (one per kernel's last axis).
      rngs: ``nnx.Rngs``; the ``params`` stream draws the initial weights.

    ``model(x)``: ``x`` is ``(..., steps, in_channels)`` (channels_last) or
    ``(..., in_channels, steps)`` (channels_first), rank >= 2, floating; returns
    ``activation(conv_transpose(x, kernel) + bias)`` (:func:`convtrans.conv1d_transpose`) of shape
    ``(..., output_length(config, steps), filters)`` in ``dtype`` (None: ``x``'s dtype promoted
    with the parameters').
    """

    implementation: Implementation

    def __init__(
        self,
        in_channels: int,
        filters: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        padding: Padding = "valid",
        output_padding: int | None = None,
        data_format: str = "channels_last",
        dilation_rate: int | Sequence[int] = 1,
        activation: str | Activation | None = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        groups: int = 1,
        *,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        precision: lax.PrecisionLike = None,
        implementation: Implementation = None,
        weight_norm: bool = False,
        rngs: nnx.Rngs,
    ) -> None:
        # The config takes a 1-element sequence for an int size (Keras's form) and stores the int.
        config = Conv1DTransposeConfig(
            filters=filters,
            kernel_size=cast(int, kernel_size),
            strides=cast(int, strides),
            padding=padding,
            output_padding=output_padding,
            data_format=data_format,
            dilation_rate=cast(int, dilation_rate),
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            groups=groups,
        )
        self.implementation = implementation
        self._build(config, in_channels, dtype, param_dtype, precision, rngs, weight_norm)

    @classmethod
    def from_config(
        cls,
        config: Conv1DTransposeConfig,
        in_channels: int,
        *,
        rngs: nnx.Rngs,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        precision: lax.PrecisionLike = None,
        implementation: Implementation = None,
        weight_norm: bool = False,
    ) -> Conv1DTranspose:
        """A module with ``config``'s arguments and freshly initialized weights."""
        _check_config(config)
        fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        return cls(
            in_channels,
            **fields,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            implementation=implementation,
            weight_norm=weight_norm,
            rngs=rngs,
        )

    def _apply(self, params: dict[str, jax.Array], x: jax.Array) -> tuple[jax.Array, Any]:
        return conv1d_transpose(params, x, self.config, precision=self.precision, implementation=self.implementation)

    def _stream(self, stream: graph.StreamContext, params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        return graph.conv_transpose(
            stream,
            stream.key_of(self),
            params,
            x,
            self.config,
            precision=self.precision,
            implementation=self.implementation,
        )


class Conv1D(_Layer[Conv1DConfig]):
    """Keras's ``Conv1D`` layer for flax.nnx.

    ``filters``, ``kernel_size``, ``strides``, ``padding``, ``data_format``, ``dilation_rate``,
    ``activation``, ``use_bias``, the initializers, regularizers and constraints, and ``groups``
    are those of :class:`convtrans.Conv1DConfig` (Keras's names and defaults; ``padding`` also
    ``"causal"`` or PyTorch-style integers).

    Args:
      in_channels: channels of the input (``groups`` must divide it).
      dtype: as for :class:`Conv1DTranspose`.
      param_dtype: as for :class:`Conv1DTranspose`.
      precision: as for :class:`Conv1DTranspose`.
      weight_norm: as for :class:`Conv1DTranspose`, with one gain per filter, ``(filters,)``.
      rngs: as for :class:`Conv1DTranspose`.

    Parameters: ``kernel`` ``(kernel_size, in_channels // groups, filters)`` and ``bias``
    ``(filters,)``. ``model(x)``: :func:`convtrans.conv1d` with them, ``(..., steps, in_channels)``
    to ``(..., out_steps, filters)`` (channels_last).
    """

    def __init__(
        self,
        in_channels: int,
        filters: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] = 1,
        padding: Padding = "valid",
        data_format: str = "channels_last",
        dilation_rate: int | Sequence[int] = 1,
        activation: str | Activation | None = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        groups: int = 1,
        *,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        precision: lax.PrecisionLike = None,
        weight_norm: bool = False,
        rngs: nnx.Rngs,
    ) -> None:
        # The config takes a 1-element sequence for an int size (Keras's form) and stores the int.
        config = Conv1DConfig(
            filters=filters,
            kernel_size=cast(int, kernel_size),
            strides=cast(int, strides),
            padding=padding,
            data_format=data_format,
            dilation_rate=cast(int, dilation_rate),
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            groups=groups,
        )
        self._build(config, in_channels, dtype, param_dtype, precision, rngs, weight_norm)

    @classmethod
    def from_config(
        cls,
        config: Conv1DConfig,
        in_channels: int,
        *,
        rngs: nnx.Rngs,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        precision: lax.PrecisionLike = None,
        weight_norm: bool = False,
    ) -> Conv1D:
        """A module with ``config``'s arguments and freshly initialized weights."""
        _check_conv_config(config)
        fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        return cls(
            in_channels,
            **fields,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            weight_norm=weight_norm,
            rngs=rngs,
        )

    def _apply(self, params: dict[str, jax.Array], x: jax.Array) -> tuple[jax.Array, Any]:
        return conv1d(params, x, self.config, precision=self.precision)

    def _stream(self, stream: graph.StreamContext, params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        return graph.conv(stream, stream.key_of(self), params, x, self.config, precision=self.precision)


def _layers(layers: Any) -> Any:
    """A sequence of layers as an ``nnx.List`` (so that nnx finds the modules in it)."""
    if isinstance(layers, Sequence) and not isinstance(layers, (str, bytes, nnx.List)):
        return nnx.List([_layers(layer) for layer in layers])
    return layers


def _stream_key(module: nnx.Module) -> Callable[[], str]:
    # Called only inside a stream pass, where a context is active.
    return lambda: cast(graph.StreamContext, graph.active()).key_of(module)


class Residual(nnx.Module):
    """``x + layers(x)``: a skip connection around ``layers`` (a module or callable, or a
    sequence of them applied in order), as :class:`convtrans.linen.Residual` is for linen; the
    output has ``x``'s shape."""

    layers: Layers

    def __init__(self, layers: Layers) -> None:
        self.layers = _layers(layers)

    def __call__(self, x: jax.Array) -> jax.Array:
        return composition.residual(x, self.layers, _stream_key(self))


class Parallel(nnx.Module):
    """Branches fed the same input, summed (``combine="sum"``) or averaged (``"mean"``), as
    :class:`convtrans.linen.Parallel` is for linen; the branches' outputs share one shape."""

    branches: Sequence[Layers]
    combine: str

    def __init__(self, branches: Sequence[Layers], combine: str = "sum") -> None:
        composition.check_branches(branches, combine)
        self.branches = _layers(branches)
        self.combine = combine

    def __call__(self, x: jax.Array) -> jax.Array:
        return composition.parallel(x, self.branches, self.combine, _stream_key(self))


class Pad1D(nnx.Module):
    """Time-axis padding (``"constant"``, ``"reflect"`` or ``"replicate"``), as
    :class:`convtrans.linen.Pad1D` is for linen: ``steps`` becomes ``steps + left + right``."""

    padding: int | tuple[int, int]
    mode: str
    data_format: str

    def __init__(
        self, padding: int | tuple[int, int], mode: str = "constant", data_format: str = "channels_last"
    ) -> None:
        graph.check_pad(padding, mode, data_format)
        self.padding, self.mode, self.data_format = padding, mode, data_format

    def __call__(self, x: jax.Array) -> jax.Array:
        return composition.pad(x, self.padding, self.mode, self.data_format, _stream_key(self))


def _param(value: jax.Array, constraint: Any) -> nnx.Param[jax.Array]:
    return nnx.Param(value) if constraint is None else nnx.Param(value, constraint=constraint)


__all__ = [
    "Conv1D",
    "Conv1DTranspose",
    "Pad1D",
    "Parallel",
    "RegularizationLoss",
    "Residual",
    "with_regularization_loss",
]

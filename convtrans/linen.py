"""``Conv1DTranspose`` as a ``flax.linen`` module: Keras's arguments, :func:`convtrans.conv1d_transpose` inside.

:class:`Conv1DTranspose` and :class:`Conv1D` are Keras's layers; :class:`Pad1D`, :class:`Residual`
and :class:`Parallel` compose them into models that :class:`convtrans.streaming.Streamer` can run
chunk by chunk. Every name here is also importable from :mod:`convtrans` itself.

Parameters (Keras layout and names):

- ``kernel``: ``(kernel_size, filters // groups, in_channels)``, drawn by ``kernel_initializer``;
- ``bias``: ``(filters,)``, drawn by ``bias_initializer`` (only with ``use_bias``).

A parameter with a Keras constraint is stored boxed in :class:`convtrans.optim.Constrained`, which
``apply`` unboxes by itself and :func:`convtrans.keras_constraints` uses to project it after each
optimizer step.

Regularization: each configured penalty (kernel, bias, activity; see
:func:`convtrans.conv1d_transpose`'s ``aux``) is sown into the ``"losses"`` collection during
``apply`` (not during ``init``). Add them to the training loss::

    y, state = model.apply({"params": params}, x, mutable=["losses"])
    loss = task_loss(y) + sum(jax.tree.leaves(state["losses"]))
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import meta
from jax import lax
from jax.typing import DTypeLike

from convtrans._src import composition
from convtrans._src import weight_norm as weight_norm_lib
from convtrans._src.api import REGULARIZATION_KEYS as _REGULARIZATION_KEYS
from convtrans._src.api import Implementation, conv1d, conv1d_transpose
from convtrans._src.checks import check_built_channels as _check_built_channels
from convtrans._src.checks import check_channels as _check_channels
from convtrans._src.checks import check_input_rank as _check_input_rank
from convtrans._src.checks import check_module_options as _check_module_options
from convtrans._src.checks import floating_input as _floating_input
from convtrans._src.composition import Layers
from convtrans._src.config import Conv1DConfig, Conv1DTransposeConfig, LayerConfig, Padding
from convtrans._src.config import check_config as _check_config
from convtrans._src.config import check_conv_config as _check_conv_config
from convtrans._src.keras.activations import Activation
from convtrans._src.streaming import graph
from convtrans.optim import with_constraint

_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(Conv1DTransposeConfig))
_CONV_FIELDS = tuple(f.name for f in dataclasses.fields(Conv1DConfig))


class Conv1DTranspose(nn.Module):
    """Keras's ``Conv1DTranspose`` layer for flax.linen.

    Takes every argument of :class:`convtrans.Conv1DTransposeConfig` by the same name and with
    the same default, plus:

    Attributes:
      dtype: dtype of the computation and the output; None promotes the input's and the
        parameters' dtypes (flax's rule). ``jnp.bfloat16`` gives bfloat16 outputs with float32
        parameters.
      param_dtype: dtype of ``kernel`` and ``bias`` (float32).
      precision: ``lax.Precision`` of the convolution.
      implementation: None (the plan of the platform the program is lowered for), a name
        (``"lhs_dilation"``, ``"gemm"``, ``"polyphase"``) or a :class:`convtrans.Plan`; see
        :func:`convtrans.conv1d_transpose`.
      weight_norm: PyTorch's weight norm: the ``kernel`` parameter is the direction ``v`` and a
        ``scale`` parameter ``g`` of shape ``(in_channels,)`` (one per kernel's last axis, as
        torch's ``dim=0``) starts at ``||v||``; the layer computes with ``g * v / ||v||``, the norm
        over the kernel's first two axes. Constraints apply to ``v``, penalties to the kernel used.

    ``__call__(x)``: ``x`` is ``(..., steps, in_channels)`` (channels_last) or
    ``(..., in_channels, steps)`` (channels_first), rank >= 2, floating; returns
    ``y = activation(conv_transpose(x, kernel) + bias)`` (the sum of
    :func:`convtrans.conv1d_transpose`) of shape ``(..., output_length(self.config, steps),
    filters)`` (channels_first: ``(..., filters, output_length)``) in ``dtype`` (None: ``x``'s
    dtype promoted with ``param_dtype``).
    """

    filters: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: Padding = "valid"
    output_padding: int | None = None
    data_format: str = "channels_last"
    dilation_rate: int | Sequence[int] = 1
    activation: str | Activation | None = None
    use_bias: bool = True
    kernel_initializer: Any = "glorot_uniform"
    bias_initializer: Any = "zeros"
    kernel_regularizer: Any = None
    bias_regularizer: Any = None
    activity_regularizer: Any = None
    kernel_constraint: Any = None
    bias_constraint: Any = None
    groups: int = 1
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32
    precision: lax.PrecisionLike = None
    implementation: Implementation = None
    weight_norm: bool = False

    @property
    def config(self) -> Conv1DTransposeConfig:
        """The validated :class:`convtrans.Conv1DTransposeConfig` of this layer's arguments."""
        return Conv1DTransposeConfig(**{name: getattr(self, name) for name in _CONFIG_FIELDS})

    def __post_init__(self) -> None:
        self.config  # noqa: B018 - builds the config: every argument is checked at construction
        _check_module_options(self.dtype, self.param_dtype, self.precision, self.weight_norm)
        super().__post_init__()

    @classmethod
    def from_config(cls, config: Conv1DTransposeConfig, **kwargs: Any) -> Conv1DTranspose:
        """A module with ``config``'s arguments; ``kwargs`` adds ``dtype``, ``name``, etc."""
        _check_config(config)
        fields = {name: getattr(config, name) for name in _CONFIG_FIELDS}
        return cls(**fields, **kwargs)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return _call_layer(
            self,
            x,
            self.config,
            functools.partial(conv1d_transpose, precision=self.precision, implementation=self.implementation),
            functools.partial(graph.conv_transpose, precision=self.precision, implementation=self.implementation),
        )


class Conv1D(nn.Module):
    """Keras's ``Conv1D`` layer for flax.linen.

    Takes every argument of :class:`convtrans.Conv1DConfig` by the same name and with the same
    default (``padding`` also ``"causal"`` or PyTorch-style integers), plus ``dtype``,
    ``param_dtype``, ``precision`` and ``weight_norm`` as :class:`Conv1DTranspose` does (the
    weight norm's ``scale`` is then one per filter, ``(filters,)``).

    Parameters: ``kernel`` ``(kernel_size, in_channels // groups, filters)`` and ``bias``
    ``(filters,)``, drawn, constrained and regularized as :class:`Conv1DTranspose`'s are.

    ``__call__(x)``: ``x`` is ``(..., steps, in_channels)`` (channels_last) or
    ``(..., in_channels, steps)`` (channels_first), rank >= 2, floating; returns
    ``y = activation(conv(x, kernel) + bias)`` of shape ``(..., out_steps, filters)`` with
    ``out_steps = (steps + left + right - ke) // strides + 1`` (see :func:`convtrans.conv1d`), in
    ``dtype`` as for :class:`Conv1DTranspose`.
    """

    filters: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: Padding = "valid"
    data_format: str = "channels_last"
    dilation_rate: int | Sequence[int] = 1
    activation: str | Activation | None = None
    use_bias: bool = True
    kernel_initializer: Any = "glorot_uniform"
    bias_initializer: Any = "zeros"
    kernel_regularizer: Any = None
    bias_regularizer: Any = None
    activity_regularizer: Any = None
    kernel_constraint: Any = None
    bias_constraint: Any = None
    groups: int = 1
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32
    precision: lax.PrecisionLike = None
    weight_norm: bool = False

    @property
    def config(self) -> Conv1DConfig:
        """The validated :class:`convtrans.Conv1DConfig` of this layer's arguments."""
        return Conv1DConfig(**{name: getattr(self, name) for name in _CONV_FIELDS})

    def __post_init__(self) -> None:
        self.config  # noqa: B018 - builds the config: every argument is checked at construction
        _check_module_options(self.dtype, self.param_dtype, self.precision, self.weight_norm)
        super().__post_init__()

    @classmethod
    def from_config(cls, config: Conv1DConfig, **kwargs: Any) -> Conv1D:
        """A module with ``config``'s arguments; ``kwargs`` adds ``dtype``, ``name``, etc."""
        _check_conv_config(config)
        return cls(**{name: getattr(config, name) for name in _CONV_FIELDS}, **kwargs)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return _call_layer(
            self,
            x,
            self.config,
            functools.partial(conv1d, precision=self.precision),
            functools.partial(graph.conv, precision=self.precision),
        )


class Residual(nn.Module):
    """``x + layers(x)``: a skip connection around ``layers``.

    ``__call__(x)`` returns an array of ``x``'s shape. Streamed, the skip path is delayed to line
    up with ``layers``' latency.

    Attributes:
      layers: a module or callable, or a sequence of them applied in order (activations and
        other per-step functions included); their output must have ``x``'s shape.
    """

    layers: Layers

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return composition.residual(x, self.layers, functools.partial(_key, self))


class Parallel(nn.Module):
    """Branches fed the same input, combined by ``combine``: ``"sum"`` (HiFi-GAN's
    multi-receptive-field fusion before its division) or ``"mean"`` (HiFi-GAN's fusion itself).

    Attributes:
      branches: a sequence of modules or callables (each may itself be a sequence, applied in
        order); their outputs must share one shape.
      combine: ``"sum"`` or ``"mean"``.

    ``__call__(x)`` returns ``sum_b branch_b(x)`` (``"mean"``: divided by the number of branches),
    of the branches' common shape.
    """

    branches: Sequence[Layers]
    combine: str = "sum"

    def __post_init__(self) -> None:
        composition.check_branches(self.branches, self.combine)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return composition.parallel(x, self.branches, self.combine, functools.partial(_key, self))


class Pad1D(nn.Module):
    """Pads the time axis: ``padding`` steps (an int for both sides, or ``(left, right)``) of
    zeros (``mode="constant"``), of the signal's mirror image without its edge sample
    (``"reflect"``, PyTorch's ``ReflectionPad1d``) or of its edge sample (``"replicate"``).

    ``__call__(x)``: ``x`` is ``(..., steps, channels)`` (channels_last) or ``(..., channels,
    steps)`` (channels_first); returns ``steps + left + right`` steps. ``"reflect"`` needs
    ``steps > max(left, right)``.
    """

    padding: int | tuple[int, int]
    mode: str = "constant"
    data_format: str = "channels_last"

    def __post_init__(self) -> None:
        graph.check_pad(self.padding, self.mode, self.data_format)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return composition.pad(x, self.padding, self.mode, self.data_format, functools.partial(_key, self))


def _key(module: nn.Module) -> str:
    """A module's place in its model: the key of its stream state."""
    return "/".join(module.path) or type(module).__name__


def _call_layer(
    module: nn.Module,
    x: Any,
    config: LayerConfig,
    apply: Callable[..., tuple[jax.Array, Any]],
    stream_layer: Callable[..., jax.Array],
) -> jax.Array:
    """The body of a layer module: checks ``x``, creates the parameters the way Keras does, runs
    ``apply(params, x, config)`` in the module's dtype and sows the regularization terms. Inside a
    stream pass it runs ``stream_layer(context, key, params, x, config)`` on the chunk instead."""
    stream = graph.active()
    if stream is not None and stream.mode == graph.PROBE:
        kernel = module.get_variable("params", "kernel")
        raise graph.Probed(
            None if kernel is None else config.kernel_in_channels(meta.unbox(kernel).shape), config.data_format
        )
    x = _floating_input(x)
    _check_input_rank(tuple(x.shape), config.data_format)
    in_channels = _check_channels(tuple(x.shape), config.channel_axis, config.groups, config.data_format)
    if module.has_variable("params", "kernel"):
        built = tuple(meta.unbox(module.get_variable("params", "kernel")).shape)
        _check_built_channels(built, config.kernel_in_channels(built), in_channels, tuple(x.shape), config.data_format)
    params = {
        "kernel": module.param(
            "kernel",
            _constrained(config.kernel_initializer, config.kernel_constraint),
            config.new_kernel_shape(in_channels, module.param_dtype),
            module.param_dtype,
        )
    }
    if module.weight_norm:
        # The kernel parameter is the direction v; the layer uses g * v / ||v|| (PyTorch's
        # weight_norm), g starting at ||v|| so that the initial kernel is v itself.
        direction = params["kernel"]
        scale = module.param(
            "scale",
            lambda key, shape, dtype: weight_norm_lib.direction_norm(direction).astype(dtype),
            direction.shape[-1:],
            module.param_dtype,
        )
        params["kernel"] = weight_norm_lib.kernel(direction, scale)
    if config.use_bias:
        params["bias"] = module.param(
            "bias",
            _constrained(config.bias_initializer, config.bias_constraint),
            (config.filters,),
            module.param_dtype,
        )
    # The parameters stay in param_dtype (penalties are computed from them); the pure function
    # casts them to the input's dtype for the convolution itself.
    dtype = module.dtype or jnp.result_type(x.dtype, *(p.dtype for p in params.values()))
    if stream is not None:
        return stream_layer(stream, _key(module), params, x.astype(dtype), config)
    y, aux = apply(params, x.astype(dtype), config)
    if not module.is_initializing():
        regularizers = (config.kernel_regularizer, config.bias_regularizer, config.activity_regularizer)
        for key, regularizer in zip(_REGULARIZATION_KEYS, regularizers):
            if regularizer is not None and (key != "bias" or config.use_bias):
                module.sow("losses", f"{key}_regularization", aux[key])
    return y


def _constrained(init: Callable[..., jax.Array], constraint: Any) -> Callable[..., jax.Array]:
    # Flax's param() opens the Constrained box that with_constraint's initializer makes, so the
    # layer sees the array.
    return init if constraint is None else cast("Callable[..., jax.Array]", with_constraint(init, constraint))


__all__ = ["Conv1D", "Conv1DTranspose", "Pad1D", "Parallel", "Residual"]

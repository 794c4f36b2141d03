"""``Conv1DTransposeConfig``: every argument of Keras's ``Conv1DTranspose``, validated once.

The config is a frozen, hashable dataclass, so it can be a static argument of ``jax.jit``. All
validation that does not need the input happens in the constructor; errors name the argument, the
value given and what was expected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar, cast

import numpy as np
from jax.typing import DTypeLike

from convtrans._src.checks import check_allocation, check_count, check_size, is_int
from convtrans._src.geometry import effective_kernel_size
from convtrans._src.keras import activations, constraints, initializers, regularizers
from convtrans._src.keras.activations import Activation

Padding = str | int | tuple[int, int]

_KERAS_PADDINGS = ("valid", "same")
_CONV_PADDINGS = ("valid", "same", "causal")
# Keys of a Keras layer config that describe the Keras object rather than the computation.
_IGNORED_KERAS_KEYS = frozenset(
    {"name", "trainable", "dtype", "groups", "batch_input_shape", "batch_shape", "input_shape", "input_dim"}
)


def _size(value: Any, argument: str, *, minimum: int = 1) -> int:
    """An int, or a 1-element tuple/list of one (Keras's 1-D size form), at least ``minimum``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(
                f"{argument}={value!r}: a 1-D layer takes a single integer or a 1-element "
                f"tuple/list, got {len(value)} elements."
            )
        (value,) = value
    return check_count(value, argument, minimum=minimum)


def _padding(value: Any, modes: tuple[str, ...] = _KERAS_PADDINGS) -> Padding:
    if isinstance(value, str):
        lowered = value.lower()
        if lowered not in modes:
            hint = (
                " Keras's Conv1DTranspose does not support causal padding; for a causal "
                "upsampler use padding='valid' and crop the right end."
                if lowered == "causal"
                else ""
            )
            names = " or ".join([", ".join(repr(mode) for mode in modes[:-1]), repr(modes[-1])])
            raise ValueError(
                f"padding={value!r} is not supported; expected {names} (any case), a "
                f"non-negative int, or a pair (left, right) of them.{hint}"
            )
        return lowered
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            value = value[0]
        elif len(value) == 2:
            return (_size(value[0], "padding[0]", minimum=0), _size(value[1], "padding[1]", minimum=0))
        else:
            raise ValueError(f"padding={value!r}: expected a pair (left, right), got {len(value)} elements.")
    if is_int(value):
        p = _size(value, "padding", minimum=0)
        return (p, p)
    raise TypeError(
        f"padding must be 'valid', 'same', a non-negative int or a pair (left, right); got "
        f"{value!r} of type {type(value).__name__}."
    )


def _data_format(value: Any) -> str:
    if isinstance(value, str) and value.lower() in ("channels_last", "channels_first"):
        return value.lower()
    raise ValueError(
        f"data_format={value!r} is not supported; expected 'channels_last' (batch, steps, "
        "channels) or 'channels_first' (batch, channels, steps)."
    )


_Config = TypeVar("_Config", bound="_LayerFields")


class _LayerFields:
    """What both layer configs derive from their fields."""

    filters: int
    kernel_size: int
    dilation_rate: int
    data_format: str
    groups: int
    kernel_layout: ClassVar[str]

    def kernel_shape(self, in_channels: int) -> tuple[int, int, int]:
        """The kernel's shape for ``in_channels`` inputs (each config's layout)."""
        raise NotImplementedError

    @property
    def effective_kernel_size(self) -> int:
        """The span of the dilated kernel, ``ke = (kernel_size - 1) * dilation_rate + 1``."""
        return effective_kernel_size(self.kernel_size, self.dilation_rate)

    @property
    def channel_axis(self) -> int:
        """The channels' axis in inputs and outputs of any rank >= 2 (-1 for channels_last, -2 for
        channels_first)."""
        return -1 if self.data_format == "channels_last" else -2

    @property
    def time_axis(self) -> int:
        """The time axis in inputs and outputs of any rank >= 2 (-2 for channels_last, -1 for
        channels_first)."""
        return -2 if self.data_format == "channels_last" else -1

    def new_kernel_shape(self, in_channels: int, dtype: DTypeLike) -> tuple[int, int, int]:
        """:meth:`kernel_shape`, checked to be allocatable in ``dtype`` before a kernel is made."""
        shape = self.kernel_shape(in_channels)
        check_allocation(
            {f"the kernel {self.kernel_layout}": shape},
            dtype,
            f"it comes from kernel_size={self.kernel_size}, filters={self.filters}, "
            f"groups={self.groups} and {in_channels} input channels",
        )
        return shape

    def replace(self: _Config, **changes: Any) -> _Config:
        """A copy with some fields changed (validated again)."""
        # Both subclasses are dataclasses; this mixin itself is not, hence the cast.
        return dataclasses.replace(cast(Any, self), **changes)


@dataclasses.dataclass(frozen=True)
class Conv1DTransposeConfig(_LayerFields):
    """The arguments of a 1-D transposed convolution, in Keras's names and with its defaults.

    Frozen and hashable: pass it as a static argument under ``jax.jit``. Every argument is
    validated (and normalized: 1-tuples to ints, names to objects) when the config is made; errors
    name the argument. With ``n`` input steps, the output has ``output_length(config, n)`` steps
    (:func:`convtrans.output_length`) and ``filters`` channels, and the kernel is
    ``(kernel_size, filters // groups, in_channels)``.

    Attributes:
      filters: number of output channels.
      kernel_size: taps of the kernel (int or 1-tuple).
      strides: upsampling factor (int or 1-tuple).
      padding: ``"valid"`` or ``"same"`` (Keras, any case), or PyTorch-style integer padding ``p``
        or ``(left, right)``, which crops that many samples from each side of the full result.
      output_padding: extra samples on the right. ``None`` (Keras's default) and ``0`` differ for
        Keras paddings; see :func:`convtrans.output_length`. Must be ``< strides`` with Keras
        paddings and ``< max(strides, dilation_rate)`` with integer padding (PyTorch's rule).
      data_format: ``"channels_last"`` (batch, steps, channels) or ``"channels_first"``.
      dilation_rate: spacing between taps. With Keras paddings, ``strides > 1`` and
        ``dilation_rate > 1`` cannot be combined (Keras's rule); integer padding allows it
        (PyTorch's rule).
      activation: a Keras activation name, None (linear) or a callable (Keras's own activation
        functions are stored by name).
      use_bias: whether a bias of shape ``(filters,)`` is added before the activation.
      kernel_initializer: draws the kernel (``"glorot_uniform"``): a Keras name, config dict or
        object, a :mod:`convtrans.initializers` object or a ``jax.nn.initializers`` callable
        ``(key, shape, dtype) -> array``.
      bias_initializer: draws the bias (``"zeros"``), given as ``kernel_initializer`` is.
      kernel_regularizer: penalty of the kernel: None, ``"l1"``, ``"l2"``, ``"l1l2"``, a Keras
        dict or object, or a :mod:`convtrans.regularizers` object.
      bias_regularizer: penalty of the bias, given as ``kernel_regularizer`` is.
      activity_regularizer: penalty of the output ``y``, divided by the number of examples.
      kernel_constraint: projection of the kernel after each update: None, a Keras name, dict or
        object, or a :mod:`convtrans.constraints` object.
      bias_constraint: projection of the bias, given as ``kernel_constraint`` is.
      groups: split channels into this many independent groups (PyTorch's ``groups``); it must
        divide ``filters`` and ``in_channels``, and the kernel is
        ``(kernel_size, filters // groups, in_channels)``.

    Keras objects (initializers, regularizers, constraints) are converted to this package's
    equivalents through their ``get_config``.
    """

    filters: int
    kernel_size: int
    strides: int = 1
    padding: Padding = "valid"
    output_padding: int | None = None
    data_format: str = "channels_last"
    dilation_rate: int = 1
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

    def __post_init__(self) -> None:
        _validate_layer(self, _KERAS_PADDINGS)
        keras_padding = isinstance(self.padding, str)
        if self.output_padding is not None:
            op = _size(self.output_padding, "output_padding", minimum=0)
            limit = self.strides if keras_padding else max(self.strides, self.dilation_rate)
            if op >= limit:
                rule = "strides" if keras_padding else "max(strides, dilation_rate)"
                raise ValueError(
                    f"output_padding={op} must be smaller than {rule}={limit}; with strides=1 "
                    "only output_padding=None or 0 is allowed."
                    if limit == 1
                    else f"output_padding={op} must be smaller than {rule}={limit}."
                )
            object.__setattr__(self, "output_padding", op)
        _check_hashable(self)

    kernel_layout: ClassVar[str] = "(kernel_size, filters // groups, in_channels)"

    def kernel_shape(self, in_channels: int) -> tuple[int, int, int]:
        """Keras layout ``(kernel_size, filters // groups, in_channels)``."""
        return (self.kernel_size, self.filters // self.groups, in_channels)

    def kernel_in_channels(self, kernel_shape: tuple[int, ...]) -> int:
        """The input channel count a kernel of ``kernel_shape`` was built for."""
        return kernel_shape[2]

    # --- Keras interop -------------------------------------------------------------------

    @classmethod
    def from_keras(cls, config: Mapping[str, Any]) -> Conv1DTransposeConfig:
        """From ``keras.layers.Conv1DTranspose(...).get_config()`` (Keras 3 or TF 2.x, also after
        a JSON round trip). Layer metadata (name, trainable, dtype) and TF's ``groups`` key, which
        that layer ignores, are dropped."""
        if not isinstance(config, Mapping):
            raise TypeError(f"config must be a dict from layer.get_config(), got {type(config).__name__}.")
        fields = {f.name for f in dataclasses.fields(cls)} - {"groups"}
        unknown = set(config) - fields - _IGNORED_KERAS_KEYS
        if unknown:
            raise ValueError(
                f"config has keys {sorted(unknown, key=str)} that Keras's Conv1DTranspose does not take; "
                f"expected a subset of {sorted(fields | _IGNORED_KERAS_KEYS)}."
            )
        missing = {"filters", "kernel_size"} - set(config)
        if missing:
            raise ValueError(f"config lacks the required keys {sorted(missing)}.")
        return cls(**{k: v for k, v in config.items() if k in fields})

    def to_keras(self) -> dict[str, Any]:
        """A dict that ``keras.layers.Conv1DTranspose.from_config`` turns into an identical layer.

        Raises:
          ValueError: for what Keras's layer cannot express: ``groups > 1``, integer padding, or
            activations and initializers given as Python callables.
        """
        if self.groups != 1:
            raise ValueError(f"groups={self.groups}: Keras's Conv1DTranspose has no groups.")
        if not isinstance(self.padding, str):
            raise ValueError(f"padding={self.padding!r}: Keras's Conv1DTranspose only has 'valid' and 'same'.")
        if not isinstance(self.activation, str):
            raise ValueError(f"activation={self.activation!r} is a Python callable; Keras configs need a name.")

        def serialize(name: str) -> Any:
            value = getattr(self, name)
            if value is None:
                return None
            if not hasattr(value, "to_keras"):
                raise ValueError(f"{name}={value!r} is a Python callable; Keras configs need a Keras object.")
            return value.to_keras()

        return {
            "filters": self.filters,
            "kernel_size": (self.kernel_size,),
            "strides": (self.strides,),
            "padding": self.padding,
            "output_padding": None if self.output_padding is None else (self.output_padding,),
            "data_format": self.data_format,
            "dilation_rate": (self.dilation_rate,),
            "activation": self.activation,
            "use_bias": self.use_bias,
            **{
                name: serialize(name)
                for name in (
                    "kernel_initializer",
                    "bias_initializer",
                    "kernel_regularizer",
                    "bias_regularizer",
                    "activity_regularizer",
                    "kernel_constraint",
                    "bias_constraint",
                )
            },
        }


def _check_hashable(config: Any) -> None:
    """A config is a static argument of jax.jit, so every field must hash: an unhashable callable
    would otherwise fail at the first jitted call, far from where it was given."""
    for field in dataclasses.fields(config):
        try:
            hash(getattr(config, field.name))
        except TypeError:
            raise TypeError(
                f"{field.name}={getattr(config, field.name)!r} is unhashable; a config is a "
                "static argument of jax.jit, so its callables must be hashable."
            ) from None


def _validate_layer(config: Any, paddings: tuple[str, ...]) -> None:
    """Validates and normalizes, in place, the fields a convolution and a transposed
    convolution share (Keras's arguments and groups); ``paddings`` are the Keras modes allowed."""

    def store(name: str, value: Any) -> None:
        object.__setattr__(config, name, value)

    store("filters", _size(config.filters, "filters"))
    store("kernel_size", _size(config.kernel_size, "kernel_size"))
    store("strides", _size(config.strides, "strides"))
    store("dilation_rate", _size(config.dilation_rate, "dilation_rate"))
    store("groups", _size(config.groups, "groups"))
    store("padding", _padding(config.padding, paddings))
    store("data_format", _data_format(config.data_format))
    if not isinstance(config.use_bias, (bool, np.bool_)):
        raise TypeError(f"use_bias must be a bool, got {config.use_bias!r} of type {type(config.use_bias).__name__}.")
    store("use_bias", bool(config.use_bias))
    check_size(
        config.effective_kernel_size,
        f"the kernel's span (kernel_size - 1) * dilation_rate + 1 with kernel_size="
        f"{config.kernel_size} and dilation_rate={config.dilation_rate}",
    )
    if isinstance(config.padding, str) and config.strides > 1 and config.dilation_rate > 1:
        raise ValueError(
            f"strides={config.strides} and dilation_rate={config.dilation_rate} cannot both be > 1 "
            f"with padding={config.padding!r} (Keras's rule); use one of them, or PyTorch-style "
            "integer padding."
        )
    if config.filters % config.groups:
        raise ValueError(
            f"groups={config.groups} must divide filters={config.filters}; each group produces "
            "filters // groups output channels."
        )
    store("activation", activations.validate(config.activation))
    store("kernel_initializer", initializers.get(config.kernel_initializer, "kernel_initializer"))
    store("bias_initializer", initializers.get(config.bias_initializer, "bias_initializer"))
    for name in ("kernel_regularizer", "bias_regularizer", "activity_regularizer"):
        store(name, regularizers.get(getattr(config, name), name))
    for name in ("kernel_constraint", "bias_constraint"):
        store(name, constraints.get(getattr(config, name), name))
    # The kernel has rank 3 and the bias rank 1: what cannot make or constrain them is refused now.
    for name, rank in (
        ("kernel_initializer", 3),
        ("bias_initializer", 1),
        ("kernel_constraint", 3),
        ("bias_constraint", 1),
    ):
        target = getattr(config, name)
        if hasattr(target, "check_target"):
            target.check_target(rank, name)


@dataclasses.dataclass(frozen=True)
class Conv1DConfig(_LayerFields):
    """The arguments of Keras's ``Conv1D`` (a 1-D convolution), in its names and with its defaults.

    The fields are those of :class:`Conv1DTransposeConfig` without ``output_padding``, validated
    the same way (frozen and hashable too). With ``n`` input steps the output has
    ``(n + left + right - ke) // strides + 1`` steps (``ceil(n / strides)`` for ``"same"``; see
    :func:`convtrans.conv1d`). The differences:

    Attributes:
      padding: ``"valid"``, ``"same"`` or ``"causal"`` (Keras, any case: ``"causal"`` pads
        ``(kernel_size - 1) * dilation_rate`` zeros on the left, so output step ``t`` depends on
        input steps ``<= t * strides`` only), or PyTorch-style integer padding ``p`` or
        ``(left, right)``: that many zeros on each side.
      groups: the kernel is ``(kernel_size, in_channels // groups, filters)`` (Keras's layout).
    """

    filters: int
    kernel_size: int
    strides: int = 1
    padding: Padding = "valid"
    data_format: str = "channels_last"
    dilation_rate: int = 1
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

    def __post_init__(self) -> None:
        _validate_layer(self, _CONV_PADDINGS)
        _check_hashable(self)

    kernel_layout: ClassVar[str] = "(kernel_size, in_channels // groups, filters)"

    def kernel_shape(self, in_channels: int) -> tuple[int, int, int]:
        """Keras layout ``(kernel_size, in_channels // groups, filters)``."""
        return (self.kernel_size, in_channels // self.groups, self.filters)

    def kernel_in_channels(self, kernel_shape: tuple[int, ...]) -> int:
        """The input channel count a kernel of ``kernel_shape`` was built for."""
        return kernel_shape[1] * self.groups


LayerConfig = Conv1DTransposeConfig | Conv1DConfig


def check_config(config: Any, argument: str = "config") -> Conv1DTransposeConfig:
    """``config`` itself; TypeError naming what was given unless it is a Conv1DTransposeConfig."""
    if not isinstance(config, Conv1DTransposeConfig):
        raise TypeError(f"{argument} must be a Conv1DTransposeConfig, got {type(config).__name__}.")
    return config


def check_conv_config(config: Any, argument: str = "config") -> Conv1DConfig:
    """``config`` itself; TypeError naming what was given unless it is a Conv1DConfig."""
    if not isinstance(config, Conv1DConfig):
        raise TypeError(f"{argument} must be a Conv1DConfig, got {type(config).__name__}.")
    return config

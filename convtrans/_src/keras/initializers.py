"""Implementation of :mod:`convtrans.initializers` (documented there)."""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from convtrans._src.checks import check_allocation, check_count, floating_dtype
from convtrans._src.keras.objects import KerasObject, check_axis, check_number, check_seed, resolve

# Standard deviation of a unit normal truncated to [-2, 2].
_TRUNCATED_STDDEV_FACTOR = 0.87962566103423978


def compute_fans(
    shape: Sequence[int],
    input_axes: Sequence[int] | None = None,
    output_axes: Sequence[int] | None = None,
) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of ``shape``, by Keras's rules.

    - rank 0: ``(1, 1)``; rank 1: ``(shape[0], shape[0])``;
    - rank >= 2: ``fan_in = shape[-2] * r`` and ``fan_out = shape[-1] * r`` with
      ``r = prod(shape[:-2])`` (the receptive field): for the transposed-convolution kernel
      ``(kernel_size, filters // groups, in_channels)``, ``fan_in = kernel_size * filters // groups``
      and ``fan_out = kernel_size * in_channels``;
    - with both ``input_axes`` and ``output_axes`` given (Keras 3): the products of those axes'
      sizes.

    Raises:
      ValueError: for an axis out of range.
    """
    shape = tuple(shape)
    if input_axes is not None and output_axes is not None:
        for name, axes in (("input_axes", input_axes), ("output_axes", output_axes)):
            if any(not -len(shape) <= a < len(shape) for a in axes):
                raise ValueError(f"{name}={list(axes)} is out of range for a weight of shape {shape}.")
        return math.prod(shape[a] for a in input_axes), math.prod(shape[a] for a in output_axes)
    if not shape:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


class InitializerFn(Protocol):
    """What flax and ``jax.nn.initializers`` call an initializer: ``init(key, shape, dtype)``."""

    def __call__(self, key: jax.Array, shape: Sequence[int], dtype: Any = ..., /) -> jax.Array: ...


@dataclasses.dataclass(frozen=True)
class Initializer(KerasObject):
    """``init(key, shape, dtype=float32) -> array`` with Keras's distribution.

    The signature of ``jax.nn.initializers``: ``key`` is a ``jax.random`` key, ``shape`` a tuple
    of sizes, ``dtype`` a floating dtype (float32 by default); the result has that shape and
    dtype. Subclasses are frozen dataclasses (hashable) that serialize to Keras with
    :meth:`to_keras`.
    """

    keras_module = "keras.initializers"

    def __call__(self, key: jax.Array, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> jax.Array:
        """A weight of ``shape`` and floating ``dtype`` drawn with ``key``; errors name the argument."""
        shape = _check_shape(shape)
        dtype = floating_dtype(dtype, "dtype")
        if not isinstance(key, (jax.Array, np.ndarray)):
            raise TypeError(f"key must be a jax.random key, e.g. jax.random.key(0), got {type(key).__name__}.")
        check_allocation({f"{type(self).__name__}'s weight": shape}, dtype, f"shape={shape}")
        return self._sample(key, shape, dtype)

    def _sample(self, key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        raise NotImplementedError

    def check_target(self, rank: int, argument: str) -> None:
        """ValueError if this initializer cannot make a weight of ``rank`` (``argument`` names
        where it was given)."""


def _check_shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence):
        raise TypeError(f"shape must be a tuple of sizes, got {shape!r}.")
    return tuple(check_count(size, f"shape[{i}]", minimum=0) for i, size in enumerate(shape))


def _axes(value: Any, argument: str) -> Any:
    if value is None:
        return None
    return (check_axis(value, argument),) if not isinstance(value, (list, tuple)) else check_axis(value, argument)


def _check_fields(initializer: Initializer, **checks: Any) -> None:
    """Validates and stores each named field with ``checks[name](value, name)``, and the seed."""
    for name, check in checks.items():
        object.__setattr__(initializer, name, check(getattr(initializer, name), name))
    if hasattr(initializer, "seed"):
        # getattr: the base class has no seed field, so type checkers refuse the attribute.
        object.__setattr__(initializer, "seed", check_seed(getattr(initializer, "seed")))  # noqa: B009


def _non_negative(value: Any, argument: str) -> float:
    return check_number(value, argument, minimum=0.0)


@dataclasses.dataclass(frozen=True)
class VarianceScaling(Initializer):
    """Samples with variance ``v = scale / max(1, fan)``, ``fan`` chosen by ``mode`` from
    :func:`compute_fans` (``fan_avg = (fan_in + fan_out) / 2``):

    - ``"truncated_normal"`` (also ``"normal"``): normal cut at two standard deviations, with
      stddev ``sqrt(v) / 0.87962566103423978`` so that the truncated distribution has variance
      ``v``;
    - ``"untruncated_normal"``: normal with stddev ``sqrt(v)``;
    - ``"uniform"``: uniform on ``[-sqrt(3 * v), sqrt(3 * v)]``.

    Attributes:
      scale: ``> 0``.
      mode: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``.
      distribution: ``"truncated_normal"``, ``"normal"``, ``"untruncated_normal"`` or ``"uniform"``.
      seed: kept for Keras configs only; the randomness is the ``key``'s.
      input_axes: the axes whose sizes multiply to ``fan_in`` (Keras 3); with ``output_axes``,
        they override the fan rule of :func:`compute_fans`.
      output_axes: the axes whose sizes multiply to ``fan_out`` (Keras 3).
    """

    scale: float = 1.0
    mode: str = "fan_in"
    distribution: str = "truncated_normal"
    seed: int | None = None
    input_axes: tuple[int, ...] | None = None
    output_axes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        scale = check_number(self.scale, "scale")
        if not scale > 0:
            raise ValueError(f"VarianceScaling scale must be positive, got {self.scale!r}.")
        if not isinstance(self.mode, str) or self.mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"VarianceScaling mode={self.mode!r}; expected 'fan_in', 'fan_out' or 'fan_avg'.")
        distribution = self.distribution.lower() if isinstance(self.distribution, str) else ""
        distribution = "truncated_normal" if distribution == "normal" else distribution
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise ValueError(
                f"VarianceScaling distribution={self.distribution!r}; expected 'truncated_normal', "
                "'untruncated_normal', 'normal' or 'uniform'."
            )
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "distribution", distribution)
        object.__setattr__(self, "input_axes", _axes(self.input_axes, "input_axes"))
        object.__setattr__(self, "output_axes", _axes(self.output_axes, "output_axes"))
        object.__setattr__(self, "seed", check_seed(self.seed))

    def fan_scale(self, shape: Sequence[int]) -> float:
        """``scale / max(1, fan)`` for ``shape``: the variance the samples are drawn with."""
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        return self.scale / max(1.0, fan)

    def _sample(self, key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        shape = tuple(shape)
        scale = self.fan_scale(shape)
        if self.distribution == "truncated_normal":
            stddev = math.sqrt(scale) / _TRUNCATED_STDDEV_FACTOR
            return jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype) * jnp.asarray(stddev, dtype)
        if self.distribution == "untruncated_normal":
            return jax.random.normal(key, shape, dtype) * jnp.asarray(math.sqrt(scale), dtype)
        limit = math.sqrt(3.0 * scale)
        return jax.random.uniform(key, shape, dtype, -limit, limit)


@dataclasses.dataclass(frozen=True, init=False)
class _VarianceScalingPreset(VarianceScaling):
    """A named VarianceScaling preset whose Keras config is ``seed``/``input_axes``/``output_axes``."""

    # (scale, mode, distribution) of the preset.
    _preset: ClassVar[tuple[float, str, str]]

    def __init__(
        self, seed: int | None = None, input_axes: Sequence[int] | None = None, output_axes: Sequence[int] | None = None
    ) -> None:
        scale, mode, distribution = self._preset
        # The axes are stored as tuples by __post_init__, whatever sequence is given.
        VarianceScaling.__init__(self, scale, mode, distribution, seed, cast(Any, input_axes), cast(Any, output_axes))

    def get_config(self) -> dict[str, Any]:
        """Keras's config of a preset: ``seed``, ``input_axes`` and ``output_axes`` (the class fixes
        scale, mode and distribution)."""
        return {
            "seed": self.seed,
            "input_axes": None if self.input_axes is None else list(self.input_axes),
            "output_axes": None if self.output_axes is None else list(self.output_axes),
        }


@dataclasses.dataclass(frozen=True, init=False)
class GlorotUniform(_VarianceScalingPreset):
    """Glorot (Xavier) uniform: ``U(-limit, limit)`` with ``limit = sqrt(6 / (fan_in + fan_out))``;
    ``VarianceScaling(scale=1.0, mode='fan_avg', distribution='uniform')``."""

    _preset = (1.0, "fan_avg", "uniform")


@dataclasses.dataclass(frozen=True, init=False)
class GlorotNormal(_VarianceScalingPreset):
    """Glorot (Xavier) normal: a normal truncated at two standard deviations, whose standard deviation
    after truncation is ``sqrt(2 / (fan_in + fan_out))``;
    ``VarianceScaling(scale=1.0, mode='fan_avg', distribution='truncated_normal')``."""

    _preset = (1.0, "fan_avg", "truncated_normal")


@dataclasses.dataclass(frozen=True, init=False)
class HeUniform(_VarianceScalingPreset):
    """He (Kaiming) uniform: ``U(-limit, limit)`` with ``limit = sqrt(6 / fan_in)``;
    ``VarianceScaling(scale=2.0, mode='fan_in', distribution='uniform')``."""

    _preset = (2.0, "fan_in", "uniform")


@dataclasses.dataclass(frozen=True, init=False)
class HeNormal(_VarianceScalingPreset):
    """He (Kaiming) normal: a normal truncated at two standard deviations, whose standard deviation
    after truncation is ``sqrt(2 / fan_in)``;
    ``VarianceScaling(scale=2.0, mode='fan_in', distribution='truncated_normal')``."""

    _preset = (2.0, "fan_in", "truncated_normal")


@dataclasses.dataclass(frozen=True, init=False)
class LecunUniform(_VarianceScalingPreset):
    """LeCun uniform: ``U(-limit, limit)`` with ``limit = sqrt(3 / fan_in)``;
    ``VarianceScaling(scale=1.0, mode='fan_in', distribution='uniform')``."""

    _preset = (1.0, "fan_in", "uniform")


@dataclasses.dataclass(frozen=True, init=False)
class LecunNormal(_VarianceScalingPreset):
    """LeCun normal: a normal truncated at two standard deviations, whose standard deviation after
    truncation is ``sqrt(1 / fan_in)``;
    ``VarianceScaling(scale=1.0, mode='fan_in', distribution='truncated_normal')``."""

    _preset = (1.0, "fan_in", "truncated_normal")


@dataclasses.dataclass(frozen=True)
class RandomNormal(Initializer):
    """Normal samples ``mean + stddev * N(0, 1)`` (Keras's defaults 0 and 0.05; names
    ``"random_normal"``, ``"normal"``).

    Attributes:
      mean: the mean.
      stddev: the standard deviation, >= 0.
      seed: kept for Keras configs only.
    """

    mean: float = 0.0
    stddev: float = 0.05
    seed: int | None = None

    def __post_init__(self) -> None:
        _check_fields(self, mean=check_number, stddev=_non_negative)

    def _sample(self, key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        return self.mean + self.stddev * jax.random.normal(key, tuple(shape), dtype)


@dataclasses.dataclass(frozen=True)
class TruncatedNormal(Initializer):
    """``mean + stddev * t`` with ``t`` a unit normal cut to ``[-2, 2]``, without variance
    correction (as Keras: the samples' stddev is about ``0.88 * stddev``; name
    ``"truncated_normal"``).

    Attributes:
      mean: the mean (0).
      stddev: the untruncated standard deviation, >= 0 (0.05).
      seed: kept for Keras configs only.
    """

    mean: float = 0.0
    stddev: float = 0.05
    seed: int | None = None

    def __post_init__(self) -> None:
        _check_fields(self, mean=check_number, stddev=_non_negative)

    def _sample(self, key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        return self.mean + self.stddev * jax.random.truncated_normal(key, -2.0, 2.0, tuple(shape), dtype)


@dataclasses.dataclass(frozen=True)
class RandomUniform(Initializer):
    """Uniform samples on ``[minval, maxval)`` (Keras's defaults -0.05 and 0.05; names
    ``"random_uniform"``, ``"uniform"``).

    Attributes:
      minval: the lower bound.
      maxval: the upper bound, ``>= minval``.
      seed: kept for Keras configs only.
    """

    minval: float = -0.05
    maxval: float = 0.05
    seed: int | None = None

    def __post_init__(self) -> None:
        _check_fields(self, minval=check_number, maxval=check_number)
        if self.minval > self.maxval:
            raise ValueError(f"RandomUniform needs minval <= maxval, got minval={self.minval}, maxval={self.maxval}.")

    def _sample(self, key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        return jax.random.uniform(key, tuple(shape), dtype, self.minval, self.maxval)


@dataclasses.dataclass(frozen=True)
class Orthogonal(Initializer):
    """Orthogonal rows or columns of the ``(prod(shape[:-1]), shape[-1])`` matrix, times ``gain``.

    The QR decomposition of a normal matrix, signs fixed by ``R``'s diagonal (so the result is
    uniformly distributed over orthogonal matrices), reshaped to ``shape`` (rank >= 2). For the
    ``(kernel_size, filters // groups, in_channels)`` kernel the matrix is
    ``(kernel_size * filters // groups, in_channels)``.

    Attributes:
      gain: the factor (1).
      seed: kept for Keras configs only.
    """

    gain: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        _check_fields(self, gain=check_number)

    def check_target(self, rank: int, argument: str) -> None:
        if rank < 2:
            raise ValueError(f"{argument}=Orthogonal needs a weight of rank >= 2; this one has rank {rank}.")

    def _sample(self, key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError(f"Orthogonal needs a weight of rank >= 2, got shape {shape}.")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = jax.random.normal(key, (max(rows, cols), min(rows, cols)), jnp.float32)
        q, r = jnp.linalg.qr(a)
        q = q * jnp.sign(jnp.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q.reshape(shape)).astype(dtype)


@dataclasses.dataclass(frozen=True)
class Identity(Initializer):
    """``gain * eye``; like Keras, only for rank-2 weights (so not for this layer's kernel)."""

    gain: float = 1.0

    def __post_init__(self) -> None:
        _check_fields(self, gain=check_number)

    def check_target(self, rank: int, argument: str) -> None:
        if rank != 2:
            raise ValueError(
                f"{argument}=Identity initializes rank-2 weights only (as in Keras); this one has rank {rank}."
            )

    def _sample(self, key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        shape = tuple(shape)
        if len(shape) != 2:
            raise ValueError(f"Identity can only initialize rank-2 weights (as in Keras), got shape {shape}.")
        return self.gain * jnp.eye(*shape, dtype=dtype)


@dataclasses.dataclass(frozen=True)
class Constant(Initializer):
    """Every entry ``value`` (name ``"constant"``).

    Attributes:
      value: a real number (0).
    """

    value: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", check_number(self.value, "value"))

    def _sample(self, key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        return jnp.full(tuple(shape), self.value, dtype)


@dataclasses.dataclass(frozen=True)
class Zeros(Initializer):
    """Every entry 0 (names ``"zeros"``, ``"zero"``): the default ``bias_initializer``."""

    def _sample(self, key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        return jnp.zeros(tuple(shape), dtype)


@dataclasses.dataclass(frozen=True)
class Ones(Initializer):
    """Every entry 1 (names ``"ones"``, ``"one"``)."""

    def _sample(self, key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        return jnp.ones(tuple(shape), dtype)


_CLASSES = (
    VarianceScaling,
    GlorotUniform,
    GlorotNormal,
    HeUniform,
    HeNormal,
    LecunUniform,
    LecunNormal,
    RandomNormal,
    TruncatedNormal,
    RandomUniform,
    Orthogonal,
    Identity,
    Constant,
    Zeros,
    Ones,
)
_REGISTRY: dict[str, Any] = {cls.__name__: cls for cls in _CLASSES}
_REGISTRY.update(
    OrthogonalInitializer=Orthogonal,
    IdentityInitializer=Identity,
    variance_scaling=VarianceScaling,
    glorot_uniform=GlorotUniform,
    glorot_normal=GlorotNormal,
    he_uniform=HeUniform,
    he_normal=HeNormal,
    lecun_uniform=LecunUniform,
    lecun_normal=LecunNormal,
    random_normal=RandomNormal,
    normal=RandomNormal,
    truncated_normal=TruncatedNormal,
    random_uniform=RandomUniform,
    uniform=RandomUniform,
    orthogonal=Orthogonal,
    identity=Identity,
    constant=Constant,
    zeros=Zeros,
    zero=Zeros,
    ones=Ones,
    one=Ones,
)


def get(identifier: Any, argument: str = "initializer") -> Initializer | InitializerFn:
    """An initializer from a Keras name (``"glorot_uniform"``, ``"he_normal"``, ``"zeros"``, ...
    or a class name), a Keras config dict ``{"class_name": ..., "config": {...}}``, a Keras
    initializer object, an :class:`Initializer`, or any ``jax.nn.initializers``-style callable
    ``(key, shape, dtype) -> array`` (returned as is).

    Raises:
      TypeError: for None, or a callable that cannot be called as ``init(key, shape, dtype)``.
      ValueError: for an unknown name, a config the class does not take, or Keras's STFT
        initializer.
    """
    if identifier is None:
        raise TypeError(f"{argument} must be an initializer, got None.")
    if isinstance(identifier, dict) and identifier.get("class_name") in ("STFT", "STFTInitializer"):
        raise ValueError(f"{argument}: Keras's STFT initializer is not supported by convtrans.")
    initializer = resolve(
        identifier,
        argument=argument,
        registry=_REGISTRY,
        base=Initializer,
        kind="initializer",
        allow_callable=True,
    )
    if not isinstance(initializer, Initializer):
        _check_takes_key_shape_dtype(initializer, argument)
    return initializer


def _check_takes_key_shape_dtype(fn: Any, argument: str) -> None:
    """TypeError now, rather than at the first ``init``, for a callable that cannot be called as
    ``fn(key, shape, dtype)`` (flax's and jax.nn.initializers' signature)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins and C functions: nothing to check
        return
    try:
        signature.bind(None, None, None)
    except TypeError as error:
        raise TypeError(f"{argument}={fn!r} cannot be called as init(key, shape, dtype): {error}.") from None

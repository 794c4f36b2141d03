"""Keras initializers as JAX initializers ``init(key, shape, dtype) -> array``.

Every object here has the signature of a ``jax.nn.initializers`` function, so it can be handed to
flax's ``self.param`` directly, and it draws from the distribution Keras draws from for the same
shape. Randomness comes from the JAX ``key``; a Keras ``seed`` is kept only so that configs round
trip.

Fan rules (Keras's ``compute_fans``): for a weight of rank >= 3,
``fan_in = shape[-2] * prod(shape[:-2])`` and ``fan_out = shape[-1] * prod(shape[:-2])``. For the
transposed-convolution kernel ``(kernel_size, filters // groups, in_channels)`` this gives
``fan_in = kernel_size * filters // groups`` and ``fan_out = kernel_size * in_channels`` (the reverse of the
data flow, as Keras does it). ``input_axes`` / ``output_axes`` override the rule, as in Keras 3.

Variance scaling divides ``scale`` by ``max(1, fan)`` and then samples

- ``truncated_normal``: normal cut at two standard deviations, stddev ``sqrt(scale) / 0.8796...``
  (so the truncated distribution has variance ``scale``);
- ``untruncated_normal``: normal with stddev ``sqrt(scale)``;
- ``uniform``: uniform on ``[-sqrt(3 * scale), sqrt(3 * scale)]``.

The presets, with ``fan_avg = (fan_in + fan_out) / 2``:

==================  ===================================================================
``GlorotUniform``   uniform on ``[-l, l]``, ``l = sqrt(3 / fan_avg) = sqrt(6 / (fan_in + fan_out))``
``GlorotNormal``    truncated normal of variance ``1 / fan_avg``
``HeUniform``       uniform on ``[-l, l]``, ``l = sqrt(6 / fan_in)``
``HeNormal``        truncated normal of variance ``2 / fan_in``
``LecunUniform``    uniform on ``[-l, l]``, ``l = sqrt(3 / fan_in)``
``LecunNormal``     truncated normal of variance ``1 / fan_in``
==================  ===================================================================

``GlorotUniform`` is the default ``kernel_initializer`` of the layers, ``Zeros`` the default
``bias_initializer``. Samples are drawn in the requested ``dtype`` (float32 by default; the
modules pass their ``param_dtype``).
"""

from convtrans._src.keras.initializers import (
    Constant,
    GlorotNormal,
    GlorotUniform,
    HeNormal,
    HeUniform,
    Identity,
    Initializer,
    LecunNormal,
    LecunUniform,
    Ones,
    Orthogonal,
    RandomNormal,
    RandomUniform,
    TruncatedNormal,
    VarianceScaling,
    Zeros,
    compute_fans,
    get,
)

__all__ = [
    "Constant",
    "GlorotNormal",
    "GlorotUniform",
    "HeNormal",
    "HeUniform",
    "Identity",
    "Initializer",
    "LecunNormal",
    "LecunUniform",
    "Ones",
    "Orthogonal",
    "RandomNormal",
    "RandomUniform",
    "TruncatedNormal",
    "VarianceScaling",
    "Zeros",
    "compute_fans",
    "get",
]

"""Implementation of :mod:`convtrans.activations` (documented there)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Activation = Callable[[jax.Array], jax.Array]


def linear(x: jax.Array) -> jax.Array:
    """``x`` itself: the identity (Keras's ``linear``, the activation of ``activation=None``)."""
    return x


def hard_sigmoid(x: jax.Array) -> jax.Array:
    """``relu6(x + 3) / 6``, i.e. ``clip(x / 6 + 0.5, 0, 1)`` (Keras 3; not TF 2.x's ``0.2 * x + 0.5``).

    Elementwise: same shape and dtype as ``x``.
    """
    return jax.nn.relu6(x + 3.0) / 6.0


def hard_silu(x: jax.Array) -> jax.Array:
    """``x * hard_sigmoid(x) = x * relu6(x + 3) / 6`` (Keras's ``hard_silu``, alias ``hard_swish``).

    Elementwise: same shape and dtype as ``x``.
    """
    return x * hard_sigmoid(x)


def hard_shrink(x: jax.Array, threshold: float = 0.5) -> jax.Array:
    """``x`` where ``|x| > threshold``, else 0. Elementwise: same shape and dtype as ``x``."""
    return jnp.where(jnp.abs(x) > threshold, x, jnp.zeros_like(x))


def soft_shrink(x: jax.Array, threshold: float = 0.5) -> jax.Array:
    """``x - threshold`` where ``x > threshold``, ``x + threshold`` where ``x < -threshold``, else 0.

    Elementwise: same shape and dtype as ``x``.
    """
    return jnp.where(x > threshold, x - threshold, jnp.where(x < -threshold, x + threshold, jnp.zeros_like(x)))


def tanh_shrink(x: jax.Array) -> jax.Array:
    """``x - tanh(x)``. Elementwise: same shape and dtype as ``x``."""
    return x - jnp.tanh(x)


def leaky_relu(x: jax.Array, negative_slope: float = 0.2) -> jax.Array:
    """``x`` where ``x >= 0``, else ``negative_slope * x``; Keras's default slope is 0.2 (jax's and
    PyTorch's 0.01, HiFi-GAN's 0.1). Elementwise: same shape and dtype as ``x``.
    """
    return jax.nn.leaky_relu(x, negative_slope)


def mish(x: jax.Array) -> jax.Array:
    """``x * tanh(softplus(x))`` with ``softplus(x) = log(1 + exp(x))``. Elementwise: same shape and
    dtype as ``x``.
    """
    return x * jnp.tanh(jax.nn.softplus(x))


def squareplus(x: jax.Array, b: float = 4.0) -> jax.Array:
    # jax.nn's jitted function is what Keras calls; a hand-written eager copy can differ by ulps.
    """``(x + sqrt(x ** 2 + b)) / 2``, a smooth ReLU (Keras's default ``b=4``). Elementwise: same
    shape and dtype as ``x``.
    """
    return jax.nn.squareplus(x, b)


def sparse_plus(x: jax.Array) -> jax.Array:
    """0 for ``x <= -1``, ``(x + 1) ** 2 / 4`` for ``-1 < x < 1``, ``x`` for ``x >= 1``.

    Elementwise: same shape and dtype as ``x``.
    """
    return jnp.where(x <= -1.0, jnp.zeros_like(x), jnp.where(x >= 1.0, x, jnp.square(x + 1.0) / 4.0))


def sparse_sigmoid(x: jax.Array) -> jax.Array:
    """0 for ``x <= -1``, ``(x + 1) / 2`` for ``-1 < x < 1``, 1 for ``x >= 1``.

    Elementwise: same shape and dtype as ``x``.
    """
    return jnp.where(x <= -1.0, jnp.zeros_like(x), jnp.where(x >= 1.0, jnp.ones_like(x), 0.5 * (x + 1.0)))


def sparsemax(x: jax.Array, axis: int = -1) -> jax.Array:
    """Keras's ``sparsemax`` along ``axis``, exactly as every Keras 3 backend computes it.

    Keras takes the threshold as ``tau = (sum of the sorted cumulative sums over the support - 1)
    / k``, where the textbook projection onto the simplex (Martins and Astudillo, 2016) uses only
    the ``k``-th cumulative sum; the two agree when the support has one element, and otherwise
    Keras's outputs need not sum to 1 (``[0.5, 0.4, -1]`` gives ``[0.3, 0.2, 0]``). We follow
    Keras, so ported models give the same outputs.

    ``y = max(x - tau, 0)`` along ``axis``, with ``tau`` as above and the support the ``k``
    largest entries ``z_(i)`` with ``z_(i) > (cumsum_i - 1) / i``. Same shape and dtype as ``x``.
    """
    z = jnp.moveaxis(x, axis, -1)
    z_sorted = -jnp.sort(-z, axis=-1)
    cumsum = jnp.cumsum(z_sorted, axis=-1)
    ranks = jnp.arange(1, z.shape[-1] + 1, dtype=x.dtype)
    support = z_sorted - (cumsum - 1) / ranks > 0
    k = jnp.sum(support, axis=-1, keepdims=True).astype(x.dtype)
    tau = (jnp.sum(jnp.where(support, cumsum, 0.0), axis=-1, keepdims=True) - 1) / k
    return jnp.moveaxis(jnp.maximum(z - tau, 0.0), -1, axis)


def glu(x: jax.Array, axis: int = -1) -> jax.Array:
    """Keras's gated linear unit: ``a * sigmoid(b)`` where ``a, b`` are the first and second halves of
    ``axis``, so that axis halves: ``(..., 2 * c)`` gives ``(..., c)`` (for ``axis=-1``).

    Raises:
      ValueError: if ``x.shape[axis]`` is odd.
    """
    if x.shape[axis] % 2:
        raise ValueError(
            f"activation 'glu' splits axis {axis} in two halves, but it has {x.shape[axis]} "
            "entries (odd); use an even number of filters."
        )
    return jax.nn.glu(x, axis)


def threshold(x: jax.Array, threshold: float, default_value: float) -> jax.Array:
    """``x`` where ``x > threshold``, else ``default_value`` (Keras's ``threshold``); same shape and
    dtype as ``x``. It needs both arguments, so pass it as
    ``functools.partial(threshold, threshold=..., default_value=...)``, not by name."""
    return jnp.where(x > threshold, x, jnp.asarray(default_value, x.dtype))


ACTIVATIONS: dict[str, Activation] = {
    "celu": jax.nn.celu,
    "elu": jax.nn.elu,
    "exponential": jnp.exp,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "glu": glu,
    "hard_shrink": hard_shrink,
    "hard_sigmoid": hard_sigmoid,
    "hard_silu": hard_silu,
    "hard_swish": hard_silu,
    "hard_tanh": lambda x: jnp.clip(x, -1.0, 1.0),
    "leaky_relu": leaky_relu,
    "linear": linear,
    "log_sigmoid": jax.nn.log_sigmoid,
    "log_softmax": lambda x: jax.nn.log_softmax(x, axis=-1),
    "mish": mish,
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "selu": jax.nn.selu,
    "sigmoid": jax.nn.sigmoid,
    "silu": jax.nn.silu,
    "soft_shrink": soft_shrink,
    "softmax": lambda x: jax.nn.softmax(x, axis=-1),
    "softplus": jax.nn.softplus,
    "softsign": jax.nn.soft_sign,
    "sparse_plus": sparse_plus,
    "sparse_sigmoid": sparse_sigmoid,
    "sparsemax": sparsemax,
    "squareplus": squareplus,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
    "tanh_shrink": tanh_shrink,
}


def validate(activation: str | Activation | None, argument: str = "activation") -> str | Activation:
    """The stored form of an activation: a known name (None -> ``"linear"``) or a callable.

    Keras's own functions (``keras.activations.relu``) become their names, so that configs holding
    them still serialize to Keras.

    Raises:
      ValueError: for a name that is not in :data:`ACTIVATIONS`, or ``"threshold"`` (which needs
        arguments).
      TypeError: for anything that is neither a name, None nor a callable.
    """
    if activation is None:
        return "linear"
    if isinstance(activation, str):
        if activation == "threshold":
            raise ValueError(
                "activation='threshold' needs `threshold` and `default_value` arguments (Keras "
                "accepts the bare name but fails when the layer is called). Pass "
                "functools.partial(convtrans.activations.threshold, threshold=..., "
                "default_value=...) instead."
            )
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"{argument}={activation!r} is not a Keras activation; expected one of "
                f"{sorted(ACTIVATIONS)}, None, or a callable."
            )
        return activation
    if callable(activation):
        # Keras's own functions (``keras.activations.relu``) are stored by name, so the config
        # still serializes to Keras; their defaults are the ones ACTIVATIONS implements.
        name = getattr(activation, "__name__", None)
        if name in ACTIVATIONS and (getattr(activation, "__module__", None) or "").startswith("keras."):
            return name
        return activation
    raise TypeError(
        f"{argument} must be an activation name, None or a callable; got {activation!r} of type "
        f"{type(activation).__name__}."
    )


def get(activation: str | Activation | None) -> Activation:
    """The function ``x -> y`` for an activation name (looked up in :data:`ACTIVATIONS`), None
    (:func:`linear`) or a callable (returned as is); validated as by :func:`validate`."""
    activation = validate(activation)
    return ACTIVATIONS[activation] if isinstance(activation, str) else activation

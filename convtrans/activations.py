"""Keras 3 activations by name, with Keras's exact definitions.

The traps, where a JAX or TF 2.x function of the same name differs: ``gelu`` is the exact (erf)
form; ``hard_sigmoid`` is ``relu6(x + 3) / 6``; ``leaky_relu``'s slope is 0.2; ``softmax``,
``log_softmax``, ``sparsemax`` and ``glu`` act on the last axis whatever the data format, and
``glu`` halves it.

An activation is a function ``x -> y`` applied to the layer's output ``conv(x) + bias`` of shape
``(..., steps, filters)`` (channels_last) or ``(..., filters, steps)`` (channels_first). All but
those four act elementwise: ``y`` has ``x``'s shape and dtype (float16 and bfloat16 included).
A layer's ``activation`` argument takes a name of :data:`ACTIVATIONS`, None (linear) or any such
callable; :func:`get` turns it into the function.
"""

from convtrans._src.keras.activations import (
    ACTIVATIONS,
    Activation,
    get,
    glu,
    hard_shrink,
    hard_sigmoid,
    hard_silu,
    leaky_relu,
    linear,
    mish,
    soft_shrink,
    sparse_plus,
    sparse_sigmoid,
    sparsemax,
    squareplus,
    tanh_shrink,
    threshold,
    validate,
)

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "get",
    "glu",
    "hard_shrink",
    "hard_sigmoid",
    "hard_silu",
    "leaky_relu",
    "linear",
    "mish",
    "soft_shrink",
    "sparse_plus",
    "sparse_sigmoid",
    "sparsemax",
    "squareplus",
    "tanh_shrink",
    "threshold",
    "validate",
]

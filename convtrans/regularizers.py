"""Keras weight/activity regularizers as pure functions of an array.

Each regularizer maps an array to a scalar penalty that is added to the training loss:

- ``L1(l1)``: ``l1 * sum(|w|)``
- ``L2(l2)``: ``l2 * sum(w ** 2)``
- ``L1L2(l1, l2)``: both terms

A layer adds three terms (see :func:`convtrans.conv1d_transpose`'s ``aux``): the kernel
regularizer of the ``(kernel_size, filters // groups, in_channels)`` kernel, the bias regularizer
of the ``(filters,)`` bias, and the activity regularizer of the output ``y`` divided by the number
of examples (the product of the batch axes), as Keras's ``layer.losses`` holds them. Each term is
a scalar of the parameters' dtype promoted to at least float32.

Names follow Keras 3: ``"l1"`` and ``"l2"`` give 0.01, ``"l1l2"`` gives ``L1L2()`` (0, 0).
``"l1_l2"`` keeps TF 2.x's meaning (0.01 and 0.01), which Keras 3 no longer accepts.
"""

from convtrans._src.keras.regularizers import (
    L1,
    L1L2,
    L2,
    Regularizer,
    get,
)

__all__ = [
    "L1",
    "L1L2",
    "L2",
    "Regularizer",
    "get",
]

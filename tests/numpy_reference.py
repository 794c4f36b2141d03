"""A naive NumPy transposed convolution, written from the definition and independent of lax.

Input sample ``i`` times tap ``j`` lands at position ``i * s + j * d`` of the "full" result
(length ``(n - 1) * s + ke``); the output is a window of the full result chosen by the padding
mode, with zeros where the window runs past it. The window is derived here from the Keras and
PyTorch definitions directly, not from :mod:`convtrans.geometry`.
"""

from __future__ import annotations

import math

import numpy as np


def _window(n, k, s, d, padding, output_padding):
    """(start, length) of the output inside the full result, from Keras's / PyTorch's rules."""
    ke = (k - 1) * d + 1
    full = (n - 1) * s + ke
    if padding == "valid":
        op = max(ke, s) - ke if output_padding is None else output_padding
        return 0, full + op
    if padding == "same":
        if output_padding is None:
            total = s + ke - 2
            length = n * s
        else:
            total = ke + ke % 2 - 2 + output_padding
            length = (n - 1) * s + ke % 2 + output_padding
        left = min(math.ceil(total / 2), ke - 1)
        return ke - 1 - left, length
    left, right = (padding, padding) if isinstance(padding, int) else padding
    return left, full - left - right + (output_padding or 0)


def conv1d_transpose(
    x,
    kernel,
    bias=None,
    *,
    strides=1,
    padding="valid",
    output_padding=None,
    dilation_rate=1,
    groups=1,
    data_format="channels_last",
    activation=None,
):
    """``x`` (batch, steps, in) or (batch, in, steps); ``kernel`` (k, filters // groups, in)."""
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    if data_format == "channels_first":
        x = x.transpose(0, 2, 1)
    batch, n, cin = x.shape
    k, fpg, _ = kernel.shape
    s, d = strides, dilation_rate
    ke = (k - 1) * d + 1
    full = np.zeros((batch, (n - 1) * s + ke, fpg * groups))
    cin_g = cin // groups
    for g in range(groups):
        xs = x[:, :, g * cin_g : (g + 1) * cin_g]
        w = kernel[:, :, g * cin_g : (g + 1) * cin_g]  # (k, fpg, cin_g)
        for i in range(n):
            for j in range(k):
                full[:, i * s + j * d, g * fpg : (g + 1) * fpg] += xs[:, i, :] @ w[j].T
    start, length = _window(n, k, s, d, padding, output_padding)
    y = np.zeros((batch, length, fpg * groups))
    for t in range(length):
        if 0 <= start + t < full.shape[1]:
            y[:, t] = full[:, start + t]
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    if activation is not None:
        y = activation(y)
    if data_format == "channels_first":
        y = y.transpose(0, 2, 1)
    return y


def conv1d_transpose_of(config, x, kernel, bias=None, activation=None):
    """:func:`conv1d_transpose` with the geometry of a ``Conv1DTransposeConfig``."""
    return conv1d_transpose(
        x,
        kernel,
        bias,
        strides=config.strides,
        padding=config.padding,
        output_padding=config.output_padding,
        dilation_rate=config.dilation_rate,
        groups=config.groups,
        data_format=config.data_format,
        activation=activation,
    )

"""Kernel functions: pure computations of the transposed convolution (no bias, no thresholds).

Each takes ``(x, kernel, config, precision)`` with a rank-3 ``x`` in ``config.data_format`` and
Keras's ``(kernel_size, filters // groups, in_channels)`` kernel.
"""

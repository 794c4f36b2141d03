"""``conv1d_transpose``: the pure, jit/vmap/grad-safe 1-D transposed convolution.

The computation is split in two: a *kernel function* computes the transposed convolution itself
(no bias, no activation) in the config's data format, and :func:`conv1d_transpose` wraps it with
input checks, bias, activation and the regularization terms. Kernel functions are registered by
name in :data:`IMPLEMENTATIONS`, so the reference and the fast paths are interchangeable and can be
checked against each other.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp

from convtrans import activations
from convtrans.config import Conv1DTransposeConfig
from convtrans.geometry import output_length
from convtrans.gemm import accumulation_dtype, gemm_conv
from convtrans.polyphase import polyphase_conv
from convtrans.reference import lhs_dilation_conv

Params = Mapping[str, jax.Array]
Aux = dict[str, jax.Array]
# (x, kernel, config, precision) -> conv output without bias, in config.data_format.
KernelFn = Callable[[jax.Array, jax.Array, Conv1DTransposeConfig, Any], jax.Array]

REGULARIZATION_KEYS = ("kernel", "bias", "activity")


IMPLEMENTATIONS: dict[str, KernelFn] = {
    "lhs_dilation": lhs_dilation_conv,
    "polyphase": polyphase_conv,
    "gemm": gemm_conv,
}


def default_implementation(backend: Optional[str] = None) -> str:
    """The implementation :func:`conv1d_transpose` uses on ``backend`` (default: JAX's).

    ``"polyphase"`` everywhere. On CPU this is measured (``make bench``, README "Performance"):
    its gradients are ordinary convolutions (GEMMs for wide or grouped layers, Winograd's F(2, r)
    products for two- and three-tap phases from 64 channels), many times faster
    than the reference's window-reversed weight gradient. On GPU/TPU it is chosen by reasoning,
    not measurement (no accelerator was available when it was chosen): the reference's
    base-dilated convolution does
    ``s`` times the work unless XLA maps it to cuDNN's backward-data, and its weight gradient
    matches no cuDNN pattern, while the polyphase form is a plain stride-1 convolution that
    every backend runs natively.
    """
    if backend is None:
        backend = jax.default_backend()
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a platform name such as 'cpu' or 'gpu', got {backend!r}.")
    return "polyphase"


def _check_inputs(params: Any, x: Any, config: Conv1DTransposeConfig) -> None:
    if not isinstance(config, Conv1DTransposeConfig):
        raise TypeError(f"config must be a Conv1DTransposeConfig, got {type(config).__name__}.")
    if not isinstance(params, Mapping):
        raise TypeError(
            f"params must be a mapping {{'kernel': ..., 'bias': ...}}, got {type(params).__name__}."
        )
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"x must be an array, got {type(x).__name__}.")
    if x.ndim != 3:
        layout = "(batch, steps, channels)" if config.data_format == "channels_last" else "(batch, channels, steps)"
        raise ValueError(
            f"x must have rank 3 {layout} for data_format={config.data_format!r}, got shape "
            f"{tuple(x.shape)} (rank {x.ndim}). Use jax.vmap for extra leading axes."
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"x must have a floating dtype (float16, bfloat16, float32, float64), got {x.dtype}."
        )
    in_channels = x.shape[config.channel_axis]
    if in_channels % config.groups:
        raise ValueError(
            f"groups={config.groups} must divide the input's {in_channels} channels (x shape "
            f"{tuple(x.shape)}, data_format={config.data_format!r})."
        )
    expected = {"kernel": config.kernel_shape(in_channels)}
    if config.use_bias:
        expected["bias"] = (config.filters,)
    for name, shape in expected.items():
        if name not in params:
            raise ValueError(f"params lacks {name!r}; expected an array of shape {shape}.")
        value = params[name]
        if not hasattr(value, "shape") or tuple(value.shape) != shape:
            got = tuple(value.shape) if hasattr(value, "shape") else type(value).__name__
            hint = ""
            if name == "kernel" and hasattr(value, "shape") and len(value.shape) == 3 and value.shape[:2] == shape[:2]:
                hint = (
                    f" The kernel was built for {value.shape[2]} input channels, but x has "
                    f"{in_channels}."
                )
            raise ValueError(
                f"params[{name!r}] must have shape {shape} (Keras layout (kernel_size, "
                f"filters // groups, in_channels) for the kernel), got {got}.{hint}"
                if name == "kernel" else f"params['bias'] must have shape {shape}, got {got}."
            )
        if not jnp.issubdtype(value.dtype, jnp.floating):
            raise TypeError(f"params[{name!r}] must be floating, got dtype {value.dtype}.")
    if not config.use_bias and "bias" in params:
        raise ValueError("params has a 'bias' but config.use_bias is False.")
    unknown = sorted(map(str, set(params) - {"kernel", "bias"}))
    if unknown:
        raise ValueError(f"params has unknown keys {unknown}; expected only {sorted(expected)}.")
    output_length(config, x.shape[config.time_axis])


def regularization_terms(params: Params, y: jax.Array, config: Conv1DTransposeConfig) -> Aux:
    """The layer's penalties, each a float scalar; keys are always ``kernel, bias, activity``.

    Their sum equals Keras's ``sum(layer.losses)``: the kernel and bias regularizers of the
    weights, and the activity regularizer of the output divided by the batch size (zero for an
    empty batch).
    """
    dtype = jnp.promote_types(params["kernel"].dtype, jnp.float32)
    zero = jnp.zeros((), dtype)

    def penalty(regularizer, value):
        return zero if regularizer is None else regularizer(value).astype(dtype)

    batch = y.shape[0]
    activity = penalty(config.activity_regularizer, y.astype(jnp.promote_types(y.dtype, dtype)))
    return {
        "kernel": penalty(config.kernel_regularizer, params["kernel"]),
        "bias": penalty(config.bias_regularizer, params["bias"]) if config.use_bias else zero,
        "activity": activity / batch if batch else zero,
    }


def bias_and_activation(params: Params, z: jax.Array, config: Conv1DTransposeConfig) -> jax.Array:
    """``activation(z + bias)`` for a kernel function's output ``z`` (bias cast to ``z.dtype``).

    Shared with :mod:`convtrans.streaming`, which applies it chunk by chunk.
    """
    if config.use_bias:
        # Added in the accumulation dtype (float32 for 16-bit z) and rounded once, which is what
        # a 16-bit add computes anyway; the point is the transpose: the bias gradient becomes a
        # float32 sum (a bfloat16 one is lowered by XLA:CPU to a slow windowed reduction, measured
        # 2-5 ms on the benchmark shapes, and accumulates in 16 bits).
        accumulate = accumulation_dtype(z.dtype)
        bias = params["bias"].astype(accumulate)
        bias = bias if config.data_format == "channels_last" else bias[:, None]
        z = (z.astype(accumulate) + bias).astype(z.dtype)
    return activations.get(config.activation)(z)


def conv1d_transpose(
    params: Params,
    x: jax.Array,
    config: Conv1DTransposeConfig,
    *,
    precision: Any = None,
    implementation: Optional[str] = None,
) -> tuple[jax.Array, Aux]:
    """Keras's ``Conv1DTranspose`` as a pure function: ``y = activation(conv(x) + bias)``.

    Args:
      params: ``{"kernel": (kernel_size, filters // groups, in_channels), "bias": (filters,)}``
        (Keras layout; ``bias`` only when ``config.use_bias``).
      x: ``(batch, steps, in_channels)`` for channels_last or ``(batch, in_channels, steps)`` for
        channels_first, floating. The computation runs in ``x.dtype`` (parameters are cast).
      config: the layer's configuration (hashable: pass it as a static argument under jit).
      precision: ``lax.Precision`` for the convolution.
      implementation: a key of :data:`IMPLEMENTATIONS`; None picks the fastest for the backend.

    Returns:
      ``(y, aux)``: ``y`` of shape ``(batch, output_length(config, steps), filters)`` (or
      channels first), and ``aux``, a dict of scalar regularization terms with keys
      ``kernel``, ``bias`` and ``activity`` whose sum is Keras's ``sum(layer.losses)``.
    """
    _check_inputs(params, x, config)
    name = default_implementation() if implementation is None else implementation
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"implementation={name!r} is unknown; expected one of {sorted(IMPLEMENTATIONS)}.")
    kernel = params["kernel"].astype(x.dtype)
    y = bias_and_activation(params, IMPLEMENTATIONS[name](x, kernel, config, precision), config)
    return y, regularization_terms(params, y, config)

"""``conv1d_transpose``: input checks -> plan -> kernel -> bias and activation -> penalties.

The transposed convolution itself (no bias, no activation) is computed by
:func:`transposed_convolution` on a ``(batch, steps, channels)`` (or channels-first) array, by the
plan :mod:`convtrans._src.dispatch` chooses for the platform the program is lowered for.
:func:`conv1d_transpose` brings inputs of any rank >= 2 to that shape, and adds the bias, the
activation and the regularization terms.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import DTypeLike

from convtrans._src import autotune, dispatch, geometry
from convtrans._src.checks import (
    check_allocation,
    check_array,
    check_channels,
    check_count,
    check_floating,
    check_floating_weight,
    check_input_rank,
    check_not_foreign,
    check_params_mapping,
    floating_dtype,
    is_symbolic,
)
from convtrans._src.config import Conv1DConfig, Conv1DTransposeConfig, LayerConfig, check_config, check_conv_config
from convtrans._src.geometry import Size, TransposePads
from convtrans._src.keras import activations
from convtrans._src.kernels.layout import dimension_numbers
from convtrans._src.kernels.polyphase import convolve
from convtrans._src.numerics import accumulation_dtype
from convtrans._src.plan import Plan

Params = Mapping[str, jax.Array]
Aux = dict[str, jax.Array]
# (x, kernel, config, precision) -> conv output without bias, in config.data_format, rank 3.
KernelFn = Callable[[jax.Array, jax.Array, Conv1DTransposeConfig, Any], jax.Array]
Implementation = str | Plan | None

REGULARIZATION_KEYS = ("kernel", "bias", "activity")


def transposed_convolution(
    x: jax.Array,
    kernel: jax.Array,
    config: Conv1DTransposeConfig,
    precision: Any = None,
    implementation: Implementation = None,
) -> jax.Array:
    """The transposed convolution of a rank-3 ``x`` by ``kernel`` (no bias), by the plan of the
    platform the program is lowered for.

    ``implementation`` None (or ``"polyphase"``) lets :func:`convtrans._src.dispatch.select_plan`
    choose per platform, and when the CPU plan differs from the other platforms' the program holds
    both, selected by ``jax.lax.platform_dependent`` when it is lowered; with autotuning on
    (:func:`convtrans.autotune`), the default backend's plan is the tuned one. A name or a
    :class:`Plan` forces that plan everywhere.
    """
    in_channels = x.shape[config.channel_axis]
    length = x.shape[config.time_axis]
    on_cpu, elsewhere = (
        dispatch.resolve(implementation, config, in_channels, length, x.dtype, platform)
        for platform in ("cpu", "default")
    )
    if implementation is None or implementation == "polyphase":
        default_cpu = jax.default_backend() == "cpu"
        tuned = autotune.tuned_plan(config, x.shape, x.dtype, precision, on_cpu if default_cpu else elsewhere)
        if tuned is not None:
            on_cpu, elsewhere = (tuned, elsewhere) if default_cpu else (on_cpu, tuned)
    if on_cpu == elsewhere:
        return convolve(x, kernel, config, precision, on_cpu)
    return lax.platform_dependent(
        x,
        kernel,
        cpu=functools.partial(convolve, config=config, precision=precision, plan=on_cpu),
        default=functools.partial(convolve, config=config, precision=precision, plan=elsewhere),
    )


@functools.wraps(geometry.output_length)
def output_length(config: Conv1DTransposeConfig, length: Size) -> Size:
    return geometry.output_length(check_config(config), length)


@functools.wraps(geometry.transpose_pads)
def transpose_pads(config: Conv1DTransposeConfig) -> TransposePads:
    return geometry.transpose_pads(check_config(config))


IMPLEMENTATIONS: dict[str, KernelFn] = {
    name: functools.partial(transposed_convolution, implementation=name) for name in dispatch.IMPLEMENTATION_NAMES
}


def default_implementation(backend: str | None = None) -> str:
    """The implementation :func:`conv1d_transpose` uses by default: ``"polyphase"`` on every
    platform (its plan, chosen per platform, is what :func:`convtrans.plan` returns).

    ``backend`` (``"cpu"``, ``"gpu"``, ``"tpu"``, ...; None for JAX's default) is checked to be a
    known platform."""
    dispatch.platform_of(backend)
    return "polyphase"


def check_params(params: Any, config: LayerConfig, in_channels: int) -> None:
    """The ``{"kernel", "bias"}`` mapping a layer of ``in_channels`` inputs needs, or an error
    naming the key, the shape or the dtype that is wrong."""
    check_params_mapping(params)
    for name, value in params.items():
        check_not_foreign(value, f"params[{name!r}]")
    expected: dict[str, tuple[int, ...]] = {"kernel": config.kernel_shape(in_channels)}
    if config.use_bias:
        expected["bias"] = (config.filters,)
    for name, shape in expected.items():
        if name not in params:
            raise ValueError(f"params lacks {name!r}; expected an array of shape {shape}.")
        value = params[name]
        if not hasattr(value, "shape") or tuple(value.shape) != shape:
            got = tuple(value.shape) if hasattr(value, "shape") else type(value).__name__
            hint = ""
            if name == "kernel" and hasattr(value, "shape") and len(value.shape) == 3:
                built = config.kernel_in_channels(tuple(value.shape))
                if config.kernel_shape(built) == tuple(value.shape):
                    hint = f" The kernel was built for {built} input channels, but x has {in_channels}."
            raise ValueError(
                f"params[{name!r}] must have shape {shape} (Keras layout {config.kernel_layout} "
                f"for the kernel), got {got}.{hint}"
                if name == "kernel"
                else f"params['bias'] must have shape {shape}, got {got}."
            )
        check_floating_weight(value, f"params[{name!r}]")
    if not config.use_bias and "bias" in params:
        raise ValueError("params has a 'bias' but config.use_bias is False.")
    unknown = sorted(map(str, set(params) - {"kernel", "bias"}))
    if unknown:
        raise ValueError(f"params has unknown keys {unknown}; expected only {sorted(expected)}.")


def check_input(x: Any, config: LayerConfig) -> int:
    """Checks ``x`` against ``config`` (an array of rank >= 2, floating, channels divisible by
    ``groups``, a length the padding leaves an output for); returns its channel count."""
    check_array(x)
    shape = tuple(x.shape)
    check_input_rank(shape, config.data_format)
    check_floating(x.dtype)
    in_channels, _ = _channels_and_length(shape, config)
    _check_working_memory(shape, x.dtype, in_channels, config)
    return in_channels


def _check_working_memory(shape: tuple[Any, ...], dtype: Any, in_channels: int, config: LayerConfig) -> None:
    """ValueError unless the output and the largest temporaries a plan may make fit in memory:
    the dilated kernel (the convolutions may spread its taps out) and, for a transposed
    convolution, the stride-dilated input of the reference form."""
    length = shape[config.time_axis]
    out_shape = list(shape)
    out_shape[config.time_axis] = _output_steps(config, length)
    out_shape[config.channel_axis] = config.filters
    arrays = {"the output": tuple(out_shape)}
    if config.dilation_rate > 1:
        arrays["the dilated kernel"] = (config.effective_kernel_size, in_channels // config.groups, config.filters)
    if isinstance(config, Conv1DTransposeConfig) and config.strides > 1 and not is_symbolic(length):
        dilated = list(shape)
        dilated[config.time_axis] = (length - 1) * config.strides + 1
        arrays["the stride-dilated input"] = tuple(dilated)
    check_allocation(
        arrays,
        dtype,
        f"they come from x of shape {shape} and filters={config.filters}, kernel_size="
        f"{config.kernel_size}, strides={config.strides}, dilation_rate="
        f"{config.dilation_rate}, padding={config.padding!r}",
    )


def _output_steps(config: LayerConfig, length: Size) -> Size:
    if isinstance(config, Conv1DConfig):
        return geometry.conv_output_length(config, length)
    return geometry.output_length(config, length)


def _channels_and_length(shape: tuple[Any, ...], config: LayerConfig, argument: str = "x") -> tuple[int, Size]:
    """The channels and steps of an input ``shape`` of checked rank, checked against ``config``
    (channels divisible by ``groups``, a length the padding leaves an output for)."""
    in_channels = check_channels(shape, config.channel_axis, config.groups, config.data_format, argument=argument)
    length = shape[config.time_axis]
    _output_steps(config, length)
    return in_channels, length


def as_batch(x: jax.Array) -> tuple[jax.Array, tuple[Any, ...]]:
    """``x`` of shape ``(*lead, a, b)`` as ``(prod(lead), a, b)``, and ``lead`` (``()`` for rank 2)."""
    lead = tuple(x.shape[:-2])
    if len(lead) == 1:
        return x, lead
    return x.reshape((math.prod(lead),) + tuple(x.shape[-2:])), lead


def regularization_terms(params: Params, y: jax.Array, config: LayerConfig, examples: Any = None) -> Aux:
    """The layer's penalties, each a float scalar; keys are always ``kernel, bias, activity``.

    Their sum equals Keras's ``sum(layer.losses)``: the kernel and bias regularizers of the
    weights, and the activity regularizer of the output divided by the number of examples
    ``examples`` (default ``y.shape[0]``, the batch size; zero for an empty batch).
    """
    dtype = jnp.promote_types(params["kernel"].dtype, jnp.float32)
    zero = jnp.zeros((), dtype)

    def penalty(regularizer: Callable[[jax.Array], jax.Array] | None, value: jax.Array) -> jax.Array:
        return zero if regularizer is None else regularizer(value).astype(dtype)

    examples = y.shape[0] if examples is None else examples
    activity = penalty(config.activity_regularizer, y.astype(jnp.promote_types(y.dtype, dtype)))
    if is_symbolic(examples):  # a symbolic size is >= 1
        activity = activity / jnp.asarray(examples, dtype)
    else:
        activity = activity / examples if examples else zero
    return {
        "kernel": penalty(config.kernel_regularizer, params["kernel"]),
        "bias": penalty(config.bias_regularizer, params["bias"]) if config.use_bias else zero,
        "activity": activity,
    }


def _nonfinite_filters(kernel: jax.Array, config: LayerConfig, dtype: Any) -> jax.Array:
    """``(filters,)``: 0 where every kernel entry feeding output channel ``f`` is finite, NaN
    where one is not (``0 * x`` is NaN exactly for non-finite ``x``).

    Added to the output, it makes the rule for a non-finite kernel the same in every plan and
    form: the whole output channel is non-finite. Left to the convolutions, the reach of a NaN
    tap would depend on whether a plan multiplies it by padding and inserted zeros, which the
    reference does for some layers and the phase and GEMM forms do not.
    """
    zeros = lax.stop_gradient(kernel).astype(dtype) * 0
    if isinstance(config, Conv1DConfig):  # (k, in/g, filters)
        return zeros.sum((0, 1))
    taps, per_group = kernel.shape[0], kernel.shape[1]  # (k, f/g, g * in/g): filter f = (g, f/g)
    grouped = zeros.reshape(taps, per_group, config.groups, -1).sum((0, 3))
    return grouped.T.reshape(config.filters)


def bias_and_activation(params: Params, z: jax.Array, config: LayerConfig) -> jax.Array:
    """``activation(z + bias)`` for a kernel function's output ``z`` (bias cast to ``z.dtype``).

    A non-finite entry of ``params["kernel"]`` makes every output of its channel NaN (see
    :func:`_nonfinite_filters`). Shared with :mod:`convtrans.streaming`, which applies it chunk
    by chunk.
    """
    # Added in the accumulation dtype (float32 for 16-bit z) and rounded once, which is what
    # a 16-bit add computes anyway; the point is the transpose: the bias gradient becomes a
    # float32 sum (a bfloat16 one is a slow windowed reduction on XLA:CPU, and accumulates
    # in 16 bits).
    accumulate = accumulation_dtype(z.dtype)
    shift = _nonfinite_filters(params["kernel"], config, accumulate) if "kernel" in params else None
    if config.use_bias:
        bias = params["bias"].astype(accumulate)
        shift = bias if shift is None else bias + shift
    if shift is not None:
        shift = shift if config.data_format == "channels_last" else shift[:, None]
        z = (z.astype(accumulate) + shift).astype(z.dtype)
    return activations.get(config.activation)(z)


def conv1d_transpose(
    params: Params,
    x: jax.Array,
    config: Conv1DTransposeConfig,
    *,
    precision: lax.PrecisionLike = None,
    implementation: Implementation = None,
) -> tuple[jax.Array, Aux]:
    """Keras's ``Conv1DTranspose`` as a pure function: ``y = activation(conv_transpose(x) + bias)``.

    With ``n`` input steps, ``s = strides``, ``d = dilation_rate`` and ``ke = (kernel_size - 1) * d
    + 1``, each input step ``i`` and tap ``j`` land at position ``i * s + j * d`` of the *full
    result* (per group; ``W = params["kernel"]``)::

        F[p, f] = sum over (i, j, c) with i * s + j * d = p  of  x[i, c] * W[j, f % (filters // groups), c]
                  (c over the input channels of f's group),   0 <= p < (n - 1) * s + ke

    and ``y[t, f] = activation(F[t + c0, f] + bias[f])`` for ``0 <= t <
    output_length(config, n)``, where ``c0 = ke - 1 - left`` with ``left`` from
    :func:`convtrans.transpose_pads` (``F`` is zero outside its range, where ``output_padding``
    or padding reaches): the transpose of a strided convolution, whence the name.

    Args:
      params: ``{"kernel": (kernel_size, filters // groups, in_channels), "bias": (filters,)}``
        (Keras layout; ``bias`` only when ``config.use_bias``).
      x: ``(..., steps, in_channels)`` for channels_last or ``(..., in_channels, steps)`` for
        channels_first, floating, of rank >= 2: ``(steps, in_channels)`` is one example, and every
        axis before the last two is a batch axis. Batch axes and ``steps`` may be symbolic
        (``jax.export``). The computation runs in ``x.dtype`` (parameters are cast); float16 and
        bfloat16 products accumulate in float32 and are rounded once.
      config: the layer's configuration (hashable: pass it as a static argument under jit).
      precision: ``lax.Precision`` for the convolution.
      implementation: None (or ``"polyphase"``) runs the plan :func:`convtrans.plan` gives for the
        platform the program is lowered for (with :func:`convtrans.autotune` on, the plan timed
        fastest on the default backend); ``"lhs_dilation"`` (the reference, bit for bit
        Keras), ``"gemm"`` or a :class:`convtrans.Plan` forces that computation.

    Returns:
      ``(y, aux)``: ``y`` of shape ``(..., output_length(config, steps), filters)`` (channels
      first: ``(..., filters, output_length(config, steps))``) and ``x``'s dtype, and ``aux``, a
      dict of scalar regularization terms with keys ``kernel``, ``bias`` and ``activity`` (zero
      where no regularizer is set; float32, or float64 for float64 parameters) whose sum is
      Keras's ``sum(layer.losses)`` (the activity term divided by the number of examples, the
      product of the batch axes).

    Raises:
      ValueError: for a forced plan that cannot compute this layer, saying why; for parameters or
        an input that do not fit ``config`` (wrong shapes, too short an input for the padding).
      TypeError: for a non-floating input or parameters, or a config of the wrong type.
    """
    check_config(config)
    in_channels = check_input(x, config)
    check_params(params, config, in_channels)
    x3, lead = as_batch(x)
    kernel = params["kernel"].astype(x.dtype)
    z = transposed_convolution(x3, kernel, config, precision, implementation)
    y3 = bias_and_activation(params, z, config)
    y = y3.reshape(lead + tuple(y3.shape[1:]))
    return y, regularization_terms(params, y3, config, examples=math.prod(lead))


def _layer_shape(config: Conv1DTransposeConfig, x_shape: Any, dtype: Any) -> tuple[int, Any]:
    check_config(config)
    if isinstance(x_shape, (str, bytes)):
        raise TypeError(f"x_shape must be a tuple of sizes, got {x_shape!r}.")
    try:
        shape = tuple(x_shape)
    except TypeError:
        raise TypeError(f"x_shape must be a tuple of sizes, got {x_shape!r}.") from None
    shape = tuple(
        size if is_symbolic(size) else check_count(size, f"x_shape[{i}]", minimum=0) for i, size in enumerate(shape)
    )
    check_input_rank(shape, config.data_format, argument="x_shape")
    floating_dtype(dtype)
    return _channels_and_length(shape, config, argument="x_shape")


def plan(
    config: Conv1DTransposeConfig, x_shape: Sequence[int], dtype: DTypeLike = "float32", platform: str | None = None
) -> Plan:
    """The :class:`~convtrans.Plan` that :func:`conv1d_transpose` runs for inputs of ``x_shape`` and
    ``dtype``.

    A pure function of the layer, the input's channels and steps per example (the batch axes do
    not matter, so ``jax.vmap`` gets the plan of the batched call), the dtype and the platform;
    nothing is compiled.

    Args:
      config: the layer's configuration.
      x_shape: the input's shape, rank >= 2, in ``config.data_format``; steps may be symbolic.
      dtype: the input's floating dtype.
      platform: ``"cpu"``, ``"cuda"``, ``"rocm"``, ``"tpu"``, ... (``"gpu"`` is any GPU); None is
        the platform of JAX's default backend.
    """
    in_channels, length = _layer_shape(config, x_shape, dtype)
    return dispatch.select_plan(config, in_channels, length, dtype, dispatch.platform_of(platform))


def explain(
    config: Conv1DTransposeConfig, x_shape: Sequence[int], dtype: DTypeLike = "float32", platform: str | None = None
) -> str:
    """:func:`plan`'s choice as text, one line per part of the plan with the reason and the
    threshold that decided it (arguments as for :func:`plan`). With autotuning on
    (:func:`convtrans.autotune`), a last line says that the default backend runs the tuned plan
    instead, and which one if it is already stored."""
    in_channels, length = _layer_shape(config, x_shape, dtype)
    platform = dispatch.platform_of(platform)
    text = dispatch.explain_plan(config, in_channels, length, dtype, platform)
    if not autotune.autotune_enabled() or platform != jax.default_backend():
        return text
    tuned = autotune.stored_plan(config, x_shape, dtype)
    if tuned is None:
        return text + "\nautotuning is on: the first trace of this layer times its candidates and runs the fastest."
    return text + f"\nautotuning is on: {tuned.plan} runs, the stored choice for this input shape."


def conv1d(
    params: Params,
    x: jax.Array,
    config: Conv1DConfig,
    *,
    precision: lax.PrecisionLike = None,
) -> tuple[jax.Array, Aux]:
    """Keras's ``Conv1D`` as a pure function: ``y = activation(conv(x) + bias)``.

    ``y[..., t, o] = activation(bias[o] + sum_{j, c} xp[..., t * s + j * d, c] W[j, c, o])``, ``c``
    over the input channels of ``o``'s group, with ``xp`` the input padded with zeros by
    ``(left, right)``: none for ``"valid"``; ``ke - 1`` on the left for ``"causal"``;
    ``total = max((ceil(n / s) - 1) * s + ke - n, 0)`` split as ``left = total // 2``,
    ``right = total - left`` for ``"same"`` (XLA's rule, so Keras's on JAX); the given pair for
    integer padding. The output has ``(n + left + right - ke) // s + 1`` steps.

    Args:
      params: ``{"kernel": (kernel_size, in_channels // groups, filters), "bias": (filters,)}``
        (Keras layout; ``bias`` only when ``config.use_bias``).
      x: ``(..., steps, in_channels)`` for channels_last or ``(..., in_channels, steps)`` for
        channels_first, floating, of rank >= 2 (every axis before the last two is a batch axis).
      config: the layer's :class:`convtrans.Conv1DConfig` (static under jit).
      precision: ``lax.Precision`` for the convolution.

    Returns:
      ``(y, aux)``: ``y`` of shape ``(..., out_steps, filters)`` (channels first:
      ``(..., filters, out_steps)``) in ``x.dtype``, and the regularization terms as for
      :func:`conv1d_transpose`.

    Raises:
      ValueError: for parameters or an input that do not fit ``config``, or an input shorter
        than the kernel's span after padding.
    """
    check_conv_config(config)
    in_channels = check_input(x, config)
    check_params(params, config, in_channels)
    x3, lead = as_batch(x)
    pads = geometry.conv_pads(config, x.shape[config.time_axis])
    z = lax.conv_general_dilated(
        x3,
        params["kernel"].astype(x.dtype),
        window_strides=(config.strides,),
        padding=[(pads.left, pads.right)],
        rhs_dilation=(config.dilation_rate,),
        dimension_numbers=dimension_numbers(config),
        feature_group_count=config.groups,
        precision=precision,
    )
    y3 = bias_and_activation(params, z, config)
    y = y3.reshape(lead + tuple(y3.shape[1:]))
    return y, regularization_terms(params, y3, config, examples=math.prod(lead))

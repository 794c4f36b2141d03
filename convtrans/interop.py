"""Porting trained Keras and PyTorch transposed convolutions to convtrans, and back to Keras.

Every function returns or takes ``(config, params)``: a :class:`~convtrans.Conv1DTransposeConfig`
and ``{"kernel": (kernel_size, filters // groups, in_channels), "bias": (filters,)}``, the
arguments of :func:`convtrans.conv1d_transpose` (and the parameters of the linen / nnx modules).

- Keras: the kernel layout is already convtrans's; the config round trips through
  ``get_config()`` with initializers, regularizers and constraints.
- PyTorch: ``torch.nn.ConvTranspose1d`` keeps its weight as ``(in_channels, out_channels //
  groups, kernel_size)``; the convtrans kernel is ``weight.permute(2, 1, 0)`` (no flip; the group
  of an input channel fixes the block of outputs it feeds in both layouts). Its integer
  ``padding`` crops the full result on both sides and ``output_padding`` extends it on the right,
  which the config expresses directly; the config is ``channels_first``, so outputs equal the
  module's outputs without transposes.

Keras and PyTorch are imported only when these functions are called.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax.core import meta

from convtrans._src.checks import check_count, check_floating_weight, check_params_mapping
from convtrans._src.config import Conv1DTransposeConfig, check_config

Params = dict[str, jax.Array]


def _as_numpy(value: Any) -> np.ndarray:
    """A torch tensor (bfloat16 included, which NumPy cannot take directly) or array as NumPy."""
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            return np.asarray(value.float().numpy()).astype(jnp.bfloat16)
        value = value.numpy()
    return np.asarray(value)


def _as_jax(value: Any, dtype: Any = None) -> jax.Array:
    return jnp.asarray(_as_numpy(value), dtype=dtype)


# --- Keras ---------------------------------------------------------------------------------


def _is_keras_conv1d_transpose(layer: Any) -> bool:
    return type(layer).__name__ == "Conv1DTranspose" and hasattr(layer, "get_config") and hasattr(layer, "get_weights")


def from_keras(layer: Any) -> tuple[Conv1DTransposeConfig, Params]:
    """``(config, params)`` of a built ``keras.layers.Conv1DTranspose`` (Keras 3 or tf.keras).

    The config carries the layer's activation, initializers, regularizers and constraints; the
    params are its current weights as float32 JAX arrays in the Keras layout.

    Raises:
      TypeError: if ``layer`` is not a Conv1DTranspose layer.
      ValueError: if the layer is not built yet (it has no weights).
    """
    if not _is_keras_conv1d_transpose(layer):
        raise TypeError(f"layer must be a keras.layers.Conv1DTranspose, got {type(layer).__name__}.")
    config = Conv1DTransposeConfig.from_keras(layer.get_config())
    weights = layer.get_weights()
    expected = 2 if config.use_bias else 1
    if len(weights) != expected:
        raise ValueError(
            f"layer {layer.name!r} has {len(weights)} weights, expected {expected} (kernel"
            f"{', bias' if config.use_bias else ''}); build it first, e.g. by calling it on an input."
        )
    params = {"kernel": _as_jax(weights[0], jnp.float32)}
    if config.use_bias:
        params["bias"] = _as_jax(weights[1], jnp.float32)
    return config, params


def to_keras(config: Conv1DTransposeConfig, params: Mapping[str, Any], *, name: Optional[str] = None) -> Any:
    """A built ``keras.layers.Conv1DTranspose`` with ``config`` and the weights ``params``.

    Its outputs equal :func:`convtrans.conv1d_transpose` ``(params, x, config)`` (Keras's JAX
    backend computes the same convolution). ``params`` may hold :class:`convtrans.Constrained`
    boxes.

    Raises:
      ValueError: for what Keras cannot express (groups, integer padding, Python callables; see
        :meth:`Conv1DTransposeConfig.to_keras`) or params of the wrong shape.
    """
    import keras

    check_config(config)
    keras_config = config.to_keras()
    if name is not None:
        keras_config["name"] = name
    check_params_mapping(params)
    params = meta.unbox(dict(params))
    if "kernel" not in params:
        raise ValueError(
            f"params lacks 'kernel'; expected an array of shape (kernel_size, filters // groups, "
            f"in_channels) = ({config.kernel_size}, {config.filters // config.groups}, in_channels)."
        )
    kernel = np.asarray(params["kernel"])
    in_channels = kernel.shape[-1]
    expected = config.kernel_shape(in_channels)
    if kernel.shape != expected:
        raise ValueError(f"params['kernel'] must have shape {expected}, got {kernel.shape}.")
    layer = keras.layers.Conv1DTranspose.from_config(keras_config)
    shape = (None, None, in_channels) if config.data_format == "channels_last" else (None, in_channels, None)
    layer.build(shape)
    weights = [kernel]
    if config.use_bias:
        if "bias" not in params:
            raise ValueError(f"params lacks 'bias'; config.use_bias is True (shape ({config.filters},)).")
        weights.append(np.asarray(params["bias"]))
    layer.set_weights(weights)
    return layer


def _keras_layers(layer: Any):
    """Every layer inside ``layer`` (nested models included), depth first."""
    for child in getattr(layer, "layers", ()):
        yield child
        yield from _keras_layers(child)


def keras_model_params(model: Any) -> dict[str, tuple[Conv1DTransposeConfig, Params]]:
    """``{layer name: (config, params)}`` for every Conv1DTranspose layer of a Keras model."""
    found = {}
    for layer in _keras_layers(model):
        if _is_keras_conv1d_transpose(layer):
            found[layer.name] = from_keras(layer)
    return found


def load_keras_weights(model: Any, params: Any, *, strict: bool = True) -> Any:
    """``params`` (a linen ``params`` or variables tree) with the weights of ``model``'s
    Conv1DTranspose layers.

    Each Keras layer named ``n`` fills the linen submodule whose name is ``n`` (give the linen
    layers the Keras names: ``convtrans.Conv1DTranspose(..., name="up1")``), wherever it sits in
    the tree. :class:`convtrans.Constrained` boxes are kept; other parameters are untouched.

    Args:
      model: a built Keras model (nested models are searched too).
      params: the linen parameter tree, e.g. ``module.init(key, x)["params"]``, or the whole
        variables dict ``module.init(key, x)``.
      strict: raise if a Keras Conv1DTranspose layer has no linen counterpart.

    Raises:
      ValueError: for a missing or ambiguous layer name, or a shape mismatch.
    """
    keras_params = keras_model_params(model)
    loaded: dict[str, int] = {name: 0 for name in keras_params}

    def visit(node: Any, path: tuple[str, ...]) -> Any:
        if not isinstance(node, Mapping):
            return node
        out = {}
        for key, child in node.items():
            if key in keras_params and isinstance(child, Mapping) and "kernel" in child:
                out[key] = _fill(child, keras_params[key][1], path + (key,))
                loaded[key] += 1
            else:
                out[key] = visit(child, path + (key,))
        return type(node)(out) if not isinstance(node, dict) else out

    new_params = visit(params, ())
    ambiguous = sorted(name for name, count in loaded.items() if count > 1)
    if ambiguous:
        raise ValueError(f"Keras layers {ambiguous} match several linen submodules; make the names unique.")
    missing = sorted(name for name, count in loaded.items() if count == 0)
    if strict and missing:
        raise ValueError(
            f"Keras Conv1DTranspose layers {missing} have no linen submodule of the same name in "
            "params; name the linen layers after them, or pass strict=False."
        )
    return new_params


def _fill(target: Mapping[str, Any], source: Params, path: tuple[str, ...]) -> dict[str, Any]:
    out = dict(target)
    if set(source) != {k for k in target if k in ("kernel", "bias")}:
        raise ValueError(
            f"params at {'/'.join(path)} has {sorted(target)} but the Keras layer has "
            f"{sorted(source)}; use_bias differs."
        )
    for key, value in source.items():
        old = target[key]
        old_value = old.unbox() if isinstance(old, meta.AxisMetadata) else old
        if tuple(old_value.shape) != tuple(value.shape):
            raise ValueError(
                f"params at {'/'.join(path + (key,))} has shape {tuple(old_value.shape)}, but the "
                f"Keras layer's {key} has shape {tuple(value.shape)}."
            )
        value = value.astype(old_value.dtype)
        out[key] = old.replace_boxed(value) if isinstance(old, meta.AxisMetadata) else value
    return out


# --- PyTorch -------------------------------------------------------------------------------

_TORCH_DEFAULTS = dict(stride=1, padding=0, output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros")


def _single(value: Any, argument: str) -> int:
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"{argument}={value!r}: ConvTranspose1d takes one value, got {len(value)}.")
        (value,) = value
    if isinstance(value, str):
        raise ValueError(f"{argument}={value!r}: ConvTranspose1d takes integers only (no 'same'/'valid').")
    # int() would turn 2.5 into 2 and True into 1: a silently different layer.
    return check_count(value, argument, minimum=None)


def _floating(value: jax.Array, argument: str, shape: tuple[int, ...]) -> jax.Array:
    if tuple(value.shape) != shape:
        raise ValueError(f"{argument} has shape {tuple(value.shape)}, expected {shape}.")
    check_floating_weight(value, argument)
    return value


# torch.nn.utils.weight_norm's keys (g, v) and those of torch.nn.utils.parametrizations.weight_norm.
WEIGHT_NORM_KEYS = (("weight_g", "weight_v"),
                    ("parametrizations.weight.original0", "parametrizations.weight.original1"))


def fold_weight_norm(g: Any, v: Any) -> np.ndarray:
    """PyTorch's weight norm folded into one weight: ``w = g * v / ||v||``, the norm taken over
    every axis where ``g`` has size 1 (all but ``dim`` for ``weight_norm(module, dim)``; all for
    ``dim=None``). Computed in float64 and rounded once to ``v``'s dtype."""
    g, v = _as_numpy(g), _as_numpy(v)
    if g.ndim not in (0, v.ndim):
        raise ValueError(f"weight norm's g has shape {g.shape}, which does not broadcast against v's {v.shape}.")
    axes = tuple(axis for axis in range(v.ndim) if g.ndim == 0 or g.shape[axis] == 1)
    v64 = v.astype(np.float64)
    norm = np.sqrt(np.sum(v64 * v64, axis=axes, keepdims=True))
    return (v64 * (g.astype(np.float64) / norm)).astype(v.dtype)


def _torch_weight(state_dict: Mapping[str, Any], prefix: str) -> jax.Array:
    """The layer's weight: ``weight`` itself or folded from either style of weight norm."""
    if prefix + "weight" in state_dict:
        return _as_jax(state_dict[prefix + "weight"])
    for g_key, v_key in WEIGHT_NORM_KEYS:
        if prefix + g_key in state_dict and prefix + v_key in state_dict:
            return jnp.asarray(fold_weight_norm(state_dict[prefix + g_key], state_dict[prefix + v_key]))
    found = sorted(key for key in state_dict if key.startswith(prefix))
    expected = [prefix + "weight"] + [f"{prefix}{g} and {prefix}{v}" for g, v in WEIGHT_NORM_KEYS]
    raise ValueError(f"state_dict has no weight for {prefix or 'the layer'!r}: expected {' or '.join(expected)}; "
                     f"the keys there are {found[:12]}{' ...' if len(found) > 12 else ''}.")


def from_torch_state_dict(
    state_dict: Mapping[str, Any],
    in_channels: int,
    out_channels: int,
    kernel_size: Union[int, Sequence[int]],
    stride: Union[int, Sequence[int]] = 1,
    padding: Union[int, Sequence[int]] = 0,
    output_padding: Union[int, Sequence[int]] = 0,
    groups: int = 1,
    bias: bool = True,
    dilation: Union[int, Sequence[int]] = 1,
    padding_mode: str = "zeros",
    *,
    prefix: str = "",
) -> tuple[Conv1DTransposeConfig, Params]:
    """``(config, params)`` from a ``ConvTranspose1d`` state dict and its constructor arguments.

    The arguments are ``torch.nn.ConvTranspose1d``'s, with its defaults; ``prefix`` selects the
    layer inside a larger model's state dict (e.g. ``"decoder.up1."``). The config is
    ``channels_first`` with PyTorch's integer padding, so ``conv1d_transpose(params, x, config)``
    equals the module's output for ``x`` of shape ``(batch, in_channels, steps)``. A weight-normed
    layer (``weight_g``/``weight_v`` of ``torch.nn.utils.weight_norm``, or
    ``parametrizations.weight.original0``/``original1`` of its successor) is folded into the kernel
    (:func:`fold_weight_norm`). The params keep the state dict's dtype (float16 and bfloat16 too).

    Raises:
      ValueError: for ``padding_mode`` other than ``"zeros"`` (the only one PyTorch's transposed
        convolutions compute), missing keys or shapes that disagree with the arguments.
    """
    if padding_mode != "zeros":
        raise ValueError(
            f"padding_mode={padding_mode!r} is not supported: a transposed convolution has no input "
            "padding to fill (PyTorch itself only runs ConvTranspose1d with padding_mode='zeros')."
        )
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping (module.state_dict()), got {type(state_dict).__name__}.")
    in_channels = _single(in_channels, "in_channels")
    kernel_size = _single(kernel_size, "kernel_size")
    config = Conv1DTransposeConfig(
        filters=out_channels,
        kernel_size=kernel_size,
        strides=_single(stride, "stride"),
        padding=_single(padding, "padding"),
        output_padding=_single(output_padding, "output_padding"),
        data_format="channels_first",
        dilation_rate=_single(dilation, "dilation"),
        use_bias=bool(bias),
        groups=groups,
    )
    weight_key, bias_key = prefix + "weight", prefix + "bias"
    weight = _torch_weight(state_dict, prefix)
    expected = (in_channels, out_channels // groups, kernel_size)
    if tuple(weight.shape) != expected:
        raise ValueError(
            f"state_dict[{weight_key!r}] has shape {tuple(weight.shape)}, expected {expected} "
            "(in_channels, out_channels // groups, kernel_size)."
        )
    _floating(weight, f"state_dict[{weight_key!r}]", expected)
    params = {"kernel": jnp.transpose(weight, (2, 1, 0))}
    if config.use_bias:
        if bias_key not in state_dict or state_dict[bias_key] is None:
            raise ValueError(f"bias=True but state_dict has no {bias_key!r}.")
        params["bias"] = _floating(_as_jax(state_dict[bias_key]), f"state_dict[{bias_key!r}]", (out_channels,))
    elif state_dict.get(bias_key) is not None:
        raise ValueError(f"bias=False but state_dict has {bias_key!r}; pass bias=True.")
    return config, params


def from_torch(module: Any) -> tuple[Conv1DTransposeConfig, Params]:
    """``(config, params)`` of a ``torch.nn.ConvTranspose1d``; see :func:`from_torch_state_dict`."""
    import torch

    if not isinstance(module, torch.nn.ConvTranspose1d):
        raise TypeError(f"module must be a torch.nn.ConvTranspose1d, got {type(module).__name__}.")
    return from_torch_state_dict(
        module.state_dict(),
        module.in_channels,
        module.out_channels,
        module.kernel_size,
        stride=module.stride,
        padding=module.padding,
        output_padding=module.output_padding,
        groups=module.groups,
        bias=module.bias is not None,
        dilation=module.dilation,
        padding_mode=module.padding_mode,
    )


__all__ = [
    "fold_weight_norm",
    "from_keras",
    "from_torch",
    "from_torch_state_dict",
    "keras_model_params",
    "load_keras_weights",
    "to_keras",
]

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

Whole PyTorch models: :func:`load_torch_state_dict` fills a linen variables tree from a state
dict by name (``ups.0.weight`` is ``ups_0/kernel``), converting each weight by the flax module it
lands in (convtrans's layers, ``nn.Conv``, ``nn.ConvTranspose``, ``nn.Dense``, ``nn.Embed``, the
norms) and folding weight norm; :func:`to_torch_state_dict` goes back.

Keras and PyTorch are imported only when these functions are called.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
from flax.core import meta

from convtrans._src import weight_norm as weight_norm_lib
from convtrans._src.checks import check_array as _check_array
from convtrans._src.checks import check_count as _check_count
from convtrans._src.checks import check_floating_weight as _check_floating_weight
from convtrans._src.checks import check_params_mapping as _check_params_mapping
from convtrans._src.config import Conv1DTransposeConfig
from convtrans._src.config import check_config as _check_config

_Params = dict[str, jax.Array]
_Tree = TypeVar("_Tree")


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


def from_keras(layer: Any) -> tuple[Conv1DTransposeConfig, _Params]:
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


def to_keras(config: Conv1DTransposeConfig, params: Mapping[str, Any], *, name: str | None = None) -> Any:
    """A built ``keras.layers.Conv1DTranspose`` with ``config`` and the weights ``params``.

    Its outputs equal :func:`convtrans.conv1d_transpose` ``(params, x, config)`` (Keras's JAX
    backend computes the same convolution). ``params`` may hold :class:`convtrans.Constrained`
    boxes.

    Raises:
      ValueError: for what Keras cannot express (groups, integer padding, Python callables; see
        :meth:`convtrans.Conv1DTransposeConfig.to_keras`) or params of the wrong shape.
    """
    import keras

    _check_config(config)
    keras_config = config.to_keras()
    if name is not None:
        keras_config["name"] = name
    _check_params_mapping(params)
    params = meta.unbox(dict(params))
    if "kernel" not in params:
        raise ValueError(
            f"params lacks 'kernel'; expected an array of shape (kernel_size, filters // groups, "
            f"in_channels) = ({config.kernel_size}, {config.filters // config.groups}, in_channels)."
        )
    kernel = np.asarray(params["kernel"])
    # Keras would silently drop an imaginary part or turn integers into floats.
    _check_floating_weight(kernel, "params['kernel']")
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
        bias = np.asarray(params["bias"])
        _check_floating_weight(bias, "params['bias']")
        weights.append(bias)
    layer.set_weights(weights)
    return layer


def _keras_layers(layer: Any):
    """Every layer inside ``layer`` (nested models included), depth first."""
    for child in getattr(layer, "layers", ()):
        yield child
        yield from _keras_layers(child)


def keras_model_params(model: Any) -> dict[str, tuple[Conv1DTransposeConfig, _Params]]:
    """``{layer name: (config, params)}`` for every Conv1DTranspose layer of a Keras model."""
    found = {}
    for layer in _keras_layers(model):
        if _is_keras_conv1d_transpose(layer):
            found[layer.name] = from_keras(layer)
    return found


def load_keras_weights(model: Any, params: _Tree, *, strict: bool = True) -> _Tree:
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
        # A Mapping other than dict (e.g. flax's FrozenDict) is rebuilt as its own type.
        return cast(Any, type(node))(out) if not isinstance(node, dict) else out

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


def _fill(target: Mapping[str, Any], source: _Params, path: tuple[str, ...]) -> dict[str, Any]:
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


def _single(value: Any, argument: str, minimum: int | None = None) -> int:
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"{argument}={value!r}: ConvTranspose1d takes one value, got {len(value)}.")
        (value,) = value
    if isinstance(value, str):
        raise ValueError(f"{argument}={value!r}: ConvTranspose1d takes integers only (no 'same'/'valid').")
    # int() would turn 2.5 into 2 and True into 1: a silently different layer.
    return _check_count(value, argument, minimum=minimum)


def _flag(value: Any, argument: str) -> bool:
    """A bool argument as PyTorch's constructors take it (``bool(x)`` would take ``'no'`` as True)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{argument} must be True or False, got {value!r} of type {type(value).__name__}.")
    return bool(value)


def _floating(value: Any, argument: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``value`` (a tensor, array or nested list) as a floating NumPy array, of ``shape`` if given;
    TypeError naming ``argument`` for anything else (None, strings, object, integer or complex
    arrays), which NumPy or JAX would either refuse without a name or convert silently."""
    try:
        array = _as_numpy(value)
    except (TypeError, ValueError, RuntimeError) as err:  # ragged lists, unreadable tensors
        raise TypeError(f"{argument} must be a floating array or tensor, got {type(value).__name__}: {err}") from None
    if array.dtype == object or value is None or isinstance(value, (str, bytes)):
        raise TypeError(
            f"{argument} must be a floating array or tensor, got {value!r:.80} of type {type(value).__name__}."
        )
    _check_floating_weight(array, argument)
    if shape is not None and tuple(array.shape) != tuple(shape):
        raise ValueError(f"{argument} has shape {tuple(array.shape)}, expected {tuple(shape)}.")
    return array


def _shape_of(value: Any) -> Any:
    """``value``'s shape for a message, or its type if it has none (a ragged list, None)."""
    try:
        return tuple(_as_numpy(value).shape) if value is not None else "None"
    except (TypeError, ValueError, RuntimeError):
        return type(value).__name__


def _check_mapping(value: Any, argument: str, expected: str) -> None:
    """TypeError unless ``value`` is a mapping (``expected`` says of what)."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{argument} must be a mapping ({expected}), got {type(value).__name__}.")


def _check_state_dict(state_dict: Any, argument: str = "state_dict") -> None:
    """TypeError unless ``state_dict`` is a mapping of str keys, like ``module.state_dict()``."""
    _check_mapping(state_dict, argument, "module.state_dict()")
    for key in state_dict:
        if not isinstance(key, str):
            raise TypeError(
                f"{argument} keys must be str (parameter names such as 'up.weight'), got key {key!r} "
                f"of type {type(key).__name__}."
            )


def _check_variables(variables: Any) -> None:
    _check_mapping(variables, "variables", "a linen params tree or variables dict, e.g. module.init(key, x)")


def _flax_paths(paths: Any, argument: str = "flax_conv_transpose") -> set[str]:
    """A collection of flax module paths (``set('abc')`` would silently be three paths)."""
    if (
        isinstance(paths, (str, bytes))
        or not isinstance(paths, (Sequence, set, frozenset))
        or not all(isinstance(path, str) for path in paths)
    ):
        raise TypeError(f"{argument} must be a list of flax module paths (str, e.g. ['decoder/up_0']), got {paths!r}.")
    return set(paths)


# Conv1DTransposeConfig's field -> ConvTranspose1d's argument, for the config's messages.
_TORCH_NAMES = {"filters": "out_channels", "strides": "stride", "dilation_rate": "dilation", "use_bias": "bias"}
_KERAS_NAME = re.compile(r"\b(" + "|".join(_TORCH_NAMES) + r")\b")


def _torch_config(**fields: Any) -> Conv1DTransposeConfig:
    """The config of ConvTranspose1d's arguments; its checks' messages name those arguments as
    PyTorch does (``out_channels``, not ``filters``)."""
    try:
        return Conv1DTransposeConfig(**fields)
    except (TypeError, ValueError) as err:
        message = _KERAS_NAME.sub(lambda match: _TORCH_NAMES[match.group(1)], str(err))
        raise type(err)(message) from None


# torch.nn.utils.weight_norm's keys (g, v) and those of torch.nn.utils.parametrizations.weight_norm.
_WEIGHT_NORM_KEYS = (
    ("weight_g", "weight_v"),
    ("parametrizations.weight.original0", "parametrizations.weight.original1"),
)


def _norm_axes(g_shape: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    """The axes weight norm reduces over: those where ``g`` has size 1 (all, for a scalar ``g``)."""
    return tuple(axis for axis in range(ndim) if len(g_shape) == 0 or g_shape[axis] == 1)


def _norm64(v: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """``||v||`` over ``axes`` in float64, axes kept."""
    v64 = v.astype(np.float64)
    return np.sqrt(np.sum(v64 * v64, axis=axes, keepdims=True))


def fold_weight_norm(g: npt.ArrayLike, v: npt.ArrayLike) -> np.ndarray:
    """PyTorch's weight norm folded into one weight: ``w = g * v / ||v||``, the norm taken over
    every axis where ``g`` has size 1 (all but ``dim`` for ``weight_norm(module, dim)``; all for
    ``dim=None``). Computed in float64 and rounded once to ``v``'s dtype.

    Raises:
      TypeError: unless ``g`` and ``v`` are floating arrays or tensors.
      ValueError: if ``g``'s shape does not broadcast against ``v``'s.
    """
    return _fold_weight_norm(g, v, "g", "v")


def _fold_weight_norm(g: Any, v: Any, g_name: str, v_name: str) -> np.ndarray:
    """:func:`fold_weight_norm` with messages naming ``g`` and ``v`` as the caller knows them."""
    g, v = _floating(g, g_name), _floating(v, v_name)
    if g.ndim not in (0, v.ndim) or any(a not in (1, b) for a, b in zip(g.shape, v.shape)):
        raise ValueError(
            f"weight norm's g ({g_name}) has shape {g.shape}, which does not broadcast against "
            f"v's ({v_name}) {v.shape}: expected () or v's shape with 1 on the normalized axes."
        )
    norm = _norm64(v, _norm_axes(g.shape, v.ndim))
    return (v.astype(np.float64) * (g.astype(np.float64) / norm)).astype(v.dtype)


def _torch_weight(state_dict: Mapping[str, Any], prefix: str) -> np.ndarray:
    """The layer's weight: ``weight`` itself or folded from either style of weight norm, checked
    to be floating."""
    if prefix + "weight" in state_dict:
        return _floating(state_dict[prefix + "weight"], f"state_dict[{prefix + 'weight'!r}]")
    for g_key, v_key in _WEIGHT_NORM_KEYS:
        g_key, v_key = prefix + g_key, prefix + v_key
        if g_key in state_dict and v_key in state_dict:
            return _fold_weight_norm(
                state_dict[g_key], state_dict[v_key], f"state_dict[{g_key!r}]", f"state_dict[{v_key!r}]"
            )
    found = sorted(key for key in state_dict if key.startswith(prefix))
    expected = [repr(prefix + "weight")] + [f"{prefix + g!r} and {prefix + v!r}" for g, v in _WEIGHT_NORM_KEYS]
    raise ValueError(
        f"state_dict has no weight for {prefix or 'the layer'!r}: expected {', or '.join(expected)}; "
        f"the keys there are {found[:12]}{' ...' if len(found) > 12 else ''}."
    )


def from_torch_state_dict(
    state_dict: Mapping[str, Any],
    in_channels: int,
    out_channels: int,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    groups: int = 1,
    bias: bool = True,
    dilation: int | Sequence[int] = 1,
    padding_mode: str = "zeros",
    *,
    prefix: str = "",
) -> tuple[Conv1DTransposeConfig, _Params]:
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
    _check_state_dict(state_dict)
    if not isinstance(prefix, str):
        raise TypeError(
            f"prefix must be a str, the layer's key prefix in state_dict (e.g. 'decoder.up1.'), got "
            f"{prefix!r} of type {type(prefix).__name__}."
        )
    in_channels = _single(in_channels, "in_channels", minimum=1)
    out_channels = _check_count(out_channels, "out_channels")
    groups = _check_count(groups, "groups")
    kernel_size = _single(kernel_size, "kernel_size")
    config = _torch_config(
        filters=out_channels,
        kernel_size=kernel_size,
        strides=_single(stride, "stride"),
        padding=_single(padding, "padding"),
        output_padding=_single(output_padding, "output_padding"),
        data_format="channels_first",
        dilation_rate=_single(dilation, "dilation"),
        use_bias=_flag(bias, "bias"),
        groups=groups,
    )
    if in_channels % groups:
        raise ValueError(
            f"groups={groups} must divide in_channels={in_channels}; each group takes "
            "in_channels // groups input channels."
        )
    weight_key, bias_key = prefix + "weight", prefix + "bias"
    weight = _torch_weight(state_dict, prefix)
    expected = (in_channels, out_channels // groups, kernel_size)
    if tuple(weight.shape) != expected:
        raise ValueError(
            f"state_dict[{weight_key!r}] has shape {tuple(weight.shape)}, expected {expected} "
            "(in_channels, out_channels // groups, kernel_size)."
        )
    params = {"kernel": jnp.transpose(jnp.asarray(weight), (2, 1, 0))}
    if config.use_bias:
        if bias_key not in state_dict or state_dict[bias_key] is None:
            raise ValueError(f"bias=True but state_dict has no {bias_key!r}.")
        params["bias"] = jnp.asarray(_floating(state_dict[bias_key], f"state_dict[{bias_key!r}]", (out_channels,)))
    elif state_dict.get(bias_key) is not None:
        raise ValueError(f"bias=False but state_dict has {bias_key!r}; pass bias=True.")
    return config, params


def from_torch(module: Any) -> tuple[Conv1DTransposeConfig, _Params]:
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
        # ConvTranspose1d's padding is an int tuple; torch types the attribute for every _ConvNd,
        # where Conv1d's may also be a str.
        padding=cast("tuple[int, ...]", module.padding),
        output_padding=module.output_padding,
        groups=module.groups,
        bias=module.bias is not None,
        dilation=module.dilation,
        padding_mode=module.padding_mode,
    )


# --- whole PyTorch models ----------------------------------------------------------------------

_PARAMETRIZATION = ".parametrizations."
# torch leaf -> flax leaf, for each kind of flax module (told apart by its parameter names).
_BATCH_STATS = {"running_mean": "mean", "running_var": "var"}
_IGNORED_TORCH_LEAVES = ("num_batches_tracked",)


def flax_name(torch_key: str) -> tuple[tuple[str, ...], str]:
    """A PyTorch state-dict key as ``(module path, leaf)`` with flax's names for lists and
    sequences: ``"resblocks.3.convs1.2.weight"`` -> ``(("resblocks_3", "convs1_2"), "weight")``;
    a new-style weight norm's ``"ups.0.parametrizations.weight.original0"`` ->
    ``(("ups_0",), "parametrizations.weight.original0")``."""
    if _PARAMETRIZATION in torch_key:
        module, rest = torch_key.split(_PARAMETRIZATION, 1)
        parts, leaf = module.split("."), "parametrizations." + rest
    else:
        *parts, leaf = torch_key.split(".")
    path: list[str] = []
    for part in parts:
        if part.isdigit() and path:
            path[-1] += f"_{part}"
        else:
            path.append(part)
    return tuple(path), leaf


def _torch_modules(state_dict: Mapping[str, Any]) -> dict[tuple[str, ...], dict[str, Any]]:
    """The state dict grouped by module (flax paths), weight norm folded into ``weight``."""
    modules: dict[tuple[str, ...], dict[str, Any]] = {}
    for key, value in state_dict.items():
        path, leaf = flax_name(key)
        modules.setdefault(path, {})[leaf] = (key, value)
    for leaves in modules.values():
        for g_key, v_key in _WEIGHT_NORM_KEYS:
            if g_key in leaves and v_key in leaves:
                (g_name, g), (v_name, v) = leaves.pop(g_key), leaves.pop(v_key)
                g, v = _floating(g, f"state_dict[{g_name!r}]"), _floating(v, f"state_dict[{v_name!r}]")
                weight = _fold_weight_norm(g, v, f"state_dict[{g_name!r}]", f"state_dict[{v_name!r}]")
                leaves["weight"] = (f"{g_name} + {v_name}", weight)
                leaves["weight_norm"] = (f"{g_name} + {v_name}", (g, v))
    return modules


def _flax_weight_norms(params: Mapping[str, Any]) -> dict[tuple[str, ...], tuple[tuple[str, ...], str]]:
    """Layers wrapped in ``flax.linen.WeightNorm``: layer path -> (the WeightNorm's path, the key
    of its kernel scale, ``"<layer>/kernel/scale"`` or ``".../kernel/value/scale"`` when boxed)."""
    found = {}
    for path, node in _modules_of(params):
        for key in node:
            parts = key.split("/")
            if len(parts) >= 3 and parts[-1] == "scale" and parts[1] == "kernel":
                found[path[:-1] + (parts[0],)] = (path, key)
    return found


def _get(tree: Mapping[str, Any], path: tuple[str, ...], leaf: str) -> Any:
    for part in path:
        tree = tree[part]
    return _unbox(tree[leaf])


def _weight_normed_from_torch(
    source: dict[str, Any], kernel_shape: tuple[int, ...], where: str
) -> tuple[str, np.ndarray, np.ndarray]:
    """``(keys, v, g)`` for a convtrans layer with ``weight_norm=True``: torch's own ``v`` and
    ``g`` when the torch layer is weight-normed along ``dim=0`` (the layer's), else the weight as
    the direction with ``g = ||weight||``."""
    if "weight_norm" in source:
        key, (g, v) = source["weight_norm"]
        if g.ndim == v.ndim and g.shape[0] == g.size == kernel_shape[-1]:
            return key, _kernel_from_torch(v, kernel_shape, where), g.reshape(-1)
    key, weight = source["weight"]
    v = _kernel_from_torch(_as_numpy(weight), kernel_shape, where)
    return key, v, _norm64(v, weight_norm_lib.AXES).reshape(-1)


def _kernel_from_torch(
    weight: np.ndarray, target_shape: tuple[int, ...], where: str, flax_transpose: bool = False
) -> np.ndarray:
    """A torch ``weight`` in the layout of a flax ``kernel`` of ``target_shape``."""
    if weight.ndim == 2:  # Linear (out, in) -> Dense (in, out)
        candidates = [weight.T]
    elif weight.ndim == 3:
        # Conv1d (out, in/g, k) and ConvTranspose1d (in, out/g, k) both reverse into the Keras
        # layouts of convtrans's layers and flax's nn.Conv; flax's nn.ConvTranspose (k, in, out)
        # applies its kernel unflipped, so it takes the taps reversed.
        candidates = [np.transpose(weight, (2, 1, 0)), np.transpose(weight, (2, 0, 1))[::-1]]
        if flax_transpose:
            candidates.reverse()
    else:
        candidates = [weight]
    fitting = _first_of_shape(candidates, target_shape)
    if fitting is None:
        raise ValueError(
            f"{where}: the torch weight of shape {tuple(weight.shape)} does not fit the kernel of "
            f"shape {tuple(target_shape)} in any layout (Linear, Conv1d, ConvTranspose1d)."
        )
    return fitting


def _first_of_shape(candidates: Sequence[np.ndarray], shape: tuple[int, ...]) -> np.ndarray | None:
    """The first of the candidate layouts that has ``shape``."""
    return next((c for c in candidates if tuple(c.shape) == tuple(shape)), None)


def _leaf_pairs(node: Mapping[str, Any], collection: str) -> dict[str, str]:
    """flax leaf -> torch leaf for one flax module's parameters (or batch statistics)."""
    if collection == "batch_stats":
        return {flax: torch for torch, flax in _BATCH_STATS.items() if flax in node}
    if "kernel" in node:
        return {"kernel": "weight", **({"bias": "bias"} if "bias" in node else {})}
    if "embedding" in node:
        return {"embedding": "weight"}
    return {name: {"scale": "weight"}.get(name, name) for name in node}


def _unbox(value: Any) -> Any:
    return value.unbox() if isinstance(value, meta.AxisMetadata) else value


def _modules_of(tree: Mapping[str, Any], path: tuple[str, ...] = ()):
    """``(path, node)`` for every flax module in a params tree that holds arrays itself."""
    if any(not isinstance(v, Mapping) or isinstance(v, meta.AxisMetadata) for v in tree.values()):
        yield path, tree
    for key, child in tree.items():
        if isinstance(child, Mapping) and not isinstance(child, meta.AxisMetadata):
            yield from _modules_of(child, path + (key,))


_COLLECTIONS = ("params", "batch_stats")


def _is_variables(tree: Mapping[str, Any]) -> bool:
    """A linen variables dict (collections at the top), rather than a bare params tree."""
    return isinstance(tree.get("params"), Mapping) and set(tree) <= {*_COLLECTIONS, "losses", "cache"}


def _collections(variables: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The collections to fill: a variables dict's params and batch statistics, or a bare params
    tree as params."""
    if _is_variables(variables):
        return {name: variables[name] for name in _COLLECTIONS if name in variables}
    return {"params": variables}


def _set(tree: Mapping[str, Any], path: tuple[str, ...], leaf: str, value: Any) -> dict[str, Any]:
    out = dict(tree)
    if path:
        out[path[0]] = _set(tree[path[0]], path[1:], leaf, value)
    else:
        old = tree[leaf]
        out[leaf] = old.replace_boxed(value) if isinstance(old, meta.AxisMetadata) else value
    return out


def load_torch_state_dict(
    variables: Mapping[str, Any],
    state_dict: Mapping[str, Any],
    *,
    strict: bool = True,
    flax_conv_transpose: Sequence[str] = (),
) -> dict[str, Any]:
    """``variables`` (a linen ``params`` tree, or a variables dict with ``params`` and
    ``batch_stats``) filled from a whole PyTorch model's ``state_dict``, by name.

    Names: torch's dotted keys with list and ``nn.Sequential`` indices joined flax-style
    (:func:`flax_name`: ``ups.0.weight`` fills ``ups_0/kernel``, ``resblocks.3.convs1.2.weight``
    fills ``resblocks_3/convs1_2/kernel``), which is how linen names the modules of a list
    attribute in ``setup``. Each weight is converted by the flax module it lands in: kernels of
    convtrans's ``Conv1D``/``Conv1DTranspose`` (either data format) and flax's ``nn.Conv`` are the
    torch weight reversed, ``nn.ConvTranspose``'s is also flipped in time (told apart by shape),
    ``nn.Dense``'s transposed; ``embedding`` as is; norms' ``scale`` from ``weight``; BatchNorm's
    ``running_mean``/``running_var`` into ``batch_stats``. Weight norm of either style is folded
    into the kernel, or kept as ``g`` and ``v`` for layers with ``weight_norm=True`` and layers
    wrapped in ``nn.WeightNorm``. Values take the target's dtype; constraint boxes are kept.

    A flax ``nn.ConvTranspose`` with as many input channels as outputs has a kernel of the same
    shape as a convolution's and is taken for one: name such layers in ``flax_conv_transpose``
    (their flax paths, e.g. ``"decoder/up_0"``) so that their taps are reversed.

    Raises:
      ValueError: with ``strict``, listing the target parameters no torch key fills and the torch
        keys nothing takes, with their shapes; for a weight that fits no layout.
    """
    _check_variables(variables)
    _check_state_dict(state_dict)
    strict = _flag(strict, "strict")
    transposed = _flax_paths(flax_conv_transpose)
    collections = _collections(variables)
    torch_modules = _torch_modules(state_dict)
    used: set[str] = set()
    missing: list[str] = []
    out = {name: dict(tree) for name, tree in collections.items()}
    wrapped = _flax_weight_norms(collections.get("params", {}))
    wrappers = {wrapper for wrapper, _ in wrapped.values()}
    for collection, tree in collections.items():
        for path, node in _modules_of(tree):
            if collection == "params" and path in wrappers:
                continue  # filled with the layer it wraps
            source = torch_modules.get(path, {})
            own_scale = "kernel" in node and "scale" in node
            if collection == "params" and (own_scale or path in wrapped) and "weight" in source:
                kernel = _unbox(node["kernel"])
                _check_array(kernel, f"variables at {'/'.join(path + ('kernel',))}")
                key, v, g = _weight_normed_from_torch(source, tuple(kernel.shape), "/".join(path + ("kernel",)))
                out[collection] = _set(out[collection], path, "kernel", jnp.asarray(v, kernel.dtype))
                scale_path, scale_leaf = (path, "scale") if own_scale else wrapped[path]
                scale = _get(collections["params"], scale_path, scale_leaf)
                out[collection] = _set(out[collection], scale_path, scale_leaf, jnp.asarray(g, scale.dtype))
                used.update(key.split(" + "))
                node = {name: value for name, value in node.items() if name not in ("kernel", "scale")}
            for flax_leaf, torch_leaf in _leaf_pairs(node, collection).items():
                target = _unbox(node[flax_leaf])
                where = "/".join(path + (flax_leaf,))
                _check_array(target, f"variables at {where}")
                if torch_leaf not in source:
                    missing.append(f"{collection}/{where} {tuple(target.shape)}")
                    continue
                key, value = source[torch_leaf]
                # Only a floating target is checked: an integer buffer may fill an integer variable.
                floating = jnp.issubdtype(target.dtype, jnp.floating)
                value = _floating(value, f"state_dict[{key!r}]") if floating else _as_numpy(value)
                if flax_leaf == "kernel":
                    value = _kernel_from_torch(value, tuple(target.shape), where, "/".join(path) in transposed)
                elif tuple(value.shape) != tuple(target.shape):
                    raise ValueError(
                        f"{where} has shape {tuple(target.shape)} but torch's {key} has {tuple(value.shape)}."
                    )
                out[collection] = _set(out[collection], path, flax_leaf, jnp.asarray(value, target.dtype))
                used.update(key.split(" + "))
    unused = [
        f"{key} {_shape_of(value)}"
        for key, value in state_dict.items()
        if key not in used and key.rsplit(".", 1)[-1] not in _IGNORED_TORCH_LEAVES
    ]
    if strict and (missing or unused):
        raise ValueError(
            "the state dict and the flax variables do not match by name (torch 'a.0.b' is flax 'a_0/b'):\n"
            f"  flax parameters no torch key fills: {missing or 'none'}\n"
            f"  torch keys nothing takes: {unused or 'none'}\n"
            "name the linen submodules after the torch modules, or pass strict=False."
        )
    return {**variables, **out} if _is_variables(variables) else out["params"]


def _kernel_to_torch(
    kernel: np.ndarray, like_shape: tuple[int, ...], where: str, flax_transpose: bool = False
) -> np.ndarray:
    """A flax ``kernel`` in the layout of a torch weight of ``like_shape`` (the inverse of
    :func:`_kernel_from_torch`)."""
    if kernel.ndim == 2:
        candidates = [kernel.T]
    elif kernel.ndim == 3:
        candidates = [np.transpose(kernel, (2, 1, 0)), np.transpose(kernel[::-1], (1, 2, 0))]
        if flax_transpose:
            candidates.reverse()
    else:
        candidates = [kernel]
    fitting = _first_of_shape(candidates, like_shape)
    if fitting is None:
        raise ValueError(
            f"{where}: the kernel of shape {tuple(kernel.shape)} fits no torch weight of shape {tuple(like_shape)}."
        )
    return fitting


def to_torch_state_dict(
    variables: Mapping[str, Any], like: Any, *, flax_conv_transpose: Sequence[str] = ()
) -> dict[str, Any]:
    """A PyTorch state dict with the keys, shapes and dtypes of ``like`` (a state dict or a
    ``torch.nn.Module``), filled from ``variables`` (params tree or variables dict) by the names of
    :func:`load_torch_state_dict`, which it inverts: ``model.load_state_dict(to_torch_state_dict(
    params, model))`` serves a JAX-trained model from existing PyTorch code. Weight-normed torch
    layers get ``v = weight`` and ``g = ||weight||`` (so that they compute the same weight), or the
    layer's own ``g`` and ``v`` when it has them. ``flax_conv_transpose`` as for
    :func:`load_torch_state_dict`.

    Raises:
      ValueError: for a torch key with no flax parameter of that name, or a shape that fits no
        layout.
    """
    import torch

    _check_variables(variables)
    like = like.state_dict() if isinstance(like, torch.nn.Module) else like
    _check_state_dict(like, "like")
    for key, reference in like.items():
        if not isinstance(reference, torch.Tensor):
            raise TypeError(
                f"like[{key!r}] must be a torch.Tensor (like is a torch.nn.Module or its "
                f"state_dict()), got {type(reference).__name__}."
            )
    transposed = _flax_paths(flax_conv_transpose)
    collections = _collections(variables)

    def named_value(path: tuple[str, ...], names: tuple[str, ...], key: str) -> tuple[str, np.ndarray]:
        """The flax value for torch's ``key``: floating (checked) where ``like[key]`` is."""
        for tree in collections.values():
            node = tree
            for part in path:
                node = node.get(part, {}) if isinstance(node, Mapping) else {}
            for name in names:
                if isinstance(node, Mapping) and name in node:
                    value = _unbox(node[name])
                    if like[key].is_floating_point():  # torch would drop an imaginary part silently
                        return name, _floating(value, f"variables at {'/'.join(path + (name,))}")
                    return name, _as_numpy(value)
        raise ValueError(f"torch's {key} has no flax parameter at {'/'.join(path)}/{' or '.join(names)}.")

    wrapped = _flax_weight_norms(collections.get("params", {}))
    out: dict[str, Any] = {}
    for key, reference in like.items():
        path, leaf = flax_name(key)
        shape = tuple(reference.shape)
        if leaf in _IGNORED_TORCH_LEAVES:
            value = _as_numpy(reference)
        elif leaf in _BATCH_STATS:
            value = named_value(path, (_BATCH_STATS[leaf],), key)[1]
        elif leaf == "bias":
            value = named_value(path, ("bias",), key)[1]
        elif leaf == "weight" or any(leaf in pair for pair in _WEIGHT_NORM_KEYS):
            name, weight = named_value(path, ("kernel", "embedding", "scale"), key)
            pair = next((p for p in _WEIGHT_NORM_KEYS if leaf in p), None)
            weight_shape = shape if pair is None else tuple(like[key.replace(leaf, pair[1])].shape)
            scale, as_direction = None, False
            if name == "kernel":
                try:  # a convtrans layer with weight_norm=True: the kernel is the direction
                    scale = named_value(path, ("scale",), key)[1]
                except ValueError:
                    if path in wrapped:  # ... or one wrapped in flax's WeightNorm
                        scale = _as_numpy(_get(collections["params"], *wrapped[path]))
                # torch's g and v are the layer's own when it normalizes along the same axis.
                as_direction = (
                    scale is not None
                    and pair is not None
                    and np.size(scale) == int(np.prod(like[key.replace(leaf, pair[0])].shape))
                )
                if scale is not None and not as_direction:
                    weight = np.asarray(weight_norm_lib.kernel(jnp.asarray(weight), jnp.asarray(scale)))
                weight = _kernel_to_torch(weight, weight_shape, key, "/".join(path) in transposed)
            if pair is not None and leaf == pair[0] and as_direction and scale is not None:
                value = scale.reshape(shape)
            elif pair is not None and leaf == pair[0]:  # g = ||weight||, so that g and v give weight
                value = _norm64(weight, _norm_axes(shape, weight.ndim)).reshape(shape)
            else:
                value = weight
        else:
            value = named_value(path, (leaf,), key)[1]
        if tuple(value.shape) != shape:
            raise ValueError(f"torch's {key} has shape {shape} but its flax value has {tuple(value.shape)}.")
        out[key] = torch.from_numpy(np.array(value, np.float32 if reference.is_floating_point() else None)).to(
            reference.dtype
        )
    return out


__all__ = [
    "flax_name",
    "fold_weight_norm",
    "from_keras",
    "from_torch",
    "from_torch_state_dict",
    "keras_model_params",
    "load_keras_weights",
    "load_torch_state_dict",
    "to_keras",
    "to_torch_state_dict",
]

"""Porting from Keras and PyTorch: outputs and gradients equal the source framework's."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
import torch

import convtrans as ct
from convtrans import constraints, interop

KEY = jax.random.PRNGKey(0)
ACTIVATIONS = [None, "relu", "tanh", "gelu", "leaky_relu"]


def _random_keras_layer(seed):
    """A built Keras layer with a random legal configuration, random weights and its input."""
    rng = np.random.default_rng(seed)
    strides = int(rng.integers(1, 4))
    dilation = 1 if strides > 1 else int(rng.integers(1, 3))
    output_padding = None if rng.random() < 0.5 or strides == 1 else int(rng.integers(0, strides))
    layer = keras.layers.Conv1DTranspose(
        filters=int(rng.integers(1, 5)),
        kernel_size=int(rng.integers(1, 6)),
        strides=strides,
        padding=str(rng.choice(["valid", "same"])),
        output_padding=output_padding,
        data_format=str(rng.choice(["channels_last", "channels_first"])),
        dilation_rate=dilation,
        activation=ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))],
        use_bias=bool(rng.integers(2)),
        bias_initializer="random_normal",
        kernel_regularizer=[None, "l2", "l1"][int(rng.integers(3))],
        kernel_constraint=[None, "max_norm", "unit_norm"][int(rng.integers(3))],
    )
    in_channels, steps = int(rng.integers(1, 5)), int(rng.integers(1, 7))
    shape = (2, steps, in_channels) if layer.data_format == "channels_last" else (2, in_channels, steps)
    x = rng.standard_normal(shape).astype(np.float32)
    layer(x)  # builds it
    return layer, x


def _keras_loss_grads(layer, x):
    """Gradients of sum(y * w) with respect to x and the weights, by Keras's own stateless call."""
    weights = [jnp.asarray(v) for v in layer.trainable_variables]

    def loss(weights, x):
        y, _ = layer.stateless_call(weights, [], x)
        return jnp.sum(jnp.sin(y))

    return jax.jit(jax.grad(loss, argnums=(0, 1)))(weights, jnp.asarray(x))


def _our_loss_grads(config, params, x):
    def loss(params, x):
        y, _ = ct.conv1d_transpose(params, x, config)
        return jnp.sum(jnp.sin(y))

    return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, jnp.asarray(x))


@pytest.mark.parametrize("seed", range(8))
def test_from_keras_outputs_and_gradients_equal_keras(seed):
    layer, x = _random_keras_layer(seed)
    config, params = interop.from_keras(layer)
    assert config == ct.Conv1DTransposeConfig.from_keras(layer.get_config())
    y, aux = ct.conv1d_transpose(params, jnp.asarray(x), config)
    np.testing.assert_allclose(y, layer(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        sum(aux.values()), sum(float(loss) for loss in layer.losses) if layer.losses else 0.0, rtol=1e-5
    )
    (keras_weight_grads, keras_x_grad) = _keras_loss_grads(layer, x)
    (param_grads, x_grad) = _our_loss_grads(config, params, x)
    np.testing.assert_allclose(x_grad, keras_x_grad, rtol=1e-5, atol=1e-5)
    for ours, theirs in zip([param_grads["kernel"], param_grads.get("bias")], keras_weight_grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_from_keras_keeps_initializers_regularizers_and_constraints():
    layer = keras.layers.Conv1DTranspose(
        4,
        3,
        kernel_initializer="he_normal",
        bias_initializer="ones",
        kernel_regularizer=keras.regularizers.L2(0.3),
        bias_regularizer="l1",
        activity_regularizer="l2",
        kernel_constraint=keras.constraints.MaxNorm(1.5, axis=[0, 1]),
        bias_constraint="non_neg",
    )
    layer.build((None, None, 2))
    config, _ = interop.from_keras(layer)
    assert config.kernel_initializer == ct.initializers.HeNormal()
    assert config.bias_initializer == ct.initializers.Ones()
    assert config.kernel_regularizer == ct.regularizers.L2(0.3)
    assert config.kernel_constraint == constraints.MaxNorm(1.5, axis=(0, 1))
    assert config.bias_constraint == constraints.NonNeg()


@pytest.mark.parametrize("seed", range(10, 14))
def test_to_keras_gives_a_layer_with_identical_outputs_and_config(seed):
    layer, x = _random_keras_layer(seed)
    config, params = interop.from_keras(layer)
    rebuilt = interop.to_keras(config, params, name="rebuilt")
    assert rebuilt.name == "rebuilt"
    assert interop.from_keras(rebuilt)[0] == config
    np.testing.assert_array_equal(rebuilt(x), layer(x))
    np.testing.assert_allclose(rebuilt(x), ct.conv1d_transpose(params, jnp.asarray(x), config)[0], rtol=1e-5, atol=1e-6)


def test_to_keras_accepts_linen_params_with_constrained_boxes():
    module = ct.Conv1DTranspose(4, 3, strides=2, kernel_constraint="max_norm")
    x = jax.random.normal(KEY, (2, 5, 3))
    params = module.init(KEY, x)["params"]
    layer = interop.to_keras(module.config, params)
    np.testing.assert_allclose(layer(np.asarray(x)), module.apply({"params": params}, x), rtol=1e-5, atol=1e-6)


def test_to_keras_refuses_what_keras_cannot_express():
    params = {"kernel": jnp.ones((3, 2, 4)), "bias": jnp.zeros(4)}
    with pytest.raises(ValueError, match="groups"):
        interop.to_keras(ct.Conv1DTransposeConfig(4, 3, groups=2), params)
    with pytest.raises(ValueError, match="padding"):
        interop.to_keras(
            ct.Conv1DTransposeConfig(4, 3, padding=1), {"kernel": jnp.ones((3, 4, 2)), "bias": jnp.zeros(4)}
        )
    with pytest.raises(ValueError, match="kernel"):
        interop.to_keras(ct.Conv1DTransposeConfig(5, 3), params)


def test_from_keras_refuses_other_layers_and_unbuilt_layers():
    with pytest.raises(TypeError, match="Conv1DTranspose"):
        interop.from_keras(keras.layers.Dense(3))
    with pytest.raises(ValueError, match="build"):
        interop.from_keras(keras.layers.Conv1DTranspose(3, 2))


class Decoder(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = ct.Conv1DTranspose(
            6, 4, strides=2, padding="same", activation="relu", kernel_constraint="max_norm", name="up1"
        )(x)
        x = Block(name="block")(x)
        return nn.Dense(2, name="head")(x)


class Block(nn.Module):
    @nn.compact
    def __call__(self, x):
        return ct.Conv1DTranspose(3, 3, strides=3, name="up2")(x)


def _keras_decoder():
    inner = keras.Sequential(
        [keras.Input((None, 6)), keras.layers.Conv1DTranspose(3, 3, strides=3, name="up2")], name="block"
    )
    model = keras.Sequential(
        [
            keras.Input((None, 4)),
            keras.layers.Conv1DTranspose(
                6, 4, strides=2, padding="same", activation="relu", kernel_constraint="max_norm", name="up1"
            ),
            inner,
            keras.layers.Dense(2, name="head"),
        ]
    )
    for layer in (model.layers[0], inner.layers[0]):
        layer.bias.assign(np.linspace(-1, 1, layer.bias.shape[0]).astype(np.float32))
    return model


def test_load_keras_weights_fills_linen_layers_by_name_including_nested_models():
    model = _keras_decoder()
    x = np.asarray(jax.random.normal(KEY, (2, 5, 4)))
    params = Decoder().init(KEY, x)["params"]
    loaded = interop.load_keras_weights(model, params)
    assert isinstance(loaded["up1"]["kernel"], ct.Constrained)
    np.testing.assert_array_equal(nn.unbox(loaded)["up1"]["kernel"], model.get_layer("up1").kernel)
    np.testing.assert_array_equal(loaded["block"]["up2"]["bias"], model.get_layer("block").layers[0].bias)
    np.testing.assert_array_equal(loaded["head"]["kernel"], params["head"]["kernel"])  # not a convtrans layer
    # With the Dense head copied too, the whole model computes what Keras computes.
    loaded["head"] = {
        "kernel": jnp.asarray(model.get_layer("head").kernel),
        "bias": jnp.asarray(model.get_layer("head").bias),
    }
    np.testing.assert_allclose(Decoder().apply({"params": loaded}, x), model(x), rtol=1e-5, atol=1e-5)


def test_load_keras_weights_accepts_a_whole_variables_tree():
    model = _keras_decoder()
    variables = Decoder().init(KEY, jnp.ones((1, 3, 4)))
    loaded = interop.load_keras_weights(model, variables)
    np.testing.assert_array_equal(loaded["params"]["block"]["up2"]["kernel"], model.get_layer("block").layers[0].kernel)


def test_keras_model_params_lists_every_conv1d_transpose_layer():
    found = interop.keras_model_params(_keras_decoder())
    assert sorted(found) == ["up1", "up2"]
    assert found["up2"][1]["kernel"].shape == (3, 3, 6)


def test_load_keras_weights_reports_missing_names_and_shape_mismatches():
    model = _keras_decoder()
    params = {"up1": {"kernel": jnp.zeros((4, 6, 4)), "bias": jnp.zeros(6)}}
    with pytest.raises(ValueError, match="up2"):
        interop.load_keras_weights(model, params)
    assert set(interop.load_keras_weights(model, params, strict=False)) == {"up1"}
    with pytest.raises(ValueError, match="shape"):
        interop.load_keras_weights(model, {"up1": {"kernel": jnp.zeros((4, 6, 5)), "bias": jnp.zeros(6)}}, strict=False)


# --- PyTorch --------------------------------------------------------------------------------


def _random_torch_module(seed):
    rng = np.random.default_rng(seed)
    groups = int(rng.choice([1, 2, 3]))
    kernel_size, stride, dilation = int(rng.integers(1, 6)), int(rng.integers(1, 4)), int(rng.integers(1, 3))
    effective = (kernel_size - 1) * dilation + 1
    torch.manual_seed(seed)
    module = torch.nn.ConvTranspose1d(
        groups * int(rng.integers(1, 4)),
        groups * int(rng.integers(1, 4)),
        kernel_size,
        stride=stride,
        padding=int(rng.integers(0, effective // 2 + 1)),
        output_padding=int(rng.integers(0, max(stride, dilation))),
        groups=groups,
        bias=bool(rng.integers(2)),
        dilation=dilation,
    )
    x = torch.randn(2, module.in_channels, int(rng.integers(2, 8)), requires_grad=True)
    return module, x


@pytest.mark.parametrize("seed", range(12))
def test_from_torch_outputs_and_gradients_equal_pytorch(seed):
    module, x = _random_torch_module(seed)
    y_torch = module(x)
    torch.sin(y_torch).sum().backward()
    config, params = interop.from_torch(module)
    assert config.data_format == "channels_first"
    param_grads, x_grad = _our_loss_grads(config, params, x.detach().numpy())
    y, _ = ct.conv1d_transpose(params, jnp.asarray(x.detach().numpy()), config)
    assert y.shape == tuple(y_torch.shape)
    np.testing.assert_allclose(y, y_torch.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x_grad, x.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(param_grads["kernel"], module.weight.grad.permute(2, 1, 0).numpy(), rtol=1e-5, atol=1e-5)
    if module.bias is not None:
        np.testing.assert_allclose(param_grads["bias"], module.bias.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_from_torch_state_dict_with_prefix_equals_the_module():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Identity(),
        torch.nn.ConvTranspose1d(4, 6, 5, stride=3, padding=2, output_padding=1, groups=2, dilation=2),
    )
    config, params = interop.from_torch_state_dict(
        net.state_dict(), 4, 6, 5, stride=3, padding=2, output_padding=1, groups=2, dilation=2, prefix="1."
    )
    module_config, module_params = interop.from_torch(net[1])
    assert config == module_config
    np.testing.assert_array_equal(params["kernel"], module_params["kernel"])
    x = torch.randn(3, 4, 7)
    np.testing.assert_allclose(
        ct.conv1d_transpose(params, jnp.asarray(x.numpy()), config)[0], net(x).detach().numpy(), rtol=1e-5, atol=1e-5
    )


def test_torch_stride_with_dilation_and_large_output_padding_is_supported():
    module = torch.nn.ConvTranspose1d(2, 3, 3, stride=2, dilation=3, output_padding=2)
    config, params = interop.from_torch(module)
    assert (config.strides, config.dilation_rate, config.output_padding) == (2, 3, 2)
    x = torch.randn(1, 2, 4)
    np.testing.assert_allclose(
        ct.conv1d_transpose(params, jnp.asarray(x.numpy()), config)[0], module(x).detach().numpy(), rtol=1e-5, atol=1e-5
    )


def test_non_zero_padding_modes_are_refused_clearly():
    module = torch.nn.ConvTranspose1d(2, 3, 3)
    module.padding_mode = "reflect"
    with pytest.raises(ValueError, match="padding_mode='reflect'"):
        interop.from_torch(module)
    with pytest.raises(ValueError, match="padding_mode='circular'"):
        interop.from_torch_state_dict(module.state_dict(), 2, 3, 3, padding_mode="circular")


def test_state_dict_shape_and_bias_mismatches_raise():
    state = torch.nn.ConvTranspose1d(2, 4, 3, groups=2).state_dict()
    with pytest.raises(ValueError, match="shape"):
        interop.from_torch_state_dict(state, 2, 4, 3)
    with pytest.raises(ValueError, match="bias=False"):
        interop.from_torch_state_dict(state, 2, 4, 3, groups=2, bias=False)
    with pytest.raises(
        ValueError,
        match=r"no weight for 'up.': expected 'up.weight', or 'up.weight_g' and 'up.weight_v', "
        r"or 'up.parametrizations.weight.original0' and .*; the keys there are \[\]",
    ):
        interop.from_torch_state_dict(state, 2, 4, 3, groups=2, prefix="up.")
    with pytest.raises(TypeError, match="ConvTranspose1d"):
        interop.from_torch(torch.nn.Conv1d(2, 3, 3))


def test_ported_torch_weights_run_in_the_linen_and_nnx_modules():
    from flax import nnx

    torch.manual_seed(1)
    module = torch.nn.ConvTranspose1d(4, 6, 4, stride=2, padding=1, groups=2)
    config, params = interop.from_torch(module)
    x = torch.randn(2, 4, 5)
    expected = module(x).detach().numpy()
    linen = ct.Conv1DTranspose.from_config(config)
    np.testing.assert_allclose(linen.apply({"params": params}, jnp.asarray(x.numpy())), expected, rtol=1e-5, atol=1e-5)
    layer = ct.nnx.Conv1DTranspose.from_config(config, 4, rngs=nnx.Rngs(0))
    layer.kernel[...] = params["kernel"]
    layer.bias[...] = params["bias"]
    np.testing.assert_allclose(layer(jnp.asarray(x.numpy())), expected, rtol=1e-5, atol=1e-5)


# --- weight norm and 16-bit modules ------------------------------------------------------------


def _weight_normed(style, dim):
    torch.manual_seed(3)
    module = torch.nn.ConvTranspose1d(4, 6, 5, stride=2, padding=1, groups=2)
    if style == "weight_norm":
        return torch.nn.utils.weight_norm(module, dim=dim)
    return torch.nn.utils.parametrizations.weight_norm(module, dim=dim)


@pytest.mark.parametrize("style", ["weight_norm", "parametrizations"])
@pytest.mark.parametrize("dim", [0, 1, None])
def test_weight_normed_modules_are_folded_into_the_kernel(style, dim):
    module = _weight_normed(style, dim)
    with torch.no_grad():  # a trained-looking g, not the initial ||v||
        next(p for n, p in module.named_parameters() if n.endswith(("weight_g", "original0"))).mul_(1.7)
    config, params = interop.from_torch(module)
    x = torch.randn(2, 4, 7)
    want = module(x).detach().numpy()  # (the old style recomputes module.weight in its forward hook)
    np.testing.assert_allclose(
        params["kernel"], module.weight.detach().numpy().transpose(2, 1, 0), rtol=1e-6, atol=1e-7
    )
    y, _ = ct.conv1d_transpose(params, jnp.asarray(x.numpy()), config)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_fold_weight_norm_is_g_times_the_direction():
    v = np.arange(1.0, 13.0).reshape(2, 3, 2).astype(np.float32)
    g = np.array([2.0, 3.0], np.float32).reshape(2, 1, 1)
    norms = np.sqrt((v.astype(np.float64) ** 2).sum(axis=(1, 2), keepdims=True))
    np.testing.assert_allclose(interop.fold_weight_norm(g, v), v * g / norms, rtol=1e-7)
    assert interop.fold_weight_norm(g, v).dtype == np.float32


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16_bit_modules_port_in_their_dtype(dtype):
    torch.manual_seed(4)
    module = torch.nn.ConvTranspose1d(3, 4, 4, stride=2, padding=1)
    reference_config, reference = interop.from_torch(module)
    config, params = interop.from_torch(module.to(dtype))
    want = {torch.float16: jnp.float16, torch.bfloat16: jnp.bfloat16}[dtype]
    assert params["kernel"].dtype == want and params["bias"].dtype == want
    np.testing.assert_allclose(np.asarray(params["kernel"], np.float32), reference["kernel"], rtol=1e-2, atol=1e-3)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 3, 6)), want)
    y, _ = ct.conv1d_transpose(params, x, config)
    y32, _ = ct.conv1d_transpose(reference, x.astype(jnp.float32), reference_config)
    np.testing.assert_allclose(np.asarray(y, np.float32), y32, rtol=3e-2, atol=3e-2)

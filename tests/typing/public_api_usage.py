"""convtrans used the way a user's code uses it, for type checkers: ``mypy`` (configured in
pyproject.toml) must report no issues, and running the file exercises every call once.

Not a test module (pytest does not collect it): it checks the *annotations* of the public API
from the outside. The PyTorch and Keras interop runs only when those packages are installed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import convtrans
from convtrans import activations, constraints, initializers, interop, optim, regularizers, streaming


def pure_function() -> tuple[convtrans.Conv1DTransposeConfig, dict[str, jax.Array], jax.Array]:
    """conv1d_transpose with a config, plan and explain, the Keras objects in a config."""
    config = convtrans.Conv1DTransposeConfig(
        filters=4,
        kernel_size=3,
        strides=2,
        padding="same",
        activation="gelu",
        kernel_initializer=initializers.HeNormal(seed=0),
        kernel_regularizer=regularizers.L2(1e-3),
        kernel_constraint=constraints.MaxNorm(2.0),
    )
    key = jax.random.key(0)
    kernel = initializers.get("glorot_uniform")(key, config.kernel_shape(3), jnp.float32)
    params: dict[str, jax.Array] = {"kernel": kernel, "bias": jnp.zeros((config.filters,))}
    x = jnp.ones((2, 8, 3))
    y, aux = convtrans.conv1d_transpose(params, x, config, precision=jax.lax.Precision.HIGHEST)
    penalty: jax.Array = sum(aux.values(), jnp.zeros(()))
    steps: int = convtrans.output_length(config, 8)
    assert y.shape == (2, steps, 4) and penalty.shape == ()
    chosen: convtrans.Plan = convtrans.plan(config, x.shape, "float32", platform="cpu")
    reason: str = convtrans.explain(config, x.shape, jnp.float32)
    assert chosen.forward and reason
    same = convtrans.conv1d_transpose(params, x, config, implementation=convtrans.Plan.uniform("gemm"))[0]
    assert same.shape == y.shape
    conv = convtrans.Conv1DConfig(filters=3, kernel_size=3, padding="causal")
    z, _ = convtrans.conv1d({"kernel": jnp.ones(conv.kernel_shape(4)), "bias": jnp.zeros(3)}, y, conv)
    assert z.shape == (2, steps, 3)
    return config, params, x


def keras_objects() -> None:
    """Initializers, regularizers, constraints and activations on their own."""
    key = jax.random.key(1)
    initializer: initializers.Initializer = initializers.VarianceScaling(2.0, "fan_in", "uniform")
    w: jax.Array = initializer(key, (3, 4, 5))
    fans: tuple[int, int] = initializers.compute_fans(w.shape)
    penalty: jax.Array = regularizers.L1L2(l1=0.01, l2=0.01)(w)
    maybe = regularizers.get("l2")
    projected: jax.Array = constraints.UnitNorm(axis=0)(w)
    found = constraints.get({"class_name": "NonNeg", "config": {}})
    assert maybe is not None and found is not None and fans == (12, 15)
    activation: activations.Activation = activations.get("leaky_relu")
    gated: jax.Array = activations.glu(activation(projected), axis=-1) if w.shape[-1] % 2 == 0 else w
    assert penalty.shape == () and gated.ndim == 3 and found(w).shape == w.shape


def linen_and_optax() -> None:
    """The linen module: init, apply with its losses, Keras constraints in an optax chain."""
    model = nn.Sequential(
        [
            convtrans.Conv1DTranspose(
                filters=8,
                kernel_size=4,
                strides=2,
                padding="same",
                kernel_constraint="max_norm",
                kernel_regularizer="l2",
                name="up",
            ),
            nn.relu,
            nn.Dense(2, kernel_init=convtrans.with_constraint(nn.initializers.lecun_normal(), "non_neg")),
        ]
    )
    x = jnp.ones((1, 16, 3))
    variables = model.init(jax.random.key(0), x)
    params = variables["params"]
    y, state = model.apply({"params": params}, x, mutable=["losses"])
    losses: Mapping[str, Any] = state["losses"]

    def loss_fn(p: Any) -> jax.Array:
        out, sown = model.apply({"params": p}, x, mutable=["losses"])
        return jnp.mean(jnp.square(out)) + sum(jax.tree.leaves(sown["losses"]), jnp.zeros(()))

    tx = optax.chain(optax.sgd(0.1), convtrans.keras_constraints())
    opt_state = tx.init(params)
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    projected = convtrans.apply_constraints(params)
    recorded = [
        s
        for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, optim.KerasConstraintsState))
        if isinstance(s, optim.KerasConstraintsState)
    ]
    assert losses and recorded and len(jax.tree.leaves(projected)) == len(jax.tree.leaves(params))
    assert jnp.shape(y) == (1, 32, 2)
    layer = convtrans.Conv1DTranspose.from_config(convtrans.Conv1DTransposeConfig(4, 3), name="from_config")
    assert layer.config.filters == 4


def nnx_module() -> None:
    """The nnx module, its penalties under nnx.capture."""
    model = convtrans.nnx.Conv1DTranspose(3, 4, 3, strides=2, kernel_regularizer="l2", rngs=nnx.Rngs(0))
    x = jnp.ones((2, 8, 3))
    y: jax.Array = model(x)

    def apply(m: convtrans.nnx.Conv1DTranspose, inputs: jax.Array) -> jax.Array:
        return m(inputs)

    forward = convtrans.nnx.with_regularization_loss(apply)
    out, penalty = forward(model, x)
    weights: jax.Array = model.weight_regularization()
    stack = convtrans.nnx.Residual([convtrans.nnx.Conv1D(4, 4, 3, padding="same", rngs=nnx.Rngs(1)), jax.nn.relu])
    assert y.shape == out.shape == (2, 17, 4) and penalty.shape == weights.shape == ()
    assert stack(y).shape == y.shape


def streams(config: convtrans.Conv1DTransposeConfig, params: dict[str, jax.Array], x: jax.Array) -> None:
    """One layer streamed from its config, and a whole model through a Streamer."""
    state = streaming.init(config, batch_size=2)
    pieces: list[jax.Array] = []
    for start in range(0, x.shape[1], 4):
        state, y = streaming.step(params, state, x[:, start : start + 4], config)
        pieces.append(y)
    pieces.append(streaming.finish(params, state, config))
    delay: int = streaming.latency(config)
    whole, _ = streaming.chunked_conv1d_transpose(params, x, config, chunk_size=4)
    assert jnp.concatenate(pieces, axis=1).shape[1] == delay + whole.shape[1] + 0 * streaming.tail_length(config)

    model = nn.Sequential(
        [
            convtrans.Conv1D(filters=3, kernel_size=3, padding="causal"),
            nn.tanh,
            convtrans.Conv1DTranspose(filters=2, kernel_size=4, strides=2),
        ]
    )
    variables = model.init(jax.random.key(0), x)
    streamer = streaming.Streamer(model, variables, batch_size=2)
    carried = streamer.init()
    carried, chunk_out = streamer.step(carried, x[:, :4])
    tail: jax.Array = streamer.finish(carried)
    rate: Fraction = streamer.rate
    assert chunk_out.shape[1] == 4 * rate and tail.ndim == 3


def torch_interop() -> None:
    """Weights from a PyTorch state dict (NumPy values stand in for tensors) and back."""
    state_dict = {"weight": np.zeros((3, 4, 5), np.float32), "bias": np.zeros((4,), np.float32)}
    config, params = interop.from_torch_state_dict(state_dict, 3, 4, 5, stride=2, padding=1)
    folded: np.ndarray = interop.fold_weight_norm(np.ones((3, 1, 1), np.float32), state_dict["weight"] + 1)
    path, leaf = interop.flax_name("ups.0.weight")
    assert config.data_format == "channels_first" and params["kernel"].shape == (5, 4, 3)
    assert folded.shape == (3, 4, 5) and path == ("ups_0",) and leaf == "weight"
    if importlib.util.find_spec("torch") is None:
        return
    import torch

    module = torch.nn.ConvTranspose1d(3, 4, 5, stride=2)
    config, params = interop.from_torch(module)
    model = convtrans.Conv1DTranspose.from_config(config, name="up")
    variables = model.init(jax.random.key(0), jnp.ones((1, 3, 8)))
    loaded: dict[str, Any] = interop.load_torch_state_dict(
        {"params": {"up": variables["params"]}}, {"up." + k: v for k, v in module.state_dict().items()}
    )
    back: dict[str, Any] = interop.to_torch_state_dict(loaded, {"up." + k: v for k, v in module.state_dict().items()})
    assert set(back) == {"up.weight", "up.bias"}


def keras_interop(config: convtrans.Conv1DTransposeConfig, params: dict[str, jax.Array]) -> None:
    """A Keras layer from a config and back, and a Keras model's weights into linen params."""
    if importlib.util.find_spec("keras") is None:
        return
    plain = config.replace(kernel_initializer="glorot_uniform", kernel_regularizer=None, kernel_constraint=None)
    layer = interop.to_keras(plain, params, name="up")
    again, weights = interop.from_keras(layer)
    found = interop.keras_model_params(layer)
    linen_params = convtrans.Conv1DTranspose.from_config(plain, name="up").init(jax.random.key(0), jnp.ones((1, 8, 3)))[
        "params"
    ]
    assert again.filters == plain.filters and weights["kernel"].shape == params["kernel"].shape
    assert isinstance(found, dict) and isinstance(interop.load_keras_weights(layer, linen_params, strict=False), dict)


def main() -> None:
    config, params, x = pure_function()
    keras_objects()
    linen_and_optax()
    nnx_module()
    streams(config, params, x)
    torch_interop()
    keras_interop(config, params)
    print("convtrans's public API used as typed: ok")


if __name__ == "__main__":
    main()

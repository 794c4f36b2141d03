"""Hostile arguments of the PyTorch interop (convtrans.interop) and the optimizer helpers
(convtrans.optim): a ValueError or TypeError whose message names the argument; never an
AttributeError, a raw JAX error or a silently wrong result. tests/test_bad_inputs.py holds the
other entry points."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import convtrans as ct
from convtrans import interop

TORCH_STATE = {"weight": np.ones((4, 2, 3), np.float32), "bias": np.zeros(2, np.float32)}


def expect(error, *fragments):
    """``pytest.raises`` that also checks the message mentions every fragment (literally)."""
    return pytest.raises(error, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


@pytest.fixture(scope="module")
def pair():
    """A linen params tree holding layer ``up`` and the torch state dict of that layer."""
    import torch

    layer = ct.Conv1DTranspose(filters=2, kernel_size=3)
    params = {"up": layer.init(jax.random.PRNGKey(0), jnp.ones((1, 5, 4)))["params"]}
    return params, {"up.weight": torch.zeros(4, 2, 3), "up.bias": torch.zeros(2)}


@pytest.fixture(scope="module")
def constrained():
    model = ct.Conv1DTranspose(filters=2, kernel_size=3, kernel_constraint="max_norm")
    return model.init(jax.random.PRNGKey(0), jnp.ones((1, 5, 4)))["params"]


# --- from_torch_state_dict: the torch constructor's names -----------------------------------------


@pytest.mark.parametrize("value, error", [(0, ValueError), (2.5, TypeError), (True, TypeError), ("2", TypeError)])
def test_a_bad_out_channels_is_named_out_channels_not_filters(value, error):
    with pytest.raises(error, match="out_channels") as info:
        interop.from_torch_state_dict(TORCH_STATE, 4, value, 3)
    assert "filters" not in str(info.value)


def test_the_configs_relational_checks_speak_torch_names():
    with pytest.raises(ValueError, match=r"output_padding=1 must be smaller than max\(stride, dilation\)") as info:
        interop.from_torch_state_dict(TORCH_STATE, 4, 2, 3, output_padding=1)
    assert "strides" not in str(info.value) and "dilation_rate" not in str(info.value)


def test_groups_must_divide_in_channels():
    with expect(ValueError, "groups=2", "in_channels=3"):
        interop.from_torch_state_dict(
            {"weight": np.ones((3, 1, 3), np.float32), "bias": np.zeros(2)}, 3, 2, 3, groups=2
        )


@pytest.mark.parametrize("prefix", [None, 3])
def test_prefix_must_be_a_str(prefix):
    with expect(TypeError, "prefix", "str"):
        interop.from_torch_state_dict(TORCH_STATE, 4, 2, 3, prefix=prefix)


@pytest.mark.parametrize(
    "key, value",
    [
        ("weight", None),
        ("weight", "abc"),
        ("weight", np.full((4, 2, 3), 1.0, object)),
        ("bias", np.full(2, 1.0, object)),
    ],
)
def test_a_weight_that_is_no_floating_array_is_named_by_its_key(key, value):
    with expect(TypeError, f"state_dict[{key!r}]", "floating"):
        interop.from_torch_state_dict({**TORCH_STATE, key: value}, 4, 2, 3)


# --- fold_weight_norm ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int64, np.complex64])
def test_fold_weight_norm_refuses_a_v_that_is_not_floating(dtype):
    with expect(TypeError, "v must be floating", np.dtype(dtype).name):
        interop.fold_weight_norm(np.full((2, 1, 1), 3.0), np.ones((2, 3, 4), dtype))


def test_fold_weight_norm_names_a_g_that_does_not_broadcast():
    with expect(ValueError, "g", "(3, 1, 1)", "(2, 3, 4)"):
        interop.fold_weight_norm(np.ones((3, 1, 1)), np.ones((2, 3, 4)))


# --- load_torch_state_dict / to_torch_state_dict ---------------------------------------------------


def test_load_torch_state_dict_needs_mappings(pair):
    params, state_dict = pair
    with expect(TypeError, "variables", "mapping", "str"):
        interop.load_torch_state_dict("abc", state_dict)
    with expect(TypeError, "state_dict", "mapping", "NoneType"):
        interop.load_torch_state_dict(params, None)


def test_load_torch_state_dict_names_a_key_that_is_not_a_str(pair):
    params, state_dict = pair
    with expect(TypeError, "state_dict keys must be str", "1"):
        interop.load_torch_state_dict(params, {1: np.ones(2), **state_dict})


def test_load_torch_state_dict_names_a_weight_that_is_not_floating(pair):
    params, state_dict = pair
    with expect(TypeError, "state_dict['up.weight']", "floating"):
        interop.load_torch_state_dict(params, {**state_dict, "up.weight": None})


def test_load_torch_state_dict_refuses_a_str_as_the_list_of_paths(pair):
    with expect(TypeError, "flax_conv_transpose", "'up'"):
        interop.load_torch_state_dict(*pair, flax_conv_transpose="up")


@pytest.mark.parametrize("like", [None, "abc"])
def test_to_torch_state_dict_needs_a_state_dict_or_module_as_like(pair, like):
    with expect(TypeError, "like", "mapping"):
        interop.to_torch_state_dict(pair[0], like)


def test_to_torch_state_dict_needs_variables(pair):
    with expect(TypeError, "variables", "mapping", "NoneType"):
        interop.to_torch_state_dict(None, pair[1])


def test_to_torch_state_dict_refuses_a_complex_kernel(pair):
    params, like = pair
    params = {"up": {**params["up"], "kernel": params["up"]["kernel"].astype(jnp.complex64)}}
    with expect(TypeError, "up/kernel", "complex64"):
        interop.to_torch_state_dict(params, like)


# --- keras_constraints, Constrained, with_constraint -----------------------------------------------


@pytest.mark.parametrize("state", [None, optax.EmptyState()])
def test_keras_constraints_update_names_a_foreign_state(constrained, state):
    tx = ct.keras_constraints()
    with expect(TypeError, "state", "tx.init"):
        tx.update(jax.tree.map(jnp.zeros_like, constrained), state, constrained)


def test_keras_constraints_update_names_the_leaf_of_updates_with_another_shape(constrained):
    tx = ct.keras_constraints()
    updates = jax.tree.map(lambda a: jnp.zeros(a.shape[:-1]), constrained)
    with expect(ValueError, "updates['bias']", "()", "(2,)"):
        tx.update(updates, tx.init(constrained), constrained)


def test_keras_constraints_update_names_the_leaf_of_params_with_another_shape_than_init(constrained):
    tx = ct.keras_constraints()
    swapped = {"bias": constrained["kernel"], "kernel": constrained["bias"]}
    with expect(ValueError, "params['bias']", "(3, 2, 4)", "(2,)", "tx.init"):
        tx.update(jax.tree.map(jnp.zeros_like, swapped), tx.init(constrained), swapped)


def test_a_constrained_box_refuses_a_constraint_that_is_not_callable():
    with expect(TypeError, "constraint must be callable", "'non_neg'", "constraints.get"):
        ct.optim.Constrained(jnp.ones(3), "non_neg")


@pytest.mark.parametrize("init", [None, 3])
def test_with_constraint_needs_a_callable_init(init):
    with expect(TypeError, "init must be a callable", repr(init)):
        ct.with_constraint(init, "non_neg")

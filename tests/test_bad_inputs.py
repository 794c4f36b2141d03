"""Hostile arguments at every public entry point: a ValueError or TypeError whose message names the
argument, the value given and what was expected; never an XLA error or a silently wrong shape.

tests/test_errors.py holds the core list (config fields, ranks, channels, shapes); this file covers
what it does not: NumPy bool/complex arrays, non-array parameters, unknown parameter names, NumPy
scalars as sizes, the geometry helpers, streaming, the modules and the interop helpers.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convtrans as ct
from convtrans import interop, streaming

CONFIG = ct.Conv1DTransposeConfig(filters=2, kernel_size=3, strides=2)
PARAMS = {"kernel": jnp.ones((3, 2, 4)), "bias": jnp.zeros(2)}
X = jnp.ones((1, 5, 4))


def expect(error, *fragments):
    """``pytest.raises`` that also checks the message mentions every fragment (literally)."""
    return pytest.raises(error, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


# --- conv1d_transpose: inputs --------------------------------------------------------------------


@pytest.mark.parametrize(
    "x, dtype",
    [
        (np.ones((1, 5, 4), bool), "bool"),
        (np.ones((1, 5, 4), np.complex128), "complex128"),
        (jnp.ones((1, 5, 4), jnp.complex64), "complex64"),
        (np.ones((1, 5, 4), np.uint8), "uint8"),
        (jnp.ones((1, 5, 4), jnp.int8), "int8"),
    ],
)
def test_non_floating_inputs_are_a_type_error_naming_x_and_its_dtype(x, dtype):
    with expect(TypeError, "x", dtype, "floating"):
        ct.conv1d_transpose(PARAMS, x, CONFIG)


@pytest.mark.parametrize(
    "x, kind", [([[[1.0] * 4] * 5], "list"), ("signal", "str"), (None, "NoneType"), (3.0, "float")]
)
def test_non_array_inputs_are_a_type_error_naming_x_and_the_type(x, kind):
    with expect(TypeError, "x", "array", kind):
        ct.conv1d_transpose(PARAMS, x, CONFIG)


def test_integer_input_is_rejected_under_jit_too():
    with expect(TypeError, "x", "int32", "floating"):
        jax.jit(ct.conv1d_transpose, static_argnums=2)(PARAMS, jnp.ones((1, 5, 4), jnp.int32), CONFIG)


# --- conv1d_transpose: params --------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, kind",
    [
        ([PARAMS["kernel"], PARAMS["bias"]], "list"),
        ((PARAMS["kernel"],), "tuple"),
        (None, "NoneType"),
        (PARAMS["kernel"], "ArrayImpl"),
    ],
)
def test_params_that_are_not_a_mapping_are_a_type_error(params, kind):
    with expect(TypeError, "params", "mapping", kind):
        ct.conv1d_transpose(params, X, CONFIG)


@pytest.mark.parametrize(
    "name, value, error, fragments",
    [
        ("kernel", np.ones((3, 2, 4)).tolist(), ValueError, ("params['kernel']", "(3, 2, 4)", "list")),
        ("kernel", 1.0, ValueError, ("params['kernel']", "(3, 2, 4)", "float")),
        ("bias", 0.0, ValueError, ("params['bias']", "(2,)", "float")),
        ("bias", [0.0, 0.0], ValueError, ("params['bias']", "(2,)", "list")),
        ("kernel", np.ones((3, 2, 4), bool), TypeError, ("params['kernel']", "floating", "bool")),
        ("kernel", np.ones((3, 2, 4), np.complex64), TypeError, ("params['kernel']", "floating", "complex64")),
        ("kernel", np.ones((3, 2, 4), np.int32), TypeError, ("params['kernel']", "floating", "int32")),
        ("bias", np.zeros(2, np.int64), TypeError, ("params['bias']", "floating", "int64")),
    ],
)
def test_parameter_entries_that_are_not_floating_arrays_of_the_right_shape(name, value, error, fragments):
    with expect(error, *fragments):
        ct.conv1d_transpose({**PARAMS, name: value}, X, CONFIG)


@pytest.mark.parametrize("extra", ["gamma", "Kernel", "bias_"])
def test_unknown_parameter_names_are_a_value_error_listing_them(extra):
    with expect(ValueError, "params", extra, "'kernel'"):
        ct.conv1d_transpose({**PARAMS, extra: jnp.ones(2)}, X, CONFIG)


@pytest.mark.parametrize("implementation", ["fft", "", "LHS_DILATION", 3])
def test_unknown_implementations_are_a_value_error_listing_the_known_ones(implementation):
    with expect(ValueError, "implementation", repr(implementation), "lhs_dilation"):
        ct.conv1d_transpose(PARAMS, X, CONFIG, implementation=implementation)


def test_a_non_config_is_a_type_error_naming_config():
    with expect(TypeError, "config", "Conv1DTransposeConfig", "dict"):
        ct.conv1d_transpose(PARAMS, X, {"filters": 2, "kernel_size": 3})


# --- config: NumPy scalars and arrays as sizes ---------------------------------------------------


@pytest.mark.parametrize(
    "field, value, kind",
    [
        ("filters", np.float32(2.0), "float32"),
        ("filters", np.array(2), "ndarray"),
        ("kernel_size", np.array([3]), "ndarray"),
        ("strides", np.bool_(True), "bool"),
        ("groups", 2.0, "float"),
        ("output_padding", np.float64(1.0), "float64"),
    ],
)
def test_numpy_scalars_and_arrays_that_are_not_integers_are_a_type_error(field, value, kind):
    with expect(TypeError, field, "integer", kind):
        ct.Conv1DTransposeConfig(**{"filters": 2, "kernel_size": 3, field: value})


def test_numpy_integers_are_accepted_as_sizes():
    config = ct.Conv1DTransposeConfig(
        filters=np.int64(4), kernel_size=np.int32(3), strides=np.int16(2), groups=np.uint8(2)
    )
    assert (config.filters, config.kernel_size, config.strides, config.groups) == (4, 3, 2, 2)
    assert all(type(v) is int for v in (config.filters, config.kernel_size, config.strides, config.groups))


def test_use_bias_must_be_a_python_bool():
    with expect(TypeError, "use_bias", "bool", "1"):
        ct.Conv1DTransposeConfig(filters=2, kernel_size=3, use_bias=1)


# --- geometry helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize("length", [2.0, "3", True, None, 0, -4])
def test_output_length_rejects_anything_but_a_positive_integer_length(length):
    with expect(ValueError, "length", repr(length), "positive integer"):
        ct.output_length(CONFIG, length)


def test_output_length_accepts_numpy_integers():
    assert ct.output_length(CONFIG, np.int64(5)) == ct.output_length(CONFIG, 5) == 11


@pytest.mark.parametrize(
    "function", [ct.transpose_pads, lambda c: ct.output_length(c, 3)], ids=["transpose_pads", "output_length"]
)
def test_geometry_helpers_reject_a_non_config(function):
    with expect(TypeError, "config", "Conv1DTransposeConfig", "dict"):
        function({"filters": 2, "kernel_size": 3})


# --- streaming -----------------------------------------------------------------------------------

STATE = streaming.init(CONFIG, 1)


@pytest.mark.parametrize(
    "batch_size, error, fragment",
    [
        (2.0, TypeError, "integer"),
        ("3", TypeError, "integer"),
        (True, TypeError, "integer"),
        (None, TypeError, "integer"),
        (-1, ValueError, ">= 0"),
    ],
)
def test_stream_init_rejects_bad_batch_sizes(batch_size, error, fragment):
    with expect(error, "batch_size", repr(batch_size), fragment):
        streaming.init(CONFIG, batch_size)


@pytest.mark.parametrize(
    "dtype, shown", [(jnp.int32, "int32"), (bool, "bool"), (complex, "complex128"), ("foo", "'foo'"), (None, "None")]
)
def test_stream_init_rejects_non_floating_dtypes(dtype, shown):
    with expect(TypeError, "dtype", shown, "floating"):
        streaming.init(CONFIG, 1, dtype)


def test_stream_init_accepts_numpy_integer_batch_sizes():
    assert streaming.init(CONFIG, np.int64(3)).carry.shape[0] == 3


@pytest.mark.parametrize("state, kind", [((STATE.carry, STATE.preroll), "tuple"), (None, "NoneType"), ({}, "dict")])
def test_stream_step_and_finish_reject_a_state_not_made_by_init(state, kind):
    with expect(TypeError, "state", "StreamState", kind):
        streaming.step(PARAMS, state, X, CONFIG)
    with expect(TypeError, "state", "StreamState", kind):
        streaming.finish(PARAMS, state, CONFIG)


def test_stream_step_rejects_a_state_for_another_batch_size_or_config():
    with expect(ValueError, "state.carry", "(2, 1, 2)", "(1, 1, 2)", "batch"):
        streaming.step(PARAMS, streaming.init(CONFIG, 2), X, CONFIG)
    with expect(ValueError, "another layer", "kernel_size=9 in the state's config, 3 in config"):
        streaming.step(PARAMS, streaming.init(CONFIG.replace(kernel_size=9), 1), X, CONFIG)


def test_stream_step_rejects_a_chunk_of_another_dtype_than_the_state():
    with expect(TypeError, "x", "float32", "bfloat16", "init"):
        streaming.step(PARAMS, streaming.init(CONFIG, 1, jnp.bfloat16), X, CONFIG)


@pytest.mark.parametrize(
    "x, error, fragments",
    [
        (jnp.ones((1, 5, 4), jnp.int32), TypeError, ("x", "int32", "floating")),
        (np.ones((1, 5, 4), bool), TypeError, ("x", "bool", "floating")),
        (jnp.ones((5,)), ValueError, ("x", "rank >= 2", "(5,)")),
        (jnp.ones((1, 5, 3)), ValueError, ("params['kernel']", "(3, 2, 3)", "(3, 2, 4)")),
        (jnp.ones((1, 0, 4)), ValueError, ("length", "0", "positive integer")),
    ],
)
def test_stream_step_rejects_bad_chunks(x, error, fragments):
    with expect(error, *fragments):
        streaming.step(PARAMS, STATE, x, CONFIG)


def test_stream_finish_checks_the_bias_it_adds():
    with expect(TypeError, "params", "mapping", "NoneType"):
        streaming.finish(None, STATE, CONFIG)
    with expect(ValueError, "params['bias']", "(2,)", "(3,)"):
        streaming.finish({"kernel": PARAMS["kernel"], "bias": jnp.ones(3)}, STATE, CONFIG)


@pytest.mark.parametrize(
    "chunk_size, error, fragment",
    [
        (0, ValueError, ">= 1"),
        (2.0, TypeError, "integer"),
        ("3", TypeError, "integer"),
        (True, TypeError, "integer"),
        (None, TypeError, "integer"),
    ],
)
def test_chunked_op_rejects_bad_chunk_sizes(chunk_size, error, fragment):
    with expect(error, "chunk_size", repr(chunk_size), fragment):
        streaming.chunked_conv1d_transpose(PARAMS, X, CONFIG, chunk_size)


@pytest.mark.parametrize("activation", ["softmax", "log_softmax", "sparsemax", "glu"])
def test_streaming_refuses_activations_that_mix_time_in_channels_first(activation):
    config = CONFIG.replace(activation=activation, data_format="channels_first")
    with expect(ValueError, "activation", activation, "channels_first", "time"):
        streaming.init(config, 1)


@pytest.mark.parametrize("function", [streaming.latency, streaming.tail_length, streaming.carry_length])
def test_streaming_lengths_reject_a_non_config(function):
    with expect(TypeError, "config", "Conv1DTransposeConfig", "dict"):
        function({"filters": 2})


# --- flax modules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x, dtype",
    [
        (jnp.ones((1, 5, 4), jnp.int32), "int32"),
        (np.ones((1, 5, 4), bool), "bool"),
        (jnp.ones((1, 5, 4), jnp.complex64), "complex64"),
    ],
)
def test_modules_refuse_non_floating_inputs_instead_of_casting_them(x, dtype):
    from flax import nnx

    linen = ct.Conv1DTranspose(filters=2, kernel_size=3, strides=2)
    with expect(TypeError, "x", dtype, "floating"):
        linen.init(jax.random.PRNGKey(0), x)
    module = ct.nnx.Conv1DTranspose(4, filters=2, kernel_size=3, strides=2, rngs=nnx.Rngs(0))
    with expect(TypeError, "x", dtype, "floating"):
        module(x)


def test_linen_module_applied_to_other_channels_than_it_was_built_for():
    linen = ct.Conv1DTranspose(filters=2, kernel_size=3, strides=2)
    variables = linen.init(jax.random.PRNGKey(0), X)
    with expect(ValueError, "x", "3 channels", "(3, 2, 4)", "4"):
        linen.apply(variables, jnp.ones((1, 5, 3)))


def test_nnx_module_called_on_other_channels_than_it_was_built_for():
    from flax import nnx

    module = ct.nnx.Conv1DTranspose(4, filters=2, kernel_size=3, rngs=nnx.Rngs(0))
    with expect(ValueError, "params['kernel']", "(3, 2, 3)", "(3, 2, 4)", "4 input channels"):
        module(jnp.ones((1, 5, 3)))


@pytest.mark.parametrize("in_channels", [2.0, "4", True, 0, None])
def test_nnx_module_rejects_non_integer_in_channels(in_channels):
    from flax import nnx

    with expect(ValueError, "in_channels", repr(in_channels), "positive integer"):
        ct.nnx.Conv1DTranspose(in_channels, filters=2, kernel_size=3, rngs=nnx.Rngs(0))


def test_nnx_module_accepts_numpy_integers_and_needs_real_rngs():
    from flax import nnx

    assert ct.nnx.Conv1DTranspose(np.int64(4), filters=2, kernel_size=3, rngs=nnx.Rngs(0)).in_channels == 4
    with expect(TypeError, "rngs", "nnx.Rngs", "0"):
        ct.nnx.Conv1DTranspose(4, filters=2, kernel_size=3, rngs=0)


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("filters", 2.0, TypeError),
        ("kernel_size", "3", TypeError),
        ("strides", True, TypeError),
        ("padding", "causal", ValueError),
        ("activation", "swishy", ValueError),
        ("data_format", "NCW", ValueError),
    ],
)
def test_modules_validate_their_arguments_like_the_config(field, value, error):
    from flax import nnx

    fields = {"filters": 2, "kernel_size": 3, field: value}
    with expect(error, field, repr(value) if error is ValueError else str(value)):
        ct.Conv1DTranspose(**fields).init(jax.random.PRNGKey(0), X)
    with expect(error, field):
        ct.nnx.Conv1DTranspose(4, **fields, rngs=nnx.Rngs(0))


def test_module_from_config_needs_a_config():
    from flax import nnx

    with expect(TypeError, "config", "Conv1DTransposeConfig", "dict"):
        ct.Conv1DTranspose.from_config({"filters": 2, "kernel_size": 3})
    with expect(TypeError, "config", "Conv1DTransposeConfig", "dict"):
        ct.nnx.Conv1DTranspose.from_config({"filters": 2, "kernel_size": 3}, 4, rngs=nnx.Rngs(0))


# --- interop -------------------------------------------------------------------------------------

TORCH_STATE = {"weight": np.ones((4, 2, 3), np.float32), "bias": np.zeros(2, np.float32)}


@pytest.mark.parametrize(
    "argument, value, error, fragments",
    [
        ("stride", 2.5, TypeError, ("stride", "2.5", "integer")),  # int() would silently make it 2
        ("stride", True, TypeError, ("stride", "True", "integer")),
        ("kernel_size", 3.0, TypeError, ("kernel_size", "3.0", "integer")),
        ("in_channels", 4.0, TypeError, ("in_channels", "4.0", "integer")),
        ("padding", "same", ValueError, ("padding", "'same'", "integers only")),
        ("dilation", (1, 2), ValueError, ("dilation", "(1, 2)", "one value")),
        ("padding_mode", "reflect", ValueError, ("padding_mode", "'reflect'", "zeros")),
    ],
)
def test_torch_state_dict_import_rejects_non_integer_constructor_arguments(argument, value, error, fragments):
    from convtrans import interop

    arguments = {"in_channels": 4, "out_channels": 2, "kernel_size": 3, argument: value}
    with expect(error, *fragments):
        interop.from_torch_state_dict(TORCH_STATE, **arguments)


@pytest.mark.parametrize(
    "state_dict, error, fragments",
    [
        (None, TypeError, ("state_dict", "mapping", "NoneType")),
        ([TORCH_STATE["weight"]], TypeError, ("state_dict", "mapping", "list")),
        ({"bias": TORCH_STATE["bias"]}, ValueError, ("state_dict", "'weight'")),
        (
            {**TORCH_STATE, "weight": np.ones((4, 2, 3), np.complex64)},
            TypeError,
            ("state_dict['weight']", "floating", "complex64"),
        ),
        (
            {**TORCH_STATE, "weight": np.ones((4, 2, 3), np.int32)},
            TypeError,
            ("state_dict['weight']", "floating", "int32"),
        ),
        (
            {**TORCH_STATE, "weight": np.ones((5, 2, 3), np.float32)},
            ValueError,
            ("state_dict['weight']", "(5, 2, 3)", "(4, 2, 3)"),
        ),
        ({**TORCH_STATE, "bias": np.zeros(3, np.float32)}, ValueError, ("state_dict['bias']", "(3,)", "(2,)")),
    ],
)
def test_torch_state_dict_import_checks_the_tensors(state_dict, error, fragments):
    from convtrans import interop

    with expect(error, *fragments):
        interop.from_torch_state_dict(state_dict, 4, 2, 3)


def test_torch_and_keras_importers_name_the_wrong_layer_type():
    import keras
    import torch

    from convtrans import interop

    with expect(TypeError, "module", "ConvTranspose1d", "ConvTranspose2d"):
        interop.from_torch(torch.nn.ConvTranspose2d(1, 1, 3))
    with expect(TypeError, "layer", "Conv1DTranspose", "Dense"):
        interop.from_keras(keras.layers.Dense(3))
    with expect(ValueError, "0 weights", "build"):
        interop.from_keras(keras.layers.Conv1DTranspose(2, 3))


@pytest.mark.parametrize(
    "params, error, fragments",
    [
        ([np.ones((3, 2, 4))], TypeError, ("params", "mapping", "list")),
        ({"bias": np.zeros(2)}, ValueError, ("params", "'kernel'", "(3, 2, in_channels)")),
        ({"kernel": np.ones((3, 2)), "bias": np.zeros(2)}, ValueError, ("params['kernel']", "(3, 2)")),
        ({"kernel": np.ones((3, 2, 4))}, ValueError, ("params", "'bias'", "(2,)")),
    ],
)
def test_keras_export_checks_the_params(params, error, fragments):
    from convtrans import interop

    with expect(error, *fragments):
        interop.to_keras(ct.Conv1DTransposeConfig(filters=2, kernel_size=3), params)


def test_keras_export_names_what_keras_cannot_express():
    from convtrans import interop

    params = {"kernel": np.ones((3, 1, 4)), "bias": np.zeros(2)}
    with expect(ValueError, "groups=2", "Keras"):
        interop.to_keras(ct.Conv1DTransposeConfig(filters=2, kernel_size=3, groups=2), params)


# --- example CLI ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["--factor", "3"], ("factor", "3", "power of two")),
        (["--rate", "0"], ("--rate=0", ">= 1")),
        (["--steps", "0"], ("--steps=0", ">= 1")),
        (["--devices", "0"], ("--devices=0", ">= 1")),  # would otherwise slice the device list
        (["--devices", "-1"], ("--devices=-1", ">= 1")),
        (["--devices", "99"], ("--devices=99", "available")),
        (["--checkpoint-every", "0"], ("--checkpoint-every=0", ">= 1")),
        (["--eval-length", "1000"], ("--eval-length=1000", "multiple", ">= 1024")),  # else fails after training
        (["--learning-rate", "nan"], ("--learning-rate=nan", "> 0")),
        (["--l2", "-1"], ("--l2=-1.0", ">= 0")),
        (["--steps", "400", "--stop-after", "500"], ("--stop-after=500", "--steps=400")),
        (["--batch-size", "12"], ("batch_size=12", "divisible", "8 devices")),
        (["--clip-length", "1001"], ("clip_length=1001", "multiple")),
    ],
)
def test_example_cli_rejects_bad_settings_before_running_anything(argv, fragments, tmp_path):
    from examples.audio_upsampling import train

    out = tmp_path / "run"
    with expect(ValueError, *fragments):
        train.main(argv + ["--out", str(out)])
    assert not out.exists()


@pytest.mark.parametrize("flag, value", [("--steps", "2.5"), ("--factor", "two"), ("--learning-rate", "fast")])
def test_example_cli_reports_unparsable_values_with_a_usage_error(flag, value, capsys, tmp_path):
    from examples.audio_upsampling import train

    with pytest.raises(SystemExit) as exit_info:
        train.main([flag, value, "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert flag in message and repr(value) in message


def test_example_inference_cli_names_a_folder_that_is_not_a_training_run(tmp_path):
    from examples.audio_upsampling import infer

    with expect(ValueError, "checkpoint=", str(tmp_path)):
        infer.main(["--checkpoint", str(tmp_path), "--input", "in.wav", "--output", str(tmp_path / "out.wav")])
    assert not (tmp_path / "out.wav").exists()


def test_example_inference_cli_reports_unparsable_sizes_with_a_usage_error(capsys, tmp_path):
    from examples.audio_upsampling import infer

    with pytest.raises(SystemExit) as exit_info:
        infer.main(["--checkpoint", str(tmp_path), "--input", "a.wav", "--output", "b.wav", "--chunk", "1e4"])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "--chunk" in message and "'1e4'" in message


# --- silently wrong results and crashes on valid input --------------------------------------------


def test_keras_constraints_refuse_a_tree_of_another_structure_with_as_many_leaves():
    import optax

    params = {"a": ct.optim.Constrained(jnp.ones((2, 2)), ct.constraints.get("non_neg")), "b": jnp.ones(3)}
    tx = ct.keras_constraints()
    state = tx.init(params)
    moved = {"c": ct.optim.Constrained(jnp.ones((2, 2)), ct.constraints.get("non_neg")), "b": jnp.ones(3)}
    with pytest.raises(
        ValueError,
        match=r"params have another structure than the tree tx.init saw: leaf 0 is \['b'\] where the "
        r"tree tx.init saw has \['a'\]",
    ):
        tx.update(jax.tree.map(jnp.zeros_like, moved), state, moved)
    swapped = {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))}
    with pytest.raises(ValueError, match=r"updates have another structure than params"):
        tx.update({"x": swapped["a"], "y": swapped["b"]}, state, params)
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
    assert optax.tree_utils.tree_l2_norm(updates) == 0


def test_torch_bias_flag_must_be_a_bool():
    with pytest.raises(TypeError, match="bias must be True or False, got 'no'"):
        interop.from_torch_state_dict(TORCH_STATE, 2, 4, 3, groups=2, bias="no")


def test_to_keras_refuses_a_complex_or_integer_kernel():
    config = ct.Conv1DTransposeConfig(2, 3)
    with pytest.raises(TypeError, match=r"params\['kernel'\] must be floating, got dtype complex64"):
        interop.to_keras(config, {"kernel": np.ones((3, 2, 1), np.complex64), "bias": np.zeros(2, np.float32)})
    with pytest.raises(TypeError, match=r"params\['bias'\] must be floating, got dtype int32"):
        interop.to_keras(config, {"kernel": np.ones((3, 2, 1), np.float32), "bias": np.zeros(2, np.int32)})


def test_chunked_streaming_of_an_empty_batch_gives_an_empty_output():
    config = ct.Conv1DTransposeConfig(3, 4, strides=2)
    params = {"kernel": jnp.ones((4, 3, 2)), "bias": jnp.zeros(3)}
    y, _aux = streaming.chunked_conv1d_transpose(params, jnp.ones((0, 5, 2)), config, 2)
    assert y.shape == (0, ct.output_length(config, 5), 3)


def test_glu_with_an_odd_channel_count_names_the_axis():
    config = ct.Conv1DTransposeConfig(3, 4, activation="glu")
    with pytest.raises(ValueError, match=r"activation 'glu' splits axis -1 in two halves, but it has 3 entries"):
        ct.conv1d_transpose({"kernel": jnp.ones((4, 3, 2)), "bias": jnp.zeros(3)}, jnp.ones((1, 5, 2)), config)


@pytest.mark.parametrize("dtype", [jnp.float8_e4m3fn, jnp.float8_e5m2])
def test_8_bit_floats_are_refused_by_name(dtype):
    config = ct.Conv1DTransposeConfig(3, 4)
    with pytest.raises(
        TypeError, match=r"x must have a floating dtype \(float16, bfloat16, float32, float64\), got float8"
    ):
        ct.conv1d_transpose({"kernel": jnp.ones((4, 3, 2)), "bias": jnp.zeros(3)}, jnp.ones((1, 5, 2), dtype), config)


def test_a_torch_tensor_as_input_is_refused_by_name():
    import torch

    config = ct.Conv1DTransposeConfig(3, 4)
    with pytest.raises(TypeError, match=r"x is a torch.Tensor; pass a JAX or NumPy array"):
        ct.conv1d_transpose({"kernel": jnp.ones((4, 3, 2)), "bias": jnp.zeros(3)}, torch.ones(1, 5, 2), config)


# --- sizes past what can be represented or allocated -----------------------------------------------

HUGE = 2**62


@pytest.mark.parametrize("field", ["filters", "kernel_size", "strides", "dilation_rate", "groups"])
def test_a_size_past_max_size_is_refused_at_construction_naming_it(field):
    fields = {"filters": 2, "kernel_size": 3, field: HUGE}
    with expect(ValueError, f"{field}={HUGE}", "2**31 - 1"):
        ct.Conv1DTransposeConfig(**fields)
    with expect(ValueError, f"{field}={HUGE}", "2**31 - 1"):
        ct.Conv1DConfig(**fields)
    with expect(ValueError, f"{field}={HUGE}"):
        ct.Conv1DTranspose(**fields)  # a linen module checks its arguments when it is made


@pytest.mark.parametrize("padding, name", [((0, HUGE), "padding[1]"), (HUGE, "padding")])
def test_a_padding_past_max_size_is_refused(padding, name):
    with expect(ValueError, f"{name}={HUGE}", "2**31 - 1"):
        ct.Conv1DTransposeConfig(2, 3, padding=padding)


def test_a_kernel_span_past_max_size_names_kernel_size_and_dilation():
    with expect(ValueError, "kernel_size=3", "dilation_rate=1073741824", "span", "2147483649"):
        ct.Conv1DTransposeConfig(2, 3, dilation_rate=2**30)
    with expect(ValueError, "filters=1099511627776"):
        ct.Conv1DTransposeConfig.from_keras({"filters": 2**40, "kernel_size": 3})


def test_linen_modules_check_their_arguments_when_made():
    with expect(ValueError, "data_format"):
        ct.Conv1D(2, 3, data_format="NCW")
    with expect(ValueError, "combine='max'"):
        ct.Parallel([ct.Conv1D(2, 3)], combine="max")
    with expect(ValueError, "mode"):
        ct.Pad1D(2, mode="circular")


# Shapes no machine holds (petabytes and more), so the refusal does not depend on this one's memory.
@pytest.mark.parametrize(
    "make, fragments",
    [
        (
            lambda: ct.Conv1DTranspose(2**31 - 1, 2**20).init(jax.random.PRNGKey(0), X),
            ("the kernel", "(1048576, 2147483647, 4)", "kernel_size=1048576", "filters=2147483647"),
        ),
        (
            lambda: ct.nnx.Conv1DTranspose(
                2**31 - 1, filters=2**20, kernel_size=3, rngs=__import__("flax").nnx.Rngs(0)
            ),
            ("the kernel", "2147483647 input channels"),
        ),
        (
            lambda: ct.conv1d_transpose(PARAMS, X, CONFIG.replace(strides=2**31 - 1)),
            ("the output", "strides=2147483647", "x of shape (1, 5, 4)"),
        ),
        (
            lambda: jax.eval_shape(
                lambda x: ct.conv1d_transpose(PARAMS, x, CONFIG),
                jax.ShapeDtypeStruct((2**31 - 1, 2**30, 4), jnp.float32),
            ),
            ("the output", "(2147483647, 2147483649, 2)"),
        ),  # under tracing too
        (
            lambda: streaming.init(CONFIG.replace(filters=2**31 - 1, kernel_size=2**20), 2**31 - 1),
            ("the stream state's carry", "batch_size=2147483647", "filters=2147483647"),
        ),
    ],
)
def test_arrays_past_the_memory_are_refused_before_anything_is_allocated(make, fragments):
    with expect(ValueError, *fragments, "more than"):
        make()


def test_a_huge_stride_is_computed_without_a_loop_over_its_phases():
    # Every full-result position gets one product at most: input step i, tap j land at i*s + j.
    config = ct.Conv1DTransposeConfig(1, 3, strides=2**16)
    params = {"kernel": jnp.asarray([1.0, 2.0, 3.0]).reshape(3, 1, 1), "bias": jnp.zeros(1)}
    x = jnp.asarray([1.0, 10.0]).reshape(1, 2, 1)
    want = np.zeros(ct.output_length(config, 2))
    want[[0, 1, 2, 2**16, 2**16 + 1, 2**16 + 2]] = [1, 2, 3, 10, 20, 30]
    for implementation in ct.IMPLEMENTATIONS:
        y, _ = ct.conv1d_transpose(params, x, config, implementation=implementation)
        np.testing.assert_array_equal(np.asarray(y)[0, :, 0], want, err_msg=implementation)


def test_a_dilation_far_past_the_stride_is_computed_per_tap():
    config = ct.Conv1DTransposeConfig(1, 3, strides=2, dilation_rate=2**16, padding=(0, 0))
    params = {"kernel": jnp.asarray([1.0, 2.0, 3.0]).reshape(3, 1, 1), "bias": jnp.zeros(1)}
    x = jnp.asarray([1.0, 10.0]).reshape(1, 2, 1)
    want = np.zeros(ct.output_length(config, 2))
    for i, value in enumerate([1.0, 10.0]):
        for j, tap in enumerate([1.0, 2.0, 3.0]):
            want[i * 2 + j * 2**16] += value * tap
    for implementation in ct.IMPLEMENTATIONS:
        y, _ = ct.conv1d_transpose(params, x, config, implementation=implementation)
        np.testing.assert_array_equal(np.asarray(y)[0, :, 0], want, err_msg=implementation)


def test_a_stream_state_of_another_layer_with_the_same_carry_shape_is_refused():
    other = CONFIG.replace(activation="relu")
    assert streaming.init(other, 1).carry.shape == STATE.carry.shape
    with expect(ValueError, "another layer", "activation='relu'"):
        streaming.step(PARAMS, streaming.init(other, 1), X, CONFIG)
    with expect(ValueError, "another layer"):
        streaming.finish(PARAMS, streaming.init(other, 1), CONFIG)


# --- nonsense values of the Keras objects ------------------------------------------------------------


@pytest.mark.parametrize(
    "identifier, fragments",
    [
        ({"class_name": "L2", "config": {"l2": float("inf")}}, ("l2", "finite", "inf")),
        ({"class_name": "L1L2", "config": {"l1": float("nan")}}, ("l1", "finite", "nan")),
        ({"class_name": "L1", "config": {"l1": "0.1"}}, ("l1", "number", "'0.1'")),
    ],
)
def test_regularizer_factors_must_be_finite_numbers(identifier, fragments):
    with expect(ValueError, "kernel_regularizer", *fragments):
        ct.Conv1DTransposeConfig(2, 3, kernel_regularizer=identifier)


@pytest.mark.parametrize(
    "identifier, fragments",
    [
        ({"class_name": "MinMaxNorm", "config": {"rate": float("nan")}}, ("rate", "finite")),
        ({"class_name": "MinMaxNorm", "config": {"rate": 1.5}}, ("rate", "<= 1.0")),
        ({"class_name": "MaxNorm", "config": {"max_value": float("inf")}}, ("max_value", "finite")),
    ],
)
def test_constraint_values_must_be_finite_and_in_range(identifier, fragments):
    with expect(ValueError, "kernel_constraint", *fragments):
        ct.Conv1DTransposeConfig(2, 3, kernel_constraint=identifier)


@pytest.mark.parametrize(
    "field, axis, rank",
    [
        ("kernel_constraint", 3, 3),
        ("kernel_constraint", -4, 3),
        ("kernel_constraint", [0, 0], 3),
        ("bias_constraint", 1, 1),
    ],
)
def test_constraint_axes_must_name_distinct_axes_of_the_weight(field, axis, rank):
    with expect(ValueError, field, "axis", f"rank-{rank}" if axis != [0, 0] else "twice"):
        ct.Conv1DTransposeConfig(2, 3, **{field: {"class_name": "UnitNorm", "config": {"axis": axis}}})


def test_a_constraint_applied_to_a_weight_of_too_low_a_rank_names_the_axis():
    with expect(ValueError, "axis=2", "rank-1"):
        ct.constraints.MaxNorm(axis=2)(jnp.ones(3))


@pytest.mark.parametrize(
    "field, identifier, fragments",
    [
        ("kernel_initializer", "identity", ("Identity", "rank-2", "rank 3")),
        ("bias_initializer", "orthogonal", ("Orthogonal", "rank >= 2", "rank 1")),
        ("kernel_initializer", {"class_name": "RandomNormal", "config": {"stddev": -1}}, ("stddev", ">= 0")),
        ("kernel_initializer", {"class_name": "RandomNormal", "config": {"mean": float("nan")}}, ("mean", "finite")),
        (
            "kernel_initializer",
            {"class_name": "RandomUniform", "config": {"minval": 1, "maxval": 0}},
            ("minval <= maxval",),
        ),
        ("kernel_initializer", {"class_name": "GlorotUniform", "config": {"seed": "7"}}, ("seed", "integer")),
        ("kernel_initializer", {"class_name": "VarianceScaling", "config": {"mode": ["fan_in"]}}, ("mode",)),
        ("kernel_initializer", {"class_name": "VarianceScaling", "config": {"output_axes": ["a"]}}, ("output_axes",)),
        ("kernel_initializer", {"class_name": "Orthogonal", "config": {"gain": float("inf")}}, ("gain", "finite")),
    ],
)
def test_initializer_arguments_are_checked_when_the_config_is_made(field, identifier, fragments):
    with expect(ValueError, field, *fragments):
        ct.Conv1DTransposeConfig(2, 3, **{field: identifier})


def test_an_unhashable_callable_is_refused_when_the_config_is_made():
    class Unhashable:
        __hash__ = None

        def __call__(self, x):
            return x

    with expect(TypeError, "activation=", "unhashable", "jax.jit"):
        ct.Conv1DTransposeConfig(2, 3, activation=Unhashable())


@pytest.mark.parametrize(
    "precision", [None, "highest", jax.lax.Precision.HIGH, ("default", "highest"), jax.lax.DotAlgorithmPreset.DEFAULT]
)
def test_modules_accept_every_form_of_jax_precision(precision):
    assert ct.Conv1DTranspose(2, 3, precision=precision).precision == precision


@pytest.mark.parametrize(
    "option, value, fragment",
    [
        ("precision", "bogus", "precision='bogus'"),
        ("dtype", "bogus", "dtype"),
        ("param_dtype", jnp.int32, "param_dtype"),
        ("weight_norm", "yes", "weight_norm"),
    ],
)
def test_module_options_are_checked_when_the_module_is_made(option, value, fragment):
    with expect((ValueError, TypeError), fragment):
        ct.Conv1DTranspose(2, 3, **{option: value})

"""The dispatch policy: a table of (layer, input shape, dtype, platform) -> plan, with no
compilation, plus a few compiled guards that the plan is what runs on each platform."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

import convtrans as ct
from convtrans._src import dispatch
from convtrans._src.dispatch import Plan

C = ct.Conv1DTransposeConfig
POLYPHASE = Plan()
CONVOLUTION_GRADIENTS = Plan("polyphase", "lhs_dilation", "polyphase")
WIDE_UPSAMPLER = Plan("gemm", "winograd", "winograd")
WINOGRAD_GRADIENTS = Plan("polyphase", "winograd", "winograd")

# (config, x_shape, dtype, platform) -> plan. The shapes are those of the benchmark, of its
# neighbours across each threshold, and of the per-example budgets.
PLAN_TABLE = [
    # HiFi-GAN / MelGAN upsamplers: two taps per phase, Winograd from 64 channels; from 512
    # channels the forward is the GEMM form's while its tap products fit, then Winograd's again.
    (C(256, 16, strides=8, padding="same"), (4, 64, 512), "float32", "cpu", WIDE_UPSAMPLER),
    (C(256, 16, strides=8, padding="same"), (1, 1024, 512), "float32", "cpu", WIDE_UPSAMPLER),
    (C(256, 16, strides=8, padding="same"), (1, 1025, 512), "float32", "cpu", Plan.uniform("winograd")),
    (C(64, 4, strides=2, padding="same"), (4, 2048, 128), "float32", "cpu", Plan.uniform("winograd")),
    (C(128, 16, strides=8, padding="same"), (8, 256, 256), "float32", "cpu", Plan.uniform("winograd")),
    (C(64, 4, strides=2, padding="same"), (4, 2048, 63), "float32", "cpu", CONVOLUTION_GRADIENTS),
    # bfloat16: Winograd gradients in float32, the forward by stacked bfloat16 products.
    (
        C(128, 16, strides=8, padding="same"),
        (8, 256, 256),
        "bfloat16",
        "cpu",
        Plan("polyphase", "winograd", "winograd", "stacked_product"),
    ),
    (
        C(64, 9, strides=2, padding="same"),
        (4, 100, 64),
        "bfloat16",
        "cpu",
        Plan("polyphase", "lhs_dilation", "polyphase", "stacked_product"),
    ),
    (
        C(64, 9, strides=2, padding="same"),
        (4, 100, 63),
        "bfloat16",
        "cpu",
        Plan("polyphase", "lhs_dilation", "polyphase", "convolution"),
    ),
    (
        C(64, 16, strides=8, padding="same"),
        (4, 100, 64),
        "float16",
        "cpu",
        Plan("polyphase", "winograd", "winograd", "convolution"),
    ),
    # Narrow layers with two phase groups: one zero-padded weight gradient up to 32 channels.
    (
        C(16, 9, strides=2, padding="same"),
        (16, 4096, 16),
        "float32",
        "cpu",
        Plan("polyphase", "lhs_dilation", "zero_padded"),
    ),
    (
        C(16, 9, strides=2, padding="same"),
        (16, 4096, 32),
        "float32",
        "cpu",
        Plan("polyphase", "lhs_dilation", "zero_padded"),
    ),
    (C(16, 9, strides=2, padding="same"), (16, 4096, 33), "float32", "cpu", CONVOLUTION_GRADIENTS),
    (C(16, 9, strides=2, padding=(1, 1), dilation_rate=2), (2, 50, 16), "float32", "cpu", CONVOLUTION_GRADIENTS),
    # Stride 1: plain convolutions; three taps take Winograd's gradients from 64 channels, its
    # forward from 128.
    (C(64, 3, dilation_rate=2, padding="same"), (8, 1024, 64), "float32", "cpu", WINOGRAD_GRADIENTS),
    (C(64, 3, dilation_rate=2, padding="same"), (8, 1024, 127), "float32", "cpu", WINOGRAD_GRADIENTS),
    (C(64, 3, dilation_rate=2, padding="same"), (8, 1024, 128), "float32", "cpu", Plan.uniform("winograd")),
    (C(64, 5, padding="same"), (8, 1024, 64), "float32", "cpu", POLYPHASE),
    # Wide layers: the GEMM form, while its tap products fit the per-example budget.
    (C(256, 9, strides=2, padding="same"), (1, 256, 512), "float32", "cpu", Plan.uniform("gemm")),
    (C(256, 9, strides=2, padding="same"), (1, 4096, 512), "float32", "cpu", CONVOLUTION_GRADIENTS),
    # Grouped layers: GEMM gradients whatever their width; no Winograd.
    (C(64, 16, strides=8, padding="same", groups=4), (4, 64, 128), "float32", "cpu", Plan("polyphase", "gemm", "gemm")),
    # A long example exceeds Winograd's per-example budget and keeps the convolutions.
    (C(256, 16, strides=8, padding="same"), (1, 2**14, 512), "float32", "cpu", CONVOLUTION_GRADIENTS),
    # Every other platform: the plain polyphase convolution, whatever the layer.
    (C(256, 16, strides=8, padding="same"), (4, 64, 512), "float32", "cuda", POLYPHASE),
    (C(16, 9, strides=2, padding="same"), (16, 4096, 16), "float32", "gpu", POLYPHASE),
    (C(256, 9, strides=2, padding="same"), (1, 256, 512), "bfloat16", "tpu", POLYPHASE),
    (C(64, 16, strides=8, padding="same", groups=4), (4, 64, 128), "float32", "rocm", POLYPHASE),
]


def _row_id(row):
    config, shape, dtype, platform, _ = row
    return (
        f"k{config.kernel_size}s{config.strides}d{config.dilation_rate}g{config.groups}-"
        f"{'x'.join(map(str, shape))}-{dtype}-{platform}"
    )


@pytest.mark.parametrize("row", PLAN_TABLE, ids=_row_id)
def test_the_plan_table(row):
    config, shape, dtype, platform, want = row
    assert ct.plan(config, shape, dtype, platform) == want


@pytest.mark.parametrize("row", PLAN_TABLE[:8], ids=_row_id)
def test_channels_first_gets_the_plan_of_channels_last(row):
    config, (batch, steps, channels), dtype, platform, want = row
    config = config.replace(data_format="channels_first")
    assert ct.plan(config, (batch, channels, steps), dtype, platform) == want


def test_the_plan_depends_on_the_example_not_the_batch():
    config = C(256, 16, strides=8, padding="same")
    plans = {
        ct.plan(config, shape, platform="cpu") for shape in [(64, 512), (1, 64, 512), (4096, 64, 512), (3, 5, 64, 512)]
    }
    assert plans == {WIDE_UPSAMPLER}


def test_a_symbolic_length_takes_forms_bounded_for_any_length():
    batch, steps = export.symbolic_shape("b, t")
    for config, channels in [(C(256, 16, strides=8, padding="same"), 512), (C(256, 9, strides=2, padding="same"), 512)]:
        assert ct.plan(config, (4, 64, channels), platform="cpu").forward in ("winograd", "gemm")
        assert ct.plan(config, (batch, steps, channels), platform="cpu") == CONVOLUTION_GRADIENTS
        assert ct.plan(config, (batch, 64, channels), platform="cpu") == ct.plan(
            config, (4, 64, channels), platform="cpu"
        )


def test_the_default_platform_is_the_default_backend():
    config = C(16, 9, strides=2, padding="same")
    assert ct.plan(config, (2, 10, 16)) == ct.plan(config, (2, 10, 16), platform=jax.default_backend())


def test_explain_gives_a_reason_and_the_deciding_threshold_for_each_part():
    config = C(16, 9, strides=2, padding="same")
    text = ct.explain(config, (16, 4096, 16), platform="cpu")
    lines = text.splitlines()
    assert lines[0].startswith(str(ct.plan(config, (16, 4096, 16), platform="cpu")))
    assert [line.split("=")[0].strip() for line in lines[1:]] == [
        "forward",
        "input_gradient",
        "kernel_gradient",
        "correlation",
    ]
    assert "ZERO_PADDED_MAX_CHANNELS=32" in text and "GEMM_MIN_CHANNELS=512" in text
    assert "measured on XLA:CPU only" in ct.explain(config, (16, 4096, 16), platform="cuda")
    wide = ct.explain(C(256, 16, strides=8, padding="same"), (1, 2**14, 512), platform="cpu")
    assert "exceed WINOGRAD_MAX_BYTES" in wide


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        ((C(4, 3), (5,), "float32", None), ValueError, "x_shape must have rank >= 2"),
        ((C(4, 3), (2, 5, 3), "int32", None), TypeError, "dtype must be a floating dtype"),
        ((C(4, 3, groups=2), (2, 5, 3), "float32", None), ValueError, "groups=2 must divide"),
        (({"filters": 4}, (2, 5, 3), "float32", None), TypeError, "config must be a Conv1DTransposeConfig"),
        ((C(4, 3), (2, 5, 3), "float32", 3), TypeError, "platform must be a platform name"),
        ((C(4, 3, padding=(4, 4)), (2, 1, 3), "float32", None), ValueError, "crops more than"),
    ],
)
def test_plan_rejects_what_conv1d_transpose_would(arguments, error, message):
    with pytest.raises(error, match=message):
        ct.plan(*arguments)


def test_thresholds_are_listed_once_with_their_provenance():
    names = [threshold.name for threshold in dispatch.THRESHOLDS]
    assert len(names) == len(set(names))
    for threshold in dispatch.THRESHOLDS:
        assert getattr(dispatch, threshold.name) == threshold.value
        assert threshold.rule and threshold.evidence and threshold.machine and threshold.command


def test_names_of_implementation_are_uniform_plans_or_the_platforms_own():
    config = C(16, 9, strides=2, padding="same")
    for name in ("lhs_dilation", "gemm"):
        assert dispatch.resolve(name, config, 16, 10, jnp.float32, "cpu") == Plan.uniform(name)
    for name in (None, "polyphase"):
        assert dispatch.resolve(name, config, 16, 10, jnp.float32, "cpu") == ct.plan(config, (10, 16), platform="cpu")
    with pytest.raises(ValueError, match="implementation='nope' is unknown"):
        dispatch.resolve("nope", config, 16, 10, jnp.float32, "cpu")


def test_a_plan_names_only_known_forms():
    with pytest.raises(ValueError, match="forward='fft' is unknown"):
        Plan(forward="fft")
    with pytest.raises(ValueError, match="input_gradient='zero_padded' is unknown"):
        Plan(input_gradient="zero_padded")


# --- compiled guards: the plan is what runs -------------------------------------------------


def _layer(config, in_channels, steps=24, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    params = {
        "kernel": jnp.asarray(rng.standard_normal(config.kernel_shape(in_channels)), jnp.float32),
        "bias": jnp.asarray(rng.standard_normal(config.filters), jnp.float32),
    }
    x = jnp.asarray(rng.standard_normal((batch, steps, in_channels)), jnp.float32)
    return params, x


def _loss(config, implementation=None):
    def loss(params, x):
        return jnp.sum(ct.conv1d_transpose(params, x, config, implementation=implementation)[0] ** 2)

    return jax.value_and_grad(loss, argnums=(0, 1))


def _stablehlo(fn, platforms, *args):
    return export.export(jax.jit(fn), platforms=platforms)(*args).mlir_module()


def _op_counts(text):
    return {op: text.count(f"stablehlo.{op}") for op in ("convolution", "dot_general", "case")}


# A Winograd layer, a GEMM layer, a narrow two-group layer (dilated-input input gradient and
# zero-padded kernel gradient) and a bfloat16 one (stacked products): each CPU-only form.
CPU_ONLY_FORMS = [
    (C(64, 16, strides=8, padding="same"), 64),
    (C(32, 5, strides=3, padding="same"), 512),
    (C(16, 9, strides=2, padding="same"), 16),
]


@pytest.mark.parametrize("config, in_channels", CPU_ONLY_FORMS)
def test_a_cuda_export_from_a_cpu_host_holds_only_the_plain_polyphase_convolution(config, in_channels):
    params, x = _layer(config, in_channels)
    assert ct.plan(config, x.shape, platform="cpu") != POLYPHASE
    cuda = _op_counts(_stablehlo(_loss(config), ["cuda"], params, x))
    plain = _op_counts(_stablehlo(_loss(config, implementation=POLYPHASE), ["cpu"], params, x))
    assert cuda["dot_general"] == 0
    assert (cuda["convolution"], cuda["dot_general"]) == (plain["convolution"], plain["dot_general"])
    assert "lhs_dilation" not in _stablehlo(_loss(config), ["cuda"], params, x)


def test_a_cuda_export_of_bfloat16_has_no_stacked_products():
    config = C(64, 9, strides=2, padding="same")
    params, x = _layer(config, 64)
    assert ct.plan(config, x.shape, "bfloat16", platform="cpu").correlation == "stacked_product"
    forward = lambda p, x: ct.conv1d_transpose(p, x.astype(jnp.bfloat16), config)[0]
    assert _op_counts(_stablehlo(forward, ["cuda"], params, x))["dot_general"] == 0
    assert _op_counts(_stablehlo(forward, ["cpu"], params, x))["dot_general"] > 0


@pytest.mark.parametrize("config, in_channels", CPU_ONLY_FORMS[:1] + CPU_ONLY_FORMS[2:])
def test_a_two_platform_export_holds_both_plans_and_runs_the_cpu_one_here(config, in_channels):
    params, x = _layer(config, in_channels)
    exported = export.export(jax.jit(_loss(config)), platforms=["cpu", "cuda"])(params, x)
    assert _op_counts(exported.mlir_module())["case"] >= 1
    got, want = exported.call(params, x), jax.jit(_loss(config))(params, x)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(g, w)


def test_the_cpu_program_is_the_cpu_plan_alone():
    # On one platform the program is lowered with that platform's branch only.
    config, in_channels = CPU_ONLY_FORMS[0]
    params, x = _layer(config, in_channels)
    default = _stablehlo(_loss(config), ["cpu"], params, x)
    forced = _stablehlo(_loss(config, implementation=ct.plan(config, x.shape, platform="cpu")), ["cpu"], params, x)
    assert _op_counts(default)["dot_general"] == _op_counts(forced)["dot_general"] > 0


def test_a_vmapped_call_runs_the_plan_of_the_batched_call(plans_run):
    seen = plans_run
    config = C(64, 16, strides=8, padding="same")
    params, x = _layer(config, 64, batch=3)
    batched = jax.jit(lambda x: ct.conv1d_transpose(params, x, config)[0])(x)
    batched_plans = seen[:]
    seen.clear()
    mapped = jax.jit(jax.vmap(lambda example: ct.conv1d_transpose(params, example, config)[0]))(x)
    assert seen == batched_plans
    assert set(seen) == {ct.plan(config, x.shape, platform="cpu"), POLYPHASE}  # the CPU and other platforms'
    np.testing.assert_allclose(mapped, batched, rtol=1e-6, atol=1e-5)


# --- the package's layout ---------------------------------------------------------------------


def test_importing_convtrans_loads_neither_flax_nor_optax():
    code = (
        "import sys, convtrans as ct; assert not [m for m in sys.modules if m.split('.')[0] in "
        "('flax', 'optax')], 'eager'; ct.Conv1DTranspose; assert 'flax' in sys.modules; "
        "ct.keras_constraints; assert 'optax' in sys.modules; ct.nnx.Conv1DTranspose"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


PACKAGE = pathlib.Path(ct.__file__).parent


def _module_imports():
    """Module -> the convtrans modules it imports at load time (not inside functions)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("convtrans",) + path.relative_to(PACKAGE).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        imports = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks do not run
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("convtrans"):
                imports.add(node.module)
                imports.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                imports.update(alias.name for alias in node.names if alias.name.startswith("convtrans"))
        graph[name] = imports
    return {
        name: {target for target in imports if target in graph and target != name} for name, imports in graph.items()
    }


def test_the_modules_import_each_other_without_a_cycle():
    graph = _module_imports()
    done, active = set(), []

    def visit(name):
        if name in active:
            pytest.fail(f"import cycle: {' -> '.join(active[active.index(name) :] + [name])}")
        if name in done:
            return
        active.append(name)
        for target in sorted(graph[name]):
            visit(target)
        active.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_no_module_imports_inside_a_function_to_dodge_a_cycle():
    # Function-level imports are for optional, heavy dependencies (keras, torch, flax), never
    # for convtrans's own modules.
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("convtrans"):
                        pytest.fail(f"{path.name}:{inner.lineno} imports convtrans inside {node.name}")


def test_the_implementation_is_private_and_the_public_names_keep_working():
    public = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
    assert public == {
        "activations",
        "constraints",
        "initializers",
        "interop",
        "linen",
        "nnx",
        "optim",
        "regularizers",
        "streaming",
        "tune",
    }
    for name in ct.__all__:
        assert getattr(ct, name) is not None

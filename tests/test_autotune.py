"""Autotuning: off by default; when on, each layer signature is timed once per environment, its plan
kept in memory and on disk, and the tuned plan is what runs."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

import convtrans as ct
from convtrans import tune
from convtrans._src import autotune, dispatch, plan_cache
from convtrans._src.plan import Plan
from convtrans._src.plan_cache import PlanCache, TunedPlan

CONFIG = ct.Conv1DTransposeConfig(filters=6, kernel_size=4, strides=2, padding="same")
SHAPE = (2, 24, 5)
# A plan no static policy gives this layer, so that seeing it run proves the tuned plan ran.
MARKED = Plan("gemm", "lhs_dilation", "zero_padded", "convolution")


def _params(config=CONFIG, in_channels=SHAPE[-1], seed=0):
    rng = np.random.default_rng(seed)
    return {
        "kernel": jnp.asarray(rng.standard_normal(config.kernel_shape(in_channels)), jnp.float32),
        "bias": jnp.asarray(rng.standard_normal(config.filters), jnp.float32),
    }


def _x(shape=SHAPE, dtype=jnp.float32):
    return jnp.asarray(np.random.default_rng(1).standard_normal(shape), dtype)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A cache folder of this test's own, the setting as the environment leaves it, no variable."""
    monkeypatch.setattr(autotune, "CACHE", PlanCache(str(tmp_path / "cache")))
    monkeypatch.setattr(autotune._Setting, "enabled", None)
    monkeypatch.delenv(autotune.ENABLE_VARIABLE, raising=False)
    return tmp_path / "cache"


@pytest.fixture
def timings(monkeypatch):
    """Replaces the timing by a stub that returns MARKED and counts its calls."""
    calls = []

    def stub(config, shape, dtype, precision, static_plan):
        calls.append((config, shape, jnp.dtype(dtype).name))
        return TunedPlan(MARKED, static_plan, {"gemm/convolution": 1.0}, {"lhs_dilation/zero_padded": 1.0})

    monkeypatch.setattr(autotune, "time_plans", stub)
    return calls


def _apply(params, x, config=CONFIG, **kwargs):
    return ct.conv1d_transpose(params, x, config, **kwargs)[0]


# --- the setting -----------------------------------------------------------------------------


def test_autotuning_is_off_by_default_and_nothing_is_timed(timings, plans_run):
    assert not ct.autotune_enabled()
    jax.jit(_apply)(_params(), _x())
    assert timings == []
    assert ct.plan(CONFIG, SHAPE) in plans_run and MARKED not in plans_run


def test_autotune_as_a_call_stays_on_until_turned_off():
    ct.autotune(True)
    assert ct.autotune_enabled()
    ct.autotune(False)
    assert not ct.autotune_enabled()


def test_autotune_as_a_context_manager_restores_the_previous_setting():
    with ct.autotune():
        assert ct.autotune_enabled()
        with ct.autotune(False):
            assert not ct.autotune_enabled()
        assert ct.autotune_enabled()
    assert not ct.autotune_enabled()


@pytest.mark.parametrize(("value", "enabled"), [("1", True), ("true", True), ("ON", True), ("0", False), ("", False)])
def test_the_environment_variable_turns_it_on_or_off(monkeypatch, value, enabled):
    monkeypatch.setenv("CONVTRANS_AUTOTUNE", value)
    assert ct.autotune_enabled() is enabled


def test_an_explicit_setting_overrides_the_environment_variable(monkeypatch):
    monkeypatch.setenv("CONVTRANS_AUTOTUNE", "1")
    with ct.autotune(False):
        assert not ct.autotune_enabled()


def test_an_unknown_environment_value_is_an_error_naming_the_accepted_ones(monkeypatch):
    monkeypatch.setenv("CONVTRANS_AUTOTUNE", "maybe")
    with pytest.raises(ValueError, match=r"CONVTRANS_AUTOTUNE='maybe'.*expected one of"):
        ct.autotune_enabled()


def test_autotune_takes_a_bool_only():
    with pytest.raises(TypeError, match="True or False"):
        ct.autotune("yes")  # type: ignore[arg-type]


# --- what runs -------------------------------------------------------------------------------


def test_with_autotuning_the_tuned_plan_runs(timings, plans_run):
    with ct.autotune():
        jax.jit(_apply)(_params(), _x())
    assert timings == [(CONFIG, SHAPE, "float32")]
    assert MARKED in plans_run and ct.plan(CONFIG, SHAPE) not in plans_run


def test_turning_autotuning_on_retraces_functions_jit_has_already_compiled(timings, plans_run):
    jitted = jax.jit(_apply)
    jitted(_params(), _x())
    with ct.autotune():
        jitted(_params(), _x())
    assert MARKED in plans_run


def test_a_signature_is_timed_once_then_read_from_memory(timings, plans_run):
    with ct.autotune():
        jax.jit(_apply)(_params(), _x())
        jax.jit(lambda p, x: _apply(p, x) * 2)(_params(), _x())
        jax.grad(lambda p, x: _apply(p, x).sum())(_params(), _x())
    assert len(timings) == 1
    assert plans_run.count(MARKED) == 3


def test_each_shape_dtype_and_geometry_is_a_signature_of_its_own(timings):
    other = ct.Conv1DTransposeConfig(filters=6, kernel_size=5, strides=2, padding="same")
    with ct.autotune():
        _apply(_params(), _x())
        _apply(_params(), _x((3, 24, 5)))
        _apply(_params(), _x(dtype=jnp.bfloat16))
        _apply(_params(other), _x(), other)
    assert [(shape, dtype) for _, shape, dtype in timings] == [
        (SHAPE, "float32"),
        ((3, 24, 5), "float32"),
        (SHAPE, "bfloat16"),
        (SHAPE, "float32"),
    ]


def test_the_layers_other_fields_do_not_make_a_new_signature(timings):
    activated = ct.Conv1DTransposeConfig(6, 4, 2, "same", activation="relu", use_bias=False)
    with ct.autotune():
        _apply(_params(), _x())
        _apply({"kernel": _params()["kernel"]}, _x(), activated)
    assert len(timings) == 1


def test_a_forced_implementation_is_never_tuned(timings, plans_run):
    with ct.autotune():
        _apply(_params(), _x(), implementation=Plan())
        _apply(_params(), _x(), implementation="lhs_dilation")
    assert timings == []


def test_a_symbolic_shape_keeps_the_static_plan(timings):
    batch, steps = export.symbolic_shape("b, t")
    x = jax.ShapeDtypeStruct((batch, steps, SHAPE[-1]), jnp.float32)
    with ct.autotune():
        export.export(jax.jit(_apply))(_params(), x)
    assert timings == []


def test_linen_modules_run_the_tuned_plan(timings, plans_run):
    layer = ct.Conv1DTranspose(6, 4, strides=2, padding="same")
    variables = layer.init(jax.random.key(0), _x())
    plans_run.clear()
    with ct.autotune():
        layer.apply(variables, _x())
    assert MARKED in plans_run


# --- the disk cache --------------------------------------------------------------------------


def test_the_next_process_reads_the_plan_from_disk_and_times_nothing(timings, plans_run, isolated):
    with ct.autotune():
        _apply(_params(), _x())
    autotune.CACHE.forget()  # what a new process starts with
    with ct.autotune():
        _apply(_params(), _x())
    assert len(timings) == 1
    assert plans_run.count(MARKED) == 2
    (path,) = isolated.iterdir()
    document = json.loads(path.read_text())
    assert document["environment"] == plan_cache.environment("cpu")
    (entry,) = document["plans"].values()
    assert Plan(**entry["plan"]) == MARKED


def test_the_cache_folder_comes_from_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("CONVTRANS_CACHE_DIR", str(tmp_path / "chosen"))
    assert PlanCache().cache_dir == str(tmp_path / "chosen")


def test_another_environment_does_not_read_the_plans(timings):
    described = plan_cache.environment("cpu")
    signature = plan_cache.layer_signature(CONFIG, SHAPE, jnp.float32, None)
    autotune.CACHE.put(described, signature, TunedPlan(MARKED, Plan(), {}, {}))
    elsewhere = {**described, "xla_flags": described["xla_flags"] + " --another-flag"}
    assert autotune.CACHE.get(described, signature).plan == MARKED
    assert autotune.CACHE.get(elsewhere, signature) is None


def test_the_cpu_environment_names_the_processor_and_its_cores():
    described = plan_cache.environment("cpu")
    assert described["device_kind"] == "cpu" and described["processor"] and described["cores"] >= 1
    assert described["jax"] == jax.__version__ and described["convtrans"] == ct.__version__


def test_processes_tuning_side_by_side_keep_each_others_entries(isolated):
    described = plan_cache.environment("cpu")
    first, second = PlanCache(str(isolated)), PlanCache(str(isolated))
    first.get(described, "a")  # both have read the (empty) file before either writes
    second.get(described, "b")
    first.put(described, "a", TunedPlan(MARKED, Plan(), {}, {}))
    second.put(described, "b", TunedPlan(Plan(), Plan(), {}, {}))
    assert set(PlanCache(str(isolated)).entries(described)) == {"a", "b"}


def test_an_unreadable_cache_file_is_ignored_with_a_warning(timings, isolated):
    path = plan_cache.cache_file(str(isolated), plan_cache.environment("cpu"))
    os.makedirs(isolated)
    with open(path, "w") as f:
        f.write("{not json")
    with ct.autotune(), pytest.warns(UserWarning, match="cannot be read"):
        _apply(_params(), _x())
    assert len(timings) == 1
    assert json.loads(open(path).read())["format"] == plan_cache.FORMAT  # rewritten


def test_an_unwritable_cache_path_keeps_plans_in_memory_with_a_warning(timings, plans_run, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a file where the folder should be: no user can create the folder
    monkeypatch.setattr(autotune, "CACHE", PlanCache(str(blocker / "cache")))
    with ct.autotune(), pytest.warns(UserWarning, match="in memory only"):
        _apply(_params(), _x())
        _apply(_params(), _x())
    assert len(timings) == 1
    assert plans_run.count(MARKED) == 2


# --- the search ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("times", "chosen"),
    [
        ({"static": 1.00, "other": 0.99}, "static"),  # within the margin: the static part stays
        ({"static": 1.00, "other": 0.96}, "static"),  # 4% is within a shared machine's noise
        ({"static": 1.00, "other": 0.90}, "other"),
        ({"static": 0.90, "other": 1.00}, "static"),
        ({"other": 1.0, "third": 0.5}, "third"),  # the static part could not run
    ],
)
def test_a_candidate_replaces_the_static_part_only_when_faster_beyond_the_margin(times, chosen):
    assert autotune._fastest(times, "static") == chosen


@pytest.mark.parametrize(
    ("config", "shape", "dtype", "forwards"),
    [
        (CONFIG, SHAPE, jnp.float32, {"polyphase", "winograd", "gemm", "lhs_dilation"}),
        (
            ct.Conv1DTransposeConfig(6, 4, 2, "same", groups=3),
            (2, 24, 6),
            jnp.float32,
            {"polyphase", "gemm", "lhs_dilation"},
        ),
        (CONFIG, (1, 2**20, 5), jnp.float32, {"polyphase", "lhs_dilation"}),
    ],
    ids=["every-form", "grouped-no-winograd", "too-long-for-the-memory-budgets"],
)
def test_the_forward_candidates_are_the_forms_that_can_compute_the_layer(config, shape, dtype, forwards):
    pairs = autotune.forward_candidates(config, shape[-1], shape[1], dtype)
    assert {form for form, _ in pairs} == forwards
    assert {correlation for _, correlation in pairs} == {"convolution"}


def test_16_bit_inputs_also_try_the_stacked_product_correlations():
    pairs = autotune.forward_candidates(CONFIG, SHAPE[-1], SHAPE[1], jnp.bfloat16)
    assert {("polyphase", "stacked_product"), ("winograd", "stacked_product")} <= set(pairs)


def test_every_candidate_is_a_plan_the_layer_accepts():
    for config in (
        CONFIG,
        ct.Conv1DTransposeConfig(6, 3, 1, "same", dilation_rate=2),
        ct.Conv1DTransposeConfig(6, 9, 2),
    ):
        forwards = autotune.forward_candidates(config, 5, 24, jnp.bfloat16)
        for input_gradient, kernel_gradient in autotune.gradient_candidates(config, 5, 24, jnp.bfloat16):
            for forward, correlation in forwards:
                dispatch.check_plan(Plan(forward, input_gradient, kernel_gradient, correlation), config)


@pytest.fixture(scope="module")
def timed():
    """One real tuning of a small layer (every candidate compiled and timed)."""
    return autotune.time_plans(CONFIG, SHAPE, jnp.float32, None, ct.plan(CONFIG, SHAPE))


def test_the_timing_covers_every_candidate_in_both_modes(timed):
    forwards = {f"{f}/{c}" for f, c in autotune.forward_candidates(CONFIG, SHAPE[-1], SHAPE[1], jnp.float32)}
    gradients = {f"{i}/{k}" for i, k in autotune.gradient_candidates(CONFIG, SHAPE[-1], SHAPE[1], jnp.float32)}
    assert set(timed.forward_ms) == forwards and set(timed.forward_backward_ms) == gradients
    assert min(timed.forward_ms.values()) > 0 and min(timed.forward_backward_ms.values()) > 0
    assert timed.static_plan == ct.plan(CONFIG, SHAPE)


def test_the_chosen_parts_are_the_fastest_or_the_static_within_the_margin(timed):
    plan, static = timed.plan, timed.static_plan
    for times, chosen, incumbent in (
        (timed.forward_ms, f"{plan.forward}/{plan.correlation}", f"{static.forward}/{static.correlation}"),
        (
            timed.forward_backward_ms,
            f"{plan.input_gradient}/{plan.kernel_gradient}",
            f"{static.input_gradient}/{static.kernel_gradient}",
        ),
    ):
        assert chosen == autotune._fastest(dict(times), incumbent)


def test_a_tuned_layer_computes_what_the_reference_computes(timed, monkeypatch):
    monkeypatch.setattr(autotune, "time_plans", lambda *args: timed)
    params, x = _params(), _x()

    out_shape = _apply(params, x).shape
    cotangent = jnp.cos(jnp.arange(np.prod(out_shape), dtype=jnp.float32)).reshape(out_shape)

    def loss(params, x):  # linear in the output, so the gradients are the plan's own
        return jnp.sum(_apply(params, x) * cotangent)

    want = jax.value_and_grad(loss, argnums=(0, 1))(params, x)
    with ct.autotune():
        got = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, x)
    chex.assert_trees_all_close(got, want, rtol=2e-5, atol=2e-5)


def test_timing_inside_a_jit_trace_runs_real_programs():
    """The first trace times the candidates while the caller's function is being traced."""
    with ct.autotune():
        y = jax.jit(_apply)(_params(), _x())
    np.testing.assert_allclose(y, _apply(_params(), _x(), implementation="lhs_dilation"), rtol=1e-5, atol=1e-5)
    assert tune.lookup(CONFIG, SHAPE) is not None


# --- convtrans.tune ----------------------------------------------------------------------------


def test_tune_traces_a_function_once_and_reports_each_layer_once(timings):
    second = ct.Conv1DTransposeConfig(3, 4, 2, "same")

    def model(params, x):
        h = _apply(params[0], x)
        h = _apply(params[0], x) + h  # the same signature twice
        return _apply(params[1], h, second)

    params = (_params(), _params(second, in_channels=6))
    records = tune.tune(jax.grad(lambda p, x: model(p, x).sum()), params, jax.ShapeDtypeStruct(SHAPE, jnp.float32))
    assert [r.cached for r in records] == [False, False]
    assert len(timings) == 2
    again = tune.tune(model, params, _x())
    assert [r.cached for r in again] == [True, True]
    assert not ct.autotune_enabled()  # tune turns it on for its trace only


def test_retune_times_cached_layers_again(timings):
    tune.tune_layer(CONFIG, SHAPE)
    tune.tune_layer(CONFIG, SHAPE, retune=True)
    assert len(timings) == 2


def test_lookup_times_nothing_and_clear_cache_forgets(timings):
    assert tune.lookup(CONFIG, SHAPE) is None
    assert tune.tune_layer(CONFIG, SHAPE).plan == MARKED
    assert tune.lookup(CONFIG, SHAPE).plan == MARKED
    assert tune.lookup(CONFIG, (1,) + SHAPE) is not None  # any rank: batch axes are multiplied
    path = tune.clear_cache()
    assert not os.path.exists(path) and tune.lookup(CONFIG, SHAPE) is None
    assert len(timings) == 1


def test_tune_layer_checks_the_shape_against_the_config():
    with pytest.raises(ValueError, match="groups"):
        tune.tune_layer(ct.Conv1DTransposeConfig(6, 4, 2, groups=2), (2, 24, 5))


@pytest.fixture
def target_module(tmp_path, monkeypatch):
    (tmp_path / "tune_target_module.py").write_text(
        textwrap.dedent(
            """
            import jax, jax.numpy as jnp
            import convtrans as ct

            CONFIG = ct.Conv1DTransposeConfig(filters=6, kernel_size=4, strides=2, padding="same")

            def target():
                params = {"kernel": jax.ShapeDtypeStruct((4, 6, 5), jnp.float32),
                          "bias": jax.ShapeDtypeStruct((6,), jnp.float32)}
                loss = lambda p, x: ct.conv1d_transpose(p, x, CONFIG)[0].sum()
                return jax.grad(loss), (params, jax.ShapeDtypeStruct((2, 24, 5), jnp.float32))

            def not_a_target():
                return 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "tune_target_module"
    sys.modules.pop("tune_target_module", None)


def test_the_command_tunes_a_target_then_lists_and_clears_its_plans(timings, target_module, isolated, capsys):
    assert tune.main([f"{target_module}:target", "--cache-dir", str(isolated)]) == 0
    out = capsys.readouterr().out
    assert "timed now" in out and "1 layers: 1 timed now, 0 from the cache." in out
    assert tune.main([f"{target_module}:target", "--cache-dir", str(isolated)]) == 0
    assert "0 timed now, 1 from the cache" in capsys.readouterr().out
    assert tune.main(["--list", "--cache-dir", str(isolated)]) == 0
    assert "1 plans in" in capsys.readouterr().out
    assert tune.main(["--clear", "--cache-dir", str(isolated)]) == 0
    assert not any(isolated.iterdir())


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_colon", "expected MODULE:FACTORY"),
        ("{module}:missing", "has no attribute 'missing'"),
        ("{module}:not_a_target", r"must return \(fn, args\)"),
    ],
)
def test_the_command_says_what_is_wrong_with_a_target(target_module, target, message):
    with pytest.raises(SystemExit, match=message):
        tune.main([target.format(module=target_module)])


def test_no_warning_is_raised_by_a_plain_tuning(timings):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tune.tune_layer(CONFIG, SHAPE)


def test_explain_says_when_autotuning_replaces_the_static_plan(timings):
    static = ct.explain(CONFIG, SHAPE)
    assert "autotuning" not in static
    with ct.autotune():
        assert ct.explain(CONFIG, SHAPE).endswith("times its candidates and runs the fastest.")
        tune.tune_layer(CONFIG, SHAPE)
        assert ct.explain(CONFIG, SHAPE).endswith(
            f"autotuning is on: {MARKED} runs, the stored choice for this input shape."
        )
        assert "autotuning" not in ct.explain(CONFIG, SHAPE, platform="cuda")  # tuned on the default backend only

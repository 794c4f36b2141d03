"""benchmarks/crossover.py: the proposal rule on synthetic ratios, the plans each sweep compares,
the section it writes. Nothing here is timed."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convtrans as ct
from benchmarks import crossover, run
from benchmarks.crossover import SWEEPS, Layout, Point, SeriesResult, ThresholdResult, propose, propose_bound
from convtrans._src import dispatch

MIB = 2**20
GRID = (8, 16, 32, 48, 64, 96, 128, 256)


def _pairs(ratios, grid=GRID):
    return list(zip(grid, ratios, strict=True))


# --- the proposal rule -----------------------------------------------------------------------------


def test_a_minimum_is_the_first_win_after_which_the_form_never_loses():
    ratios = [0.5, 0.6, 0.8, 0.97, 1.2, 1.3, 1.4, 1.5]
    assert propose([_pairs(ratios)], "min")[:2] == (64, "crossover")
    # A tie (within the margin) is neither a win nor a loss: 48 ties, so the crossover is at 64,
    # and a tie above the crossover does not move it.
    ratios = [0.5, 0.6, 0.8, 1.03, 1.2, 0.98, 1.4, 1.5]
    assert propose([_pairs(ratios)], "min").value == 64


def test_a_maximum_mirrors_it():
    ratios = [1.5, 1.4, 1.2, 1.06, 0.9, 0.8, 0.7, 0.6]
    assert propose([_pairs(ratios)], "max")[:2] == (48, "crossover")


def test_no_crossover_in_range_when_the_form_always_or_never_wins():
    assert propose([_pairs([1.3] * 8)], "min")[:2] == (8, "always")
    assert propose([_pairs([1.3] * 8)], "max")[:2] == (256, "always")
    assert propose([_pairs([0.8] * 8)], "min")[:2] == (None, "never")
    assert propose([_pairs([1.0] * 8)], "min")[:2] == (None, "never")  # ties throughout: no evidence
    # Winning only at the last point, or losing at the last point after winning everywhere else.
    assert propose([_pairs([0.5] * 7 + [1.2])], "min")[:2] == (256, "crossover")
    assert propose([_pairs([1.2] * 7 + [0.5])], "min")[:2] == (None, "never")


def test_a_noisy_dip_above_a_win_moves_the_crossover_past_the_dip():
    # A spurious win at 16, then a real loss at 32: the crossover is where the form stays ahead.
    ratios = [0.5, 1.25, 0.8, 1.1, 1.3, 0.9, 1.2, 1.3]
    assert propose([_pairs(ratios)], "min").value == 128
    # Points where both sides are one plan (None) count for nothing.
    ratios = [0.5, None, 0.8, None, 1.3, 1.2, None, 1.3]
    assert propose([_pairs(ratios)], "min").value == 64


def test_over_several_series_the_most_cautious_decides():
    early = _pairs([0.5, 0.9, 1.2, 1.3, 1.3, 1.4, 1.4, 1.5])  # 32
    late = _pairs([0.5, 0.5, 0.6, 0.8, 0.9, 1.1, 1.2, 1.2])  # 96
    assert propose([early, late], "min")[:2] == (96, "crossover")
    assert propose([early, late], "max")[:2] == (None, "never")
    shrinking = _pairs([1.5, 1.4, 1.2, 0.9, 0.8, 0.7, 0.6, 0.6])  # 32
    sooner = _pairs([1.5, 1.2, 0.9, 0.9, 0.8, 0.7, 0.6, 0.6])  # 16
    assert propose([shrinking, sooner], "max")[:2] == (16, "crossover")
    assert propose([early, _pairs([0.9] * 8)], "min")[:2] == (None, "never")
    assert propose([_pairs([None] * 8)], "min")[:2] == (None, "none")
    with pytest.raises(ValueError, match="direction"):
        propose([early], "up")


def test_a_memory_bound_is_kept_unless_the_form_is_slower_below_it():
    sizes = [4 * MIB, 8 * MIB, 16 * MIB, 32 * MIB, 64 * MIB]
    kept = propose_bound([list(zip(sizes, [1.3, 1.2, 1.1, 0.7, 0.6], strict=True))], 16 * MIB)
    assert kept[:2] == (16 * MIB, "keep") and "0.60-0.70" in kept.why
    # Faster past the bound as well: still kept (the bound is about memory).
    assert propose_bound([list(zip(sizes, [1.3] * 5, strict=True))], 16 * MIB)[:2] == (16 * MIB, "keep")
    slower = [list(zip(sizes, [1.3, 1.2, 0.8, 0.7, 0.6], strict=True)), list(zip(sizes, [1.3] * 5, strict=True))]
    assert propose_bound(slower, 16 * MIB)[:2] == (8 * MIB, "lower")
    assert propose_bound([list(zip(sizes, [0.8] * 5, strict=True))], 16 * MIB)[:2] == (None, "lower")


# --- the sweeps compare valid plans, on both sides of the current value ------------------------------


def test_every_threshold_has_a_sweep_and_names_it_as_its_command():
    assert sorted(sweep.name for sweep in SWEEPS) == sorted(t.name for t in dispatch.THRESHOLDS)
    for threshold in dispatch.THRESHOLDS:
        assert f"python -m benchmarks.crossover --only {threshold.name}" in threshold.command
        assert threshold.command.startswith("make crossover")


@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda sweep: sweep.name)
def test_each_point_compares_two_valid_plans_one_of_which_the_policy_runs(sweep):
    current = sweep.threshold.value
    for series in sweep.series:
        for quick in (False, True):
            for layout in crossover.layouts(sweep, series, quick):
                config, dtype = series.config(layout.channels), jnp.dtype(series.dtype)
                form, other = crossover.sides(sweep.name, config, layout.channels, layout.steps, dtype)
                dispatch.check_plan(form, config)
                dispatch.check_plan(other, config)
                assert form != other, f"{sweep.name} decides nothing at {series.label} {layout}"
                holds = layout.value >= current if sweep.direction == "min" else layout.value <= current
                assert dispatch.select_plan(config, layout.channels, layout.steps, dtype, "cpu") == (
                    form if holds else other
                )
                if sweep.memory:
                    assert crossover.bytes_per_example(sweep.name, config, layout.channels, layout.steps, dtype) == (
                        layout.value
                    )
    assert getattr(dispatch, sweep.name) == current  # policy_with restored it


@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda sweep: sweep.name)
def test_both_sides_agree_with_the_reference_on_a_tiny_point(sweep):
    series = sweep.series[-1]
    layout = Layout(0, 2, 6, series.channels or 4)  # a memory bound's form needs its width
    config, kernel, bias, x = crossover._inputs(layout, series)
    dtype = jnp.dtype(series.dtype)
    params = {"kernel": jnp.asarray(kernel, dtype), "bias": jnp.asarray(bias, dtype)}
    x = jnp.asarray(x, dtype)
    form, other = crossover.sides(sweep.name, config, layout.channels, layout.steps, dtype)
    assert form != other

    def value_and_grads(implementation, params, x):
        def apply(params, x):
            return ct.conv1d_transpose(params, x, config, implementation=implementation)[0].astype(jnp.float32)

        y, vjp = jax.vjp(apply, params, x)
        return [y, *jax.tree.leaves(vjp(jnp.cos(jnp.arange(y.size, dtype=jnp.float32)).reshape(y.shape)))]

    @jax.jit  # one program for the three: one compilation
    def all_three(params, x):
        wide = jax.tree.map(lambda a: a.astype(jnp.float32), (params, x))
        return value_and_grads("lhs_dilation", *wide), [value_and_grads(plan, params, x) for plan in (form, other)]

    want, got = all_three(params, x)
    tol = 1e-4 if dtype == jnp.float32 else 5e-2
    for plan, values in zip((form, other), got, strict=True):
        for g, w in zip(values, want, strict=True):
            np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w), rtol=tol, atol=tol, err_msg=str(plan))


# --- what is printed and written -----------------------------------------------------------------


def _fake_results():
    results = []
    for s, sweep in enumerate(SWEEPS):
        series_results = []
        for n, series in enumerate(sweep.series):
            points = []
            for i, layout in enumerate(crossover.layouts(sweep, series, quick=True)):
                ratio = 0.5 + 0.5 * i if sweep.direction == "min" else 1.5 - 0.5 * i
                ratios = [] if s == n == i == 0 else [ratio * 0.9, ratio, ratio * 1.1]
                points.append(Point(layout, ct.Plan(), ct.Plan("winograd", "winograd", "winograd"), 1.0, 1.0, ratios))
            series_results.append(SeriesResult(series, points))
        results.append(ThresholdResult(sweep, series_results))
    info = crossover.RunInfo("2000-01-03", "fake box", "Fake CPU 9000", 2, "0.0", "cpu", True, 3)
    return info, results


def _section(document, heading):
    body = document.split(f"\n{heading}\n", 1)[1]
    return body.split("\n## ", 1)[0]


def test_the_section_has_the_run_the_summary_and_one_table_per_threshold():
    info, results = _fake_results()
    lines = crossover.render_section(results, info)
    text = "\n".join(lines)
    assert "Measured 2000-01-03 on Fake CPU 9000, 2 cores (fake box); jax 0.0, backend cpu; quick run" in text
    summary = lines[lines.index("| threshold | current | proposed | evidence (per-point ratios) | machine |") + 2 :]
    rows = summary[: summary.index("")]
    assert [row.split(" | ")[0] for row in rows] == [f"| {sweep.name}" for sweep in SWEEPS]
    winograd = rows[0].split(" | ")
    assert winograd[1:3] == ["64", "256"]  # ratios 0.5, 1.0, 1.5 over 16, 64, 256 channels
    assert "k16 s8 float32 forward+backward: 16: =, 64: 1.00, 256: 1.50" in winograd[3]
    assert winograd[4] == "Fake CPU 9000, 2 cores (fake box) |"
    assert rows[3].split(" | ")[1:3] == ["32", "16"]  # ZERO_PADDED: 1.5, 1.0, 0.5 over 16, 32, 128
    assert rows[5].split(" | ")[2].startswith("16 MiB (kept: not slower at or below the bound; past the bound")
    assert text.count("\n### ") == len(SWEEPS)
    table = text.split("### WINOGRAD_MIN_CHANNELS", 1)[1].split("### ", 1)[0]
    assert "| series | 16 | 64 | 256 | proposed |" in table
    assert "| k16 s8 float32 forward+backward (L1024) | = | 1.00 | 1.50 | 256 |" in table
    assert "| k16 s8 bfloat16 forward+backward (L1024) | 0.50 | 1.00 | 1.50 | 256 |" in table
    assert "| 2 MiB |" not in text and "| 8 MiB | 32 MiB |" in text  # memory sweeps: sizes in MiB


def test_without_a_crossover_the_summary_names_the_series_and_what_the_others_propose():
    _, results = _fake_results()
    result = results[0]  # WINOGRAD_MIN_CHANNELS: 0.5, 1.0, 1.5 over 16, 64, 256 channels
    behind = result.series[1]
    behind.points[-1].ratios = [0.9]  # now it never stays ahead
    assert result.proposal()[:2] == (None, "never")
    assert result.proposal_text() == (
        "no crossover in range (in some series the form never stays ahead); never ahead in "
        f"{behind.series.label}; the other series propose 256"
    )
    assert result.series_proposal(result.series[0])[:2] == (256, "crossover")


def _document(tmp_path):
    from tests.test_benchmark import _fake_measurements

    out = tmp_path / "performance.md"
    out.write_text(run.render(_fake_measurements()))
    return out


def test_write_replaces_its_section_alone(tmp_path, monkeypatch, capsys):
    out = _document(tmp_path)
    before = out.read_text()
    assert run.CROSSOVER_PLACEHOLDER in _section(before, run.CROSSOVER_HEADING)
    info, results = _fake_results()
    seen = {}

    def fake_measure(names, quick, machine):
        seen.update(names=names, quick=quick, machine=machine)
        return info, [r for r in results if r.sweep.name in names]

    monkeypatch.setattr(crossover, "measure", fake_measure)
    crossover.main(["--quick", "--only", "GEMM_MIN_CHANNELS,WINOGRAD_MAX_BYTES", "--write", str(out)])
    assert seen == {"names": ["GEMM_MIN_CHANNELS", "WINOGRAD_MAX_BYTES"], "quick": True, "machine": ""}
    after = out.read_text()
    section = _section(after, run.CROSSOVER_HEADING)
    assert run.CROSSOVER_PLACEHOLDER not in section
    assert "| GEMM_MIN_CHANNELS | 512 |" in section and "| WINOGRAD_MIN_CHANNELS |" not in section
    assert before.split(f"\n{run.CROSSOVER_HEADING}\n")[0] == after.split(f"\n{run.CROSSOVER_HEADING}\n")[0]
    assert before.split("\n## Changes to the plan\n")[1] == after.split("\n## Changes to the plan\n")[1]
    printed = capsys.readouterr().out
    assert "| GEMM_MIN_CHANNELS | 512 |" in printed and "wrote the section" in printed
    with pytest.raises(SystemExit, match="unknown threshold"):
        crossover.main(["--only", "NOT_A_THRESHOLD"])


def test_the_benchmark_carries_the_section_over(tmp_path, monkeypatch):
    from tests.test_benchmark import _fake_measurements

    out = _document(tmp_path)
    info, results = _fake_results()
    body = crossover.render_section(results, info)
    out.write_text(run.replace_section(out.read_text(), run.CROSSOVER_HEADING, body))
    measured = _fake_measurements()
    measured.date = "2000-05-06"
    monkeypatch.setattr(run, "measure", lambda quick, machine: measured)
    run.main(["--quick", "--out", str(out)])
    document = out.read_text()
    assert "Date: 2000-05-06" in document
    assert _section(document, run.CROSSOVER_HEADING).strip("\n") == "\n".join(body)
    positions = [document.index(f"\n## {title}\n") for title in run.SECTIONS]
    assert positions == sorted(positions) and document.count("\n## ") == len(run.SECTIONS)


def test_the_cpu_model_comes_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: Fake\nmodel name\t: Fake CPU 9000 @ 3 GHz\n\nprocessor\t: 1\n")
    assert crossover.cpu_model(str(cpuinfo)) == "Fake CPU 9000 @ 3 GHz"
    assert crossover.cpu_model(str(tmp_path / "absent")) == (
        crossover.platform.processor() or crossover.platform.machine()
    )

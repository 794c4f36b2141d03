"""The benchmark's harness: every peer computes the same layer, and the timer samples each one."""

from __future__ import annotations

import os

import jax.numpy as jnp
import pytest

from benchmarks.run import BF16_PEERS, PEERS, Shape, build, round_ratios, time_interleaved

TINY = Shape("tiny", batch=2, steps=8, cin=4, cout=3, k=4, s=2)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
def test_every_peer_agrees_with_the_reference_and_runs_both_passes(dtype):
    peers = list(PEERS) if dtype == jnp.float32 else BF16_PEERS
    built = build(TINY, dtype, peers)  # raises if any peer's output differs from the reference
    assert set(built) == set(peers)
    for forward, forward_backward, _ in built.values():
        forward()
        forward_backward()


def test_time_interleaved_gives_one_positive_sample_per_round_for_each_implementation():
    calls = {"a": 0, "b": 0}

    def counter(name):
        def call():
            calls[name] += 1
            return jnp.zeros(())
        return call

    samples = time_interleaved({name: counter(name) for name in calls}, repeats=3, target_s=1e-4)
    assert set(samples) == {"a", "b"}
    assert all(len(v) == 3 and min(v) > 0 for v in samples.values())
    assert all(count > 3 for count in calls.values())  # calibration and warm-up calls included


def test_round_ratios_divide_the_samples_of_the_same_round():
    samples = {"torch": [2.0, 9.0, 3.0], "convtrans": [1.0, 3.0, 4.0]}
    assert round_ratios(samples, "torch") == [2.0, 3.0, 0.75]


# --- the document: written from the measured numbers, nothing timed here -------------------------

def _fake_measurements():
    from benchmarks import run

    def samples(peers, scale):
        return {p: [scale * (1 + i) * (2.0 if p != "convtrans" else 1.0) for i in range(3)] for p in peers}

    tables = {}
    for dtype, shapes, peers in run.TABLES:
        for mode, _, _ in run.MODES:
            tables[jnp.dtype(dtype).name, mode] = [(s, samples(peers, 1.5)) for s in shapes]
    return run.Measurements(
        date="2000-01-01", machine="fake machine", cpus=2, processor="x86_64", jax_version="0.0",
        backend="cpu", default_implementation="polyphase", quick=True, repeats=3,
        gemm_gflops={"float32": 100.0, "bfloat16": 200.0, "torch float32": 90.0},
        tables=tables, sweep=[(s, {"torch": 2.0, "convtrans": 1.0}) for s in run.SWEEP])


def _section(document, title):
    body = document.split(f"\n## {title}\n", 1)[1]
    return body.split("\n## ", 1)[0]


def _table_rows(text, header_start):
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_the_document_has_every_section_in_order_from_fake_timings():
    from benchmarks import run
    from convtrans._src.dispatch import THRESHOLDS

    document = run.render(_fake_measurements())
    assert document.startswith("# ")
    assert "make bench" in document.split("\n## ", 1)[0]
    positions = [document.index(f"\n## {title}\n") for title in run.SECTIONS]
    assert positions == sorted(positions)
    assert document.count("\n## ") == len(run.SECTIONS)
    assert run.PLAN_CHANGES in _section(document, "Changes to the plan")
    assert run.XLA_BOUNDS in _section(document, "Where XLA bounds a target")
    assert "Date: 2000-01-01; machine: fake machine" in _section(document, "The run")

    plans = _table_rows(_section(document, "What runs for each benchmark shape"), "| shape | dtype |")
    assert len(plans) == len(run.SHAPES) + len(run.BF16_SHAPES) + len(run.SWEEP)
    assert all(row.count("|") == 7 for row in plans)

    thresholds = _table_rows(_section(document, "Thresholds and their provenance"), "| name |")
    assert len(thresholds) == len(THRESHOLDS)
    for row, threshold in zip(thresholds, THRESHOLDS):
        assert row.startswith(f"| {threshold.name} | {threshold.value}")
        assert threshold.evidence.replace("|", "\\|") in row

    results = _section(document, "Results")
    assert results.count("### ") == 5
    for row in _table_rows(results, "| shape | flax | keras"):
        assert "| 2.00 | 2.00 | 2.00 | 2.00 | 2.00 | 2.00-2.00 |" in row  # x peers and per-round ratios
    assert len(_table_rows(results, "| steps |")) == len(run.SWEEP)


def test_main_writes_the_rendered_document_to_out(tmp_path, monkeypatch):
    from benchmarks import run

    measured = _fake_measurements()
    monkeypatch.setattr(run, "measure", lambda quick, machine: measured)
    out = tmp_path / "performance.md"
    run.main(["--quick", "--out", str(out)])
    assert out.read_text() == run.render(measured)
    assert run.DEFAULT_OUT.endswith(os.path.join("docs", "performance.md"))

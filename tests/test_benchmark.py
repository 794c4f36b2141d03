"""The benchmark's harness: every peer computes the same layer, and the timer samples each one."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.run import BF16_PEERS, PEERS, Shape, build, round_ratios, time_interleaved
from tests.test_models_benchmark import fake_models_run

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
        ours = ("convtrans", run.TUNED)
        return {p: [scale * (1 + i) * (2.0 if p not in ours else 1.0) for i in range(3)] for p in peers}

    tables = {}
    for dtype, shapes, peers in run.TABLES:
        for mode, _, _ in run.MODES:
            tables[jnp.dtype(dtype).name, mode] = [(s, samples(peers, 1.5)) for s in shapes]
    return run.Measurements(
        date="2000-01-01",
        machine="fake machine",
        cpus=2,
        processor="x86_64",
        jax_version="0.0",
        backend="cpu",
        device="cpu",
        default_implementation="polyphase",
        quick=True,
        repeats=3,
        gemm_gflops={"float32": 100.0, "bfloat16": 200.0, "torch float32": 90.0},
        tables=tables,
        sweep=[(s, {"torch": 2.0, "convtrans": 1.0}) for s in run.SWEEP],
        streaming=_fake_streaming(),
        models=fake_models_run(),
        tuned_plans={f"{run.label(run.SHAPES[0])} | float32": run.ct.Plan.uniform("gemm")},
    )


def _fake_streaming():
    from benchmarks.streaming import StreamRow

    setup = dict(
        date="2000-01-02",
        cpus=2,
        processor="x86_64",
        jax_version="0.0",
        torch_version="0.0",
        frames=8,
        seconds=0.09,
        parameters=1e6,
        rounds=3,
    )
    return setup, [
        StreamRow("torch whole signal", 0.3, [0.3] * 3, 1e-6, 0.0),
        StreamRow("convtrans stream, 1-frame chunks", 0.9, [0.8, 0.9, 1.0], 1e-6, 148.0),
    ]


def _section(document, title):
    body = document.split(f"\n## {title}\n", 1)[1]
    return body.split("\n## ", 1)[0]


def _table_rows(text, header_start):
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
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
    # A new document holds the placeholder; benchmarks/crossover.py --write fills the section.
    assert _section(document, run.CROSSOVER_HEADING[3:]).strip() == run.CROSSOVER_PLACEHOLDER
    assert "make crossover" in run.CROSSOVER_PLACEHOLDER
    assert run.XLA_BOUNDS in _section(document, "Where XLA bounds a target")
    assert "Date: 2000-01-01; machine: fake machine" in _section(document, "The run")

    plans = _table_rows(_section(document, "What runs for each benchmark shape"), "| shape | dtype |")
    assert len(plans) == len(run.SHAPES) + len(run.BF16_SHAPES) + len(run.SWEEP)
    assert all(row.count("|") == 7 for row in plans)
    tuned = _section(document, "What runs for each benchmark shape").split("The plan autotuning chose", 1)[1]
    assert _table_rows(tuned, "| shape | dtype |") == [
        f"| {run.label(run.SHAPES[0])} | float32 | gemm | gemm | gemm | convolution |"
    ]

    thresholds = _table_rows(_section(document, "Thresholds and their provenance"), "| name |")
    assert len(thresholds) == len(THRESHOLDS)
    for row, threshold in zip(thresholds, THRESHOLDS):
        assert row.startswith(f"| {threshold.name} | {threshold.value}")
        assert threshold.evidence.replace("|", "\\|") in row

    results = _section(document, "Results")
    assert results.count("### ") == 5
    for row in _table_rows(results, "| shape | flax | keras"):
        # convtrans x 5 peers, autotuned x torch and x flax, per-round ratios
        assert "| 2.00 | 2.00 | 2.00 | 2.00 | 2.00 | 2.00 | 2.00 | 2.00-2.00 |" in row
    assert len(_table_rows(results, "| steps |")) == len(run.SWEEP)

    streaming = _section(document, "Streaming a whole vocoder")
    assert "Measured 2000-01-02" in streaming
    assert _table_rows(streaming, "| mode |") == [
        "| torch whole signal | 0.300 | 0.300-0.300 | whole signal | 1.0e-06 |",
        "| convtrans stream, 1-frame chunks | 0.900 | 0.800-1.000 | 148 ms | 1.0e-06 |",
    ]


def test_streaming_only_rewrites_its_own_section(tmp_path, monkeypatch):
    from benchmarks import run

    out = tmp_path / "performance.md"
    out.write_text(run.render(_fake_measurements()))
    setup, rows = _fake_streaming()
    later = ({**setup, "date": "2000-02-03"}, rows[:1])
    monkeypatch.setattr(run, "measure_streaming", lambda seconds, rounds: later)
    run.main(["--quick", "--streaming-only", "--out", str(out)])
    document = out.read_text()
    assert "Measured 2000-02-03" in _section(document, "Streaming a whole vocoder")
    assert "1-frame chunks" not in document
    assert "Date: 2000-01-01; machine: fake machine" in _section(document, "The run")
    assert run.XLA_BOUNDS in _section(document, "Where XLA bounds a target")


def test_models_only_rewrites_its_own_section_or_adds_it_where_it_belongs(tmp_path, monkeypatch):
    from benchmarks import run
    from benchmarks.models import MODELS_HEADING

    out = tmp_path / "performance.md"
    whole = run.render(_fake_measurements())
    assert "Measured 2000-01-03" in _section(whole, "Whole models")
    monkeypatch.setattr(run, "measure_models", lambda quick: fake_models_run(date="2000-02-04"))
    start, end = whole.index(f"\n{MODELS_HEADING}\n"), whole.index(f"\n{run.TARGETS_HEADING}\n")
    without = whole[:start] + whole[end:]  # a document from before the section
    for document in (whole, without):
        out.write_text(document)
        run.main(["--quick", "--models-only", "--out", str(out)])
        rewritten = out.read_text()
        assert "Measured 2000-02-04" in _section(rewritten, "Whole models")
        assert "Measured 2000-01-03" not in rewritten
        positions = [rewritten.index(f"\n## {title}\n") for title in run.SECTIONS]
        assert positions == sorted(positions)
        assert rewritten.replace("2000-02-04", "2000-01-03") == whole


def test_the_streaming_benchmark_checks_torch_and_the_streams_against_the_whole_signal():
    from benchmarks.streaming import CHUNK_FRAMES, measure_streaming
    from examples.vocoder.models import HiFiGAN

    model = HiFiGAN(
        upsample_initial_channel=8,
        upsample_rates=(8, 2),
        upsample_kernel_sizes=(16, 4),
        resblock_kernel_sizes=(3, 5),
        resblock_dilation_sizes=((1, 3), (1, 3)),
    )
    mel = jnp.zeros((1, 8, 80))
    rng = np.random.default_rng(0)
    variables = jax.tree.map(
        lambda leaf: jnp.asarray(rng.standard_normal(leaf.shape) * 0.1, leaf.dtype),
        jax.eval_shape(model.init, jax.random.key(0), mel),
    )
    _setup, rows = measure_streaming(0.05, 1, model, variables)  # raises if any output differs
    assert [row.mode for row in rows] == ["torch whole signal", "convtrans whole signal"] + [
        f"convtrans stream, {n}-frame chunks" for n in CHUNK_FRAMES
    ]
    assert all(row.rtf > 0 and row.error <= 1e-5 for row in rows)


def test_main_writes_the_rendered_document_to_out(tmp_path, monkeypatch):
    from benchmarks import run

    measured = _fake_measurements()
    monkeypatch.setattr(run, "measure", lambda quick, machine: measured)
    out = tmp_path / "performance.md"
    run.main(["--quick", "--out", str(out)])
    assert out.read_text() == run.render(measured)
    assert run.DEFAULT_OUT.endswith(os.path.join("docs", "performance.md"))


def test_main_carries_the_crossover_sweep_over_from_the_existing_document(tmp_path, monkeypatch):
    from benchmarks import run

    out = tmp_path / "performance.md"
    sweep = ["Measured 1999-12-31 on a fake CPU.", "", "### WINOGRAD_MIN_CHANNELS", "", "| series | 64 |"]
    out.write_text(run.replace_section(run.render(_fake_measurements()), run.CROSSOVER_HEADING, sweep))
    measured = _fake_measurements()
    measured.date = "2000-03-04"
    monkeypatch.setattr(run, "measure", lambda quick, machine: measured)
    run.main(["--quick", "--out", str(out)])
    document = out.read_text()
    assert "Date: 2000-03-04" in _section(document, "The run")
    assert _section(document, run.CROSSOVER_HEADING[3:]).strip("\n") == "\n".join(sweep)
    assert run.CROSSOVER_PLACEHOLDER not in document
    assert document == run.replace_section(run.render(measured), run.CROSSOVER_HEADING, sweep)

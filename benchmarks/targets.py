"""The performance targets, checked against one run's measurements (nothing is timed here).

Each target is a predicate over cells of the tables that :func:`benchmarks.run.measure` fills; a
target is met by an implementation (convtrans's static plan, or the autotuned one) when every
cell it covers is. :func:`check` gives one :class:`Verdict` per target and implementation, and
:func:`render` the section of docs/performance.md.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any, NamedTuple

TARGETS_HEADING = "## Targets"
STATIC, TUNED = "convtrans", "autotuned"
MODEL_TUNED = "convtrans autotuned"  # the whole-model tables' name of the autotuned variant

# (name, what it asks)
FORWARD = ("layer forward", "every benchmark layer's forward at least 1.0x torch and 1.0x flax")
BACKWARD_FLAX = (
    "layer forward+backward vs flax",
    "forward+backward at least 10x flax on every strided layer with 16 or more input channels",
)
BACKWARD_TORCH = ("layer forward+backward vs torch", "forward+backward at least 1.5x torch, geometric mean (float32)")
TRAINING = (
    "HiFi-GAN V1 training step",
    "whole HiFi-GAN V1 forward+backward at least 1.5x flax and 1.2x torch at equal threads",
)
COMPILE = ("compile time", "whole-model compile time at most flax's + 20%")


class Verdict(NamedTuple):
    """Whether ``implementation`` meets a target, its worst cell and every cell short of it."""

    target: str
    requirement: str
    implementation: str
    met: bool
    worst: str
    short: list[str]


def _median_ratio(samples: dict[str, list[float]], peer: str, ours: str) -> float:
    return statistics.median(samples[peer]) / statistics.median(samples[ours])


def _verdict(name: tuple[str, str], ours: str, cells: list[tuple[str, float, float]]) -> Verdict:
    """``cells``: (label, speed-up, least speed-up wanted)."""
    short = [f"{label} {value:.2f}x" for label, value, want in cells if value < want]
    worst = min(cells, key=lambda cell: cell[1] / cell[2])
    return Verdict(name[0], name[1], ours, not short, f"{worst[0]} {worst[1]:.2f}x", short)


def _layer_cells(m: Any, mode: str, ours: str, keep: Callable[[Any], bool], peers: tuple[str, ...], want: float):
    cells = []
    for (dname, table_mode), rows in sorted(m.tables.items()):
        if table_mode != mode:
            continue
        for shape, samples in rows:
            if ours not in samples or not keep(shape):
                continue
            for peer in peers:
                if peer in samples:
                    label = f"{shape.name} {dname} vs {peer}"
                    cells.append((label, _median_ratio(samples, peer, ours), want))
    return cells


def _training_cells(m: Any, ours: str) -> list[tuple[str, float, float]]:
    cells = []
    for setting in m.models.settings:
        for model in setting.models:
            if model.model != "HiFi-GAN V1":
                continue
            samples = model.samples["forward+backward"]
            if ours not in samples:
                continue
            for peer, want in (("flax", 1.5), ("torch", 1.2)):
                cells.append((f"{setting.setting} vs {peer}", _median_ratio(samples, peer, ours), want))
    return cells


def _compile_cells(m: Any, ours: str) -> list[tuple[str, float, float]]:
    cells = []
    for setting in m.models.settings:
        for model in setting.models:
            if ours not in model.compile_s:
                continue
            for program, seconds in model.compile_s[ours].items():
                flax = statistics.median(model.compile_s["flax"][program])
                # As a speed-up (flax's seconds over ours), "within flax's + 20%" is >= 1 / 1.2.
                cells.append((f"{model.model} {program}", flax / statistics.median(seconds), 1 / 1.2))
    return cells


def check(m: Any) -> list[Verdict]:
    """Every target's verdict for the static and the autotuned plan, from ``m``, a
    :class:`benchmarks.run.Measurements`."""
    verdicts = []
    for ours, model_ours in ((STATIC, STATIC), (TUNED, MODEL_TUNED)):
        every = _layer_cells(m, "forward", ours, lambda shape: True, ("torch", "flax"), 1.0)
        strided = _layer_cells(
            m, "forward+backward", ours, lambda shape: shape.s > 1 and shape.cin >= 16, ("flax",), 10.0
        )
        torch = _layer_cells(m, "forward+backward", ours, lambda shape: True, ("torch",), 0.0)
        torch = [cell for cell in torch if " float32 " in cell[0]]
        for name, cells in ((FORWARD, every), (BACKWARD_FLAX, strided)):
            if cells:
                verdicts.append(_verdict(name, ours, cells))
        if torch:
            mean = math.exp(statistics.fmean(math.log(value) for _, value, _ in torch))
            verdicts.append(
                Verdict(
                    BACKWARD_TORCH[0],
                    BACKWARD_TORCH[1],
                    ours,
                    mean >= 1.5,
                    f"geometric mean {mean:.2f}x over {len(torch)} layers",
                    [f"{label} {value:.2f}x" for label, value, _ in torch if value < 1.5],
                )
            )
        for name, cells in ((TRAINING, _training_cells(m, model_ours)), (COMPILE, _compile_cells(m, model_ours))):
            if cells:
                verdict = _verdict(name, ours, cells)
                if name is COMPILE:  # as compile-time ratios to flax (ours / flax)
                    verdict = verdict._replace(
                        worst=_as_time_ratio(verdict.worst), short=[_as_time_ratio(s) for s in verdict.short]
                    )
                verdicts.append(verdict)
    return verdicts


def _as_time_ratio(cell: str) -> str:
    label, value = cell.rsplit(" ", 1)
    return f"{label} {1 / float(value[:-1]):.2f}x flax's time"


def render(verdicts: list[Verdict]) -> list[str]:
    """The body of the section :data:`TARGETS_HEADING`."""
    lines = [
        "The targets, checked by `benchmarks/targets.py` against this run's tables above: "
        "`convtrans` is the static plan (what runs by default), `autotuned` the plan "
        "`convtrans.autotune` chose on this machine in this run. A ratio is a speed-up (peer time "
        "over convtrans time, medians), except in compile times.",
        "",
        "| target | plan | met | worst cell | cells short of the target |",
        "|---|---|---|---|---|",
    ]
    for v in verdicts:
        short = "; ".join(v.short) if v.short else "-"
        lines.append(f"| {v.requirement} | {v.implementation} | {'yes' if v.met else 'no'} | {v.worst} | {short} |")
    return lines

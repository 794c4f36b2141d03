"""Re-derive each threshold of convtrans's CPU plan on this machine.

Usage: ``python -m benchmarks.crossover [--quick] [--only NAME[,NAME]] [--write [PATH]]
[--machine TEXT]`` (``make crossover``). For every entry of
``convtrans._src.dispatch.THRESHOLDS`` it times the two sides of the decision that the threshold
governs, interleaved in one process (:func:`benchmarks.run.time_interleaved`), over a grid of the
quantity the threshold bounds: input channels per group, or bytes per example for the memory
bounds. The two sides are the plans the policy itself gives with the threshold's predicate held
true and held false (:func:`sides`), so everything else the policy decides is the same on both.
It prints each point's speed-up, then a table of every threshold's current and proposed value;
``--write`` puts those tables into the section "The sweep behind the thresholds" of
docs/performance.md, and nothing else of that document. The proposals come from
:func:`propose` and :func:`propose_bound`, pure functions of the measured ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import math
import os
import platform
import statistics
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import jax.numpy as jnp
import numpy as np

import convtrans as ct
from benchmarks.run import (
    CROSSOVER_HEADING,
    DEFAULT_OUT,
    _jax_pair,
    replace_section,
    round_ratios,
    time_interleaved,
)
from convtrans._src import dispatch
from convtrans._src.dispatch import THRESHOLDS, Threshold

# A point counts as a win for the form when it is this much faster, and as a loss when it is this
# much slower; in between it is a tie.
MARGIN = 0.05
# Multiply-adds of one call at a channel sweep's point (the batch is sized to it; a
# forward+backward call does three times a forward's), so that each point takes a few
# milliseconds on a 2-core machine.
WORK = 1e8
MAX_BATCH = 32
_ALWAYS, _NEVER = 2**62, -1  # threshold values that make a predicate always / never hold

MODES = {"forward": 0, "forward+backward": 1}  # index in benchmarks.run._jax_pair's pair


# --- what is swept -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Series:
    """One row of a sweep: a layer geometry, a dtype and a mode, timed at every grid point.

    ``steps`` is the length per example of a channel sweep (the batch is sized to :data:`WORK`);
    ``channels`` the input channels of a memory sweep (batch 1, the length sized to the bytes).
    ``filters`` is ``out_per_in`` times the input channels.
    """

    k: int
    s: int
    d: int = 1
    dtype: str = "float32"
    mode: str = "forward"
    steps: int = 1024
    channels: int = 0
    out_per_in: float = 0.5

    def filters(self, channels: int) -> int:
        return max(1, int(channels * self.out_per_in))

    def config(self, channels: int) -> ct.Conv1DTransposeConfig:
        return ct.Conv1DTransposeConfig(
            filters=self.filters(channels), kernel_size=self.k, strides=self.s, padding="same", dilation_rate=self.d
        )

    @property
    def backward(self) -> bool:
        return self.mode == "forward+backward"

    @property
    def label(self) -> str:
        d = f" d{self.d}" if self.d > 1 else ""
        return f"k{self.k} s{self.s}{d} {self.dtype} {self.mode}"


@dataclasses.dataclass(frozen=True)
class Sweep:
    """The grid and the series over which one threshold is re-derived.

    ``grid``/``quick_grid``: input channels per group, or, for a memory bound (``memory``),
    multiples of the current bound (the lengths are chosen to give those bytes per example).
    """

    name: str
    grid: tuple[float, ...]
    quick_grid: tuple[float, ...]
    series: tuple[Series, ...]
    note: str = ""

    @property
    def threshold(self) -> Threshold:
        return next(t for t in THRESHOLDS if t.name == self.name)

    @property
    def memory(self) -> bool:
        return self.threshold.unit.startswith("bytes")

    @property
    def direction(self) -> str:
        """``"min"``: the form is used from the threshold up; ``"max"``: up to it."""
        return "min" if "_MIN_" in self.name else "max"


def _gradients(geometry: dict, steps: int) -> tuple[Series, ...]:
    return (
        Series(**geometry, steps=steps, mode="forward+backward"),
        Series(**geometry, steps=steps, dtype="bfloat16", mode="forward+backward"),
    )


SWEEPS = (
    Sweep(
        "WINOGRAD_MIN_CHANNELS",
        (8, 16, 32, 48, 64, 96, 128, 256),
        (16, 64, 256),
        _gradients(dict(k=16, s=8), 1024)
        + _gradients(dict(k=4, s=2), 2048)
        + _gradients(dict(k=3, s=1, d=2, out_per_in=1.0), 1024),
        "Phases of 2 taps (k16 s8, k4 s2) and of 3 taps (k3 s1 d2); below WINOGRAD_FORWARD_MIN_CHANNELS "
        "and for bfloat16 the forward is the same on both sides, so these rows time the gradients",
    ),
    Sweep(
        "WINOGRAD_FORWARD_MIN_CHANNELS",
        (64, 96, 128, 192, 256, 384),
        (64, 128, 256),
        (
            Series(16, 8, steps=1024, mode="forward"),
            Series(4, 2, steps=2048, mode="forward"),
            Series(3, 1, 2, steps=1024, mode="forward", out_per_in=1.0),
        ),
        "Winograd's geometries from WINOGRAD_MIN_CHANNELS up, below GEMM_MIN_CHANNELS (where the GEMM "
        "forward comes first): Winograd's forward against the polyphase convolution",
    ),
    Sweep(
        "GEMM_MIN_CHANNELS",
        (64, 128, 256, 384, 512, 768, 1024),
        (128, 512, 1024),
        (
            Series(8, 2, steps=256, mode="forward"),
            Series(8, 2, steps=256, mode="forward+backward"),
            Series(16, 8, steps=64, mode="forward"),
            Series(16, 8, steps=256, dtype="bfloat16", mode="forward"),
        ),
        "k8 s2 has 4-tap phases, where Winograd does not apply; on Winograd's geometries (k16 s8) "
        "this threshold decides the forward (GEMM before Winograd) and Winograd keeps the gradients",
    ),
    Sweep(
        "ZERO_PADDED_MAX_CHANNELS",
        (8, 16, 24, 32, 48, 64, 96, 128),
        (16, 32, 128),
        (
            Series(9, 2, steps=4096, mode="forward+backward", out_per_in=1.0),
            Series(17, 4, steps=2048, mode="forward+backward", out_per_in=1.0),
        ),
        "Dilation 1 and two phase groups (k9 s2: 5 and 4 taps; k17 s4: 5 and 4), no 2- or 3-tap "
        "phase, so Winograd never takes the kernel gradient",
    ),
    Sweep(
        "STACKED_PRODUCT_MIN_CHANNELS",
        (8, 16, 32, 48, 64, 96, 128, 256),
        (16, 64, 256),
        (
            Series(4, 2, steps=2048, dtype="bfloat16"),
            Series(16, 8, steps=512, dtype="bfloat16"),
            Series(3, 1, 2, steps=1024, dtype="bfloat16", out_per_in=1.0),
        ),
        "The bfloat16 forward: stacked-window products against XLA:CPU's bfloat16 convolutions",
    ),
    Sweep(
        "WINOGRAD_MAX_BYTES",
        (0.25, 0.5, 1, 2),
        (0.5, 2),
        (Series(4, 2, channels=128, mode="forward"), Series(4, 2, channels=128, mode="forward+backward")),
        "HiFi-GAN stage 3's layer (128 -> 64 channels, k4 s2), batch 1; the other side is what the "
        "policy runs past the bound",
    ),
    Sweep(
        "GEMM_MAX_BYTES",
        (0.25, 0.5, 1, 2),
        (0.5, 2),
        (Series(8, 2, channels=512, mode="forward"), Series(8, 2, channels=512, mode="forward+backward")),
        "512 -> 256 channels (the narrowest the GEMM form computes), k8 s2 (no Winograd), batch 1",
    ),
)
SWEEP_NAMES = tuple(sweep.name for sweep in SWEEPS)


# --- the two sides of a decision -----------------------------------------------------------------


# Thresholds that decide something only where another's predicate holds: that one is held true on
# both sides, so that a layer narrower than it still has two sides (the sweep's grids start there).
PREREQUISITES = {"WINOGRAD_FORWARD_MIN_CHANNELS": ("WINOGRAD_MIN_CHANNELS",)}


@contextmanager
def policy_with(name: str, value: int) -> Iterator[None]:
    """The policy of ``convtrans._src.dispatch`` with the threshold ``name`` set to ``value``."""
    saved = getattr(dispatch, name)
    setattr(dispatch, name, value)
    try:
        yield
    finally:
        setattr(dispatch, name, saved)


def sides(name: str, config: ct.Conv1DTransposeConfig, channels: int, steps: int, dtype) -> tuple[ct.Plan, ct.Plan]:
    """``(form, other)``: the CPU plans the policy gives this layer with the predicate of threshold
    ``name`` held true and held false. Equal when the threshold decides nothing here."""
    on, off = (0, _ALWAYS) if "_MIN_" in name else (_ALWAYS, _NEVER)
    plans = []
    for value in (on, off):
        with contextlib.ExitStack() as held:
            for prerequisite in PREREQUISITES.get(name, ()):
                held.enter_context(policy_with(prerequisite, 0))
            held.enter_context(policy_with(name, value))
            plans.append(dispatch.select_plan(config, channels, steps, dtype, "cpu"))
    return plans[0], plans[1]


def bytes_per_example(name: str, config: ct.Conv1DTransposeConfig, channels: int, steps: int, dtype) -> int:
    """What the memory bound ``name`` is compared with for this layer (as the policy counts it)."""
    if name == "WINOGRAD_MAX_BYTES":
        taps = max(dispatch._winograd_taps(config, config.groups))
        return dispatch._winograd_bytes(config, config.filters, channels, steps, taps, dtype)
    return dispatch._tap_products_bytes(config, config.filters, steps, dtype)


class Layout(NamedTuple):
    """One point of a series: the grid value, the batch, the length and the input channels."""

    value: int
    batch: int
    steps: int
    channels: int


def layouts(sweep: Sweep, series: Series, quick: bool) -> list[Layout]:
    """The points of ``series``: a channel sweep keeps the length and sizes the batch to
    :data:`WORK`; a memory sweep runs batch 1 at the longest length whose bytes per example do not
    exceed the grid's multiple of the current bound."""
    points = []
    for g in sweep.quick_grid if quick else sweep.grid:
        if not sweep.memory:
            channels = int(g)
            work = series.steps * channels * series.filters(channels) * series.k * (3 if series.backward else 1)
            points.append(Layout(channels, min(MAX_BATCH, max(1, round(WORK / work))), series.steps, channels))
            continue
        config, dtype = series.config(series.channels), jnp.dtype(series.dtype)
        target = g * sweep.threshold.value
        per_step = bytes_per_example(sweep.name, config, series.channels, 1024, dtype) / 1024
        steps = max(1, int(target / per_step))
        while steps > 1 and bytes_per_example(sweep.name, config, series.channels, steps, dtype) > target:
            steps -= 1
        size = bytes_per_example(sweep.name, config, series.channels, steps, dtype)
        points.append(Layout(size, 1, steps, series.channels))
    return points


# --- timing --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Point:
    """One measured point: the two plans and the per-round ratios ``other ms / form ms``."""

    layout: Layout
    form: ct.Plan
    other: ct.Plan
    form_ms: float | None = None
    other_ms: float | None = None
    ratios: list[float] = dataclasses.field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        """The form's speed-up (median of the rounds' ratios); None where both sides are one plan."""
        return statistics.median(self.ratios) if self.ratios else None


@dataclasses.dataclass
class SeriesResult:
    series: Series
    points: list[Point]

    def pairs(self) -> list[tuple[int, float | None]]:
        return [(p.layout.value, p.ratio) for p in self.points]


@dataclasses.dataclass
class ThresholdResult:
    sweep: Sweep
    series: list[SeriesResult]

    def proposal(self) -> Proposal:
        pairs = [s.pairs() for s in self.series]
        if self.sweep.memory:
            return propose_bound(pairs, self.sweep.threshold.value)
        return propose(pairs, self.sweep.direction)

    def series_proposal(self, series: SeriesResult) -> Proposal:
        if self.sweep.memory:
            return propose_bound([series.pairs()], self.sweep.threshold.value)
        return propose([series.pairs()], self.sweep.direction)

    def proposal_text(self) -> str:
        """:func:`proposal_text`, and where no crossover is in range, the series that lack one and
        what the others propose."""
        proposal = self.proposal()
        text = proposal_text(self.sweep, proposal)
        if proposal.verdict == "never":
            own = [(series, self.series_proposal(series)) for series in self.series]
            text += "; never ahead in " + ", ".join(s.series.label for s, p in own if p.verdict == "never")
            rest = propose([s.pairs() for s, p in own if p.verdict != "never"], self.sweep.direction)
            if rest.verdict in ("crossover", "always"):
                text += f"; the other series propose {proposal_text(self.sweep, rest)}"
        return text


def _inputs(layout: Layout, series: Series):
    config = series.config(layout.channels)
    rng = np.random.default_rng(0)
    scale = math.sqrt(series.k * layout.channels / series.s)
    kernel = (rng.standard_normal((series.k, config.filters, layout.channels)) / scale).astype(np.float32)
    bias = rng.standard_normal(config.filters).astype(np.float32)
    x = rng.standard_normal((layout.batch, layout.steps, layout.channels)).astype(np.float32)
    return config, kernel, bias, x


def side_functions(series: Series, layout: Layout, plans: dict[str, ct.Plan]):
    """For each named plan, the ``(forward, forward_backward, y)`` of :func:`benchmarks.run._jax_pair`
    on this point's layer (the cotangent an argument), the outputs checked equal."""
    config, kernel, bias, x = _inputs(layout, series)
    dtype = jnp.dtype(series.dtype)
    params = {"kernel": jnp.asarray(kernel, dtype), "bias": jnp.asarray(bias, dtype)}
    built = {}
    for name, plan in plans.items():

        def apply(params, x, plan=plan):
            return ct.conv1d_transpose(params, x, config, implementation=plan)[0]

        built[name] = _jax_pair(apply, params, jnp.asarray(x, dtype))
    tol = 2e-3 if dtype == jnp.float32 else 0.1
    outputs = [np.asarray(y, np.float32) for _, _, y in built.values()]
    for y in outputs[1:]:
        np.testing.assert_allclose(y, outputs[0], rtol=tol, atol=tol, err_msg=f"the sides differ on {series.label}")
    return built


def measure_point(sweep: Sweep, series: Series, layout: Layout, repeats: int, target_s: float) -> Point:
    dtype = jnp.dtype(series.dtype)
    form, other = sides(sweep.name, series.config(layout.channels), layout.channels, layout.steps, dtype)
    point = Point(layout, form, other)
    if form == other:
        return point
    built = side_functions(series, layout, {"form": form, "other": other})
    index = MODES[series.mode]
    samples = time_interleaved({name: fns[index] for name, fns in built.items()}, repeats, target_s)
    point.form_ms = statistics.median(samples["form"])
    point.other_ms = statistics.median(samples["other"])
    point.ratios = round_ratios(samples, "other", "form")
    return point


def _plan_text(plan: ct.Plan) -> str:
    return "/".join(getattr(plan, f.name) for f in dataclasses.fields(plan))


def _value_text(sweep: Sweep, value: float) -> str:
    return f"{value / 2**20:.3g} MiB" if sweep.memory else str(value)


def measure_sweep(sweep: Sweep, quick: bool, repeats: int, target_s: float) -> ThresholdResult:
    """Time every point of ``sweep``, printing each as it is measured."""
    print(f"\n== {sweep.name} (now {_threshold_text(sweep.threshold)}): {sweep.note}", flush=True)
    results = []
    for series in sweep.series:
        points = []
        for layout in layouts(sweep, series, quick):
            point = measure_point(sweep, series, layout, repeats, target_s)
            size = f"B{layout.batch} L{layout.steps} {layout.channels} ch"
            where = f"{series.label}, {_value_text(sweep, layout.value)} ({size})"
            if point.ratio is None:
                print(f"{where}: one plan on both sides ({_plan_text(point.form)})", flush=True)
            else:
                print(
                    f"{where}: form {_plan_text(point.form)} {point.form_ms:.3g} ms, other "
                    f"{_plan_text(point.other)} {point.other_ms:.3g} ms, speed-up {point.ratio:.2f} "
                    f"(rounds {min(point.ratios):.2f}-{max(point.ratios):.2f})",
                    flush=True,
                )
            points.append(point)
        results.append(SeriesResult(series, points))
    result = ThresholdResult(sweep, results)
    print("\n".join(sweep_table(result)), flush=True)
    return result


# --- the proposal rule ---------------------------------------------------------------------------


# (grid value, the form's speed-up or None where both sides are one plan), one per point of a series
Pairs = Sequence[tuple[float, float | None]]


class Proposal(NamedTuple):
    """A proposed value and how it was found.

    ``verdict``: ``"crossover"`` (the form wins from ``value`` on), ``"always"`` (it wins across the
    whole range; ``value`` is the range's edge), ``"never"`` (it never wins; ``value`` None),
    ``"keep"`` or ``"lower"`` (a memory bound: kept, or lowered to ``value`` because the form is
    slower below it; None when slower at the smallest size), or ``"none"`` (nothing measured).
    """

    value: float | None
    verdict: str
    why: str


def _series_crossover(pairs: Pairs, direction: str, margin: float) -> Proposal:
    measured = sorted((v, r) for v, r in pairs if r is not None)
    if direction == "max":
        measured.reverse()
    if not measured:
        return Proposal(None, "none", "both sides are one plan at every point")
    for i, (value, ratio) in enumerate(measured):
        if ratio >= 1 + margin and all(r >= 1 - margin for _, r in measured[i + 1 :]):
            if i == 0:
                return Proposal(value, "always", "faster across the whole range")
            return Proposal(value, "crossover", f"faster at {value:g} and nowhere slower beyond")
    return Proposal(None, "never", "the form never stays ahead")


def propose(series: Sequence[Pairs], direction: str, margin: float = MARGIN) -> Proposal:
    """The threshold that the measured ratios propose.

    ``series``: for each series, ``(grid value, speed-up of the form)`` pairs (None where both sides
    are the same plan; such points count for nothing). ``direction`` ``"min"``: the form is used
    from the threshold up, and a series proposes the smallest grid value at which the form is
    faster by more than ``margin`` and from which it is nowhere slower by more than ``margin``;
    ``"max"`` mirrors it (the largest value, nowhere slower below it). Over several series the
    most cautious proposal wins: the largest for ``"min"``, the smallest for ``"max"``; a series in
    which the form never wins makes the whole proposal ``"never"``.
    """
    if direction not in ("min", "max"):
        raise ValueError(f"direction must be 'min' or 'max', got {direction!r}")
    found = [_series_crossover(pairs, direction, margin) for pairs in series]
    found = [p for p in found if p.verdict != "none"]
    if not found:
        return Proposal(None, "none", "both sides are one plan at every point")
    if any(p.verdict == "never" for p in found):
        return Proposal(None, "never", "in some series the form never stays ahead")
    cautious = max if direction == "min" else min
    value = cautious(p.value for p in found if p.value is not None)
    if all(p.verdict == "always" for p in found):
        return Proposal(value, "always", "the form is faster at every point of every series")
    return Proposal(value, "crossover", "the most cautious series' crossover")


def propose_bound(series: Sequence[Pairs], current: float, margin: float = MARGIN) -> Proposal:
    """A memory bound's proposal: keep ``current`` unless the form is slower by more than
    ``margin`` at some size at or below it; then the largest measured size below the smallest such
    size (None if it is the smallest measured). Sizes above the bound only inform the reason."""
    measured = sorted((v, r) for pairs in series for v, r in pairs if r is not None)
    if not measured:
        return Proposal(None, "none", "both sides are one plan at every point")
    slow = [v for v, r in measured if v <= current and r < 1 - margin]
    above = [r for v, r in measured if v > current]
    beyond = f"; past the bound the speed-up is {_span(above)}" if above else ""
    if not slow:
        return Proposal(current, "keep", "not slower at or below the bound" + beyond)
    lower = [v for v, _ in measured if v < slow[0]]
    return Proposal(
        lower[-1] if lower else None, "lower", f"slower at {slow[0] / 2**20:.3g} MiB, below the bound" + beyond
    )


def proposal_text(sweep: Sweep, proposal: Proposal) -> str:
    """The proposed value as the tables print it."""
    current = _threshold_text(sweep.threshold)
    if proposal.verdict == "none":
        return "no decision measured"
    if proposal.verdict == "keep":
        return f"{current} (kept: {proposal.why})"
    if proposal.verdict == "lower":
        value = "below the range" if proposal.value is None else _value_text(sweep, proposal.value)
        return f"{value} (the form is {proposal.why})"
    if proposal.verdict == "never":
        return f"no crossover in range ({proposal.why})"
    if proposal.verdict == "always":
        edge = "<=" if sweep.direction == "min" else ">="
        return f"{edge} {proposal.value:g}: no crossover in range, the form wins throughout"
    return f"{proposal.value:g}"


def _span(values: Sequence[float]) -> str:
    low, high = f"{min(values):.2f}", f"{max(values):.2f}"
    return low if low == high else f"{low}-{high}"


# --- tables --------------------------------------------------------------------------------------


def _threshold_text(threshold: Threshold) -> str:
    if threshold.unit.startswith("bytes"):
        return f"{threshold.value / 2**20:g} MiB"
    return str(threshold.value)


def _ratio_text(ratio: float | None) -> str:
    return "=" if ratio is None else f"{ratio:.2f}"


def _series_text(result: SeriesResult, sweep: Sweep) -> str:
    if sweep.memory:
        return f"{result.series.label} ({result.series.channels} ch)"
    return f"{result.series.label} (L{result.series.steps})"


def sweep_table(result: ThresholdResult) -> list[str]:
    """One threshold's table: a row per series, a column per grid value, the form's speed-up in
    each cell (``=``: the same plan on both sides), and the series' own proposal."""
    sweep = result.sweep
    values = sorted({p.layout.value for s in result.series for p in s.points})
    header = ["series"] + [_value_text(sweep, v) for v in values] + ["proposed"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for series in result.series:
        cells = {p.layout.value: _ratio_text(p.ratio) for p in series.points}
        own = proposal_text(sweep, result.series_proposal(series))
        row = [_series_text(series, sweep)] + [cells.get(v, "") for v in values] + [own]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def evidence(result: ThresholdResult) -> str:
    """Every point's ratio, series by series, as one line."""
    parts = []
    for series in result.series:
        points = ", ".join(
            f"{_value_text(result.sweep, p.layout.value)}: {_ratio_text(p.ratio)}" for p in series.points
        )
        parts.append(f"{series.series.label}: {points}")
    return "; ".join(parts)


@dataclasses.dataclass(frozen=True)
class RunInfo:
    date: str
    machine: str
    cpu_model: str
    cores: int
    jax_version: str
    backend: str
    quick: bool
    repeats: int

    @property
    def where(self) -> str:
        text = f"{self.cpu_model}, {self.cores} cores"
        return f"{text} ({self.machine})" if self.machine else text


def summary_table(results: Sequence[ThresholdResult], info: RunInfo) -> list[str]:
    header = ["threshold", "current", "proposed", "evidence (per-point ratios)", "machine"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for result in results:
        row = [
            result.sweep.name,
            _threshold_text(result.sweep.threshold),
            result.proposal_text(),
            evidence(result),
            info.where,
        ]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return lines


RULE = (
    "Each cell is the speed-up of the form that the threshold switches on: the time of the plan "
    "the policy gives with the threshold's predicate held false over the time of the plan it "
    "gives with the predicate held true (the median of the per-round ratios; `=` where the two "
    "plans are one), both timed interleaved in one process with the cotangent a runtime "
    "argument. A minimum width is proposed at the smallest grid value where the form is faster "
    "by more than {margin:.0%} and from which it is nowhere slower by more than {margin:.0%}; a "
    "maximum width mirrors that (the largest value, nowhere slower below it). Over several series "
    "the most cautious series decides (the largest minimum, the smallest maximum), and a series "
    "in which the form never wins makes it no crossover in range. A memory bound, set by "
    "reasoning, is kept unless the form is slower by more than {margin:.0%} at or below it."
)


def render_section(results: Sequence[ThresholdResult], info: RunInfo) -> list[str]:
    """The body of the section "The sweep behind the thresholds" of docs/performance.md."""
    measured = ", ".join(f"`{r.sweep.name}`" for r in results)
    lines = [
        "Written by `python -m benchmarks.crossover --write` (benchmarks/crossover.py; `make "
        "crossover` prints the same without writing); `make bench` keeps this section as it is. "
        + RULE.format(margin=MARGIN),
        "",
        f"Measured {info.date} on {info.where}; jax {info.jax_version}, backend {info.backend}; "
        f"{'quick' if info.quick else 'full'} run, {info.repeats} interleaved rounds per point; "
        f"thresholds swept: {measured}.",
        "",
    ]
    lines += summary_table(results, info)
    for result in results:
        lines += ["", f"### {result.sweep.name}", "", f"{result.sweep.note}.", ""]
        lines += sweep_table(result)
    return lines


# --- the run -------------------------------------------------------------------------------------


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's 'model name' from ``cpuinfo`` when it has one, else what :mod:`platform` says."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_info(quick: bool, repeats: int, machine: str) -> RunInfo:
    return RunInfo(
        date=datetime.date.today().isoformat(),
        machine=machine,
        cpu_model=cpu_model(),
        cores=os.cpu_count() or 0,
        jax_version=jax.__version__,
        backend=jax.default_backend(),
        quick=quick,
        repeats=repeats,
    )


def measure(names: Sequence[str], quick: bool, machine: str) -> tuple[RunInfo, list[ThresholdResult]]:
    """Sweep the thresholds ``names`` (in :data:`SWEEPS` order)."""
    repeats = 3 if quick else 11
    target = 0.002 if quick else 0.005
    info = run_info(quick, repeats, machine)
    if info.backend != "cpu":
        print(f"warning: the thresholds are XLA:CPU's, and this run's backend is {info.backend}", file=sys.stderr)
    results = [measure_sweep(sweep, quick, repeats, target) for sweep in SWEEPS if sweep.name in names]
    return info, results


def _names(text: str | None) -> list[str]:
    if text is None:
        return list(SWEEP_NAMES)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SWEEP_NAMES))
    if unknown or not names:
        raise SystemExit(f"--only: unknown threshold(s) {unknown}; expected names of {list(SWEEP_NAMES)}")
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer grid points and rounds (a smoke run)")
    parser.add_argument("--only", metavar="NAME[,NAME]", help="sweep these thresholds only")
    parser.add_argument(
        "--write",
        nargs="?",
        const=DEFAULT_OUT,
        metavar="PATH",
        help=f"replace the section {CROSSOVER_HEADING!r} of PATH (default {DEFAULT_OUT}) with the tables",
    )
    parser.add_argument("--machine", default="", help="words on the machine, for the tables")
    args = parser.parse_args(argv)
    info, results = measure(_names(args.only), args.quick, args.machine)
    print(f"\nMeasured {info.date} on {info.where}; jax {info.jax_version}, backend {info.backend}\n")
    print("\n".join(summary_table(results, info)), flush=True)
    if args.write:
        with open(args.write) as f:
            document = replace_section(f.read(), CROSSOVER_HEADING, render_section(results, info))
        with open(args.write, "w") as f:
            f.write(document)
        print(f"wrote the section {CROSSOVER_HEADING!r} of {args.write}")


if __name__ == "__main__":
    main()

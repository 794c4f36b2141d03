"""The targets' check reads the right cells of a run's tables and says which fall short."""

from __future__ import annotations

import copy

from benchmarks import targets
from tests.test_benchmark import _fake_measurements


def _verdicts(m, implementation="convtrans"):
    return {v.target: v for v in targets.check(m) if v.implementation == implementation}


def _scale(m, dname, mode, shape_name, peer, factor):
    for shape, samples in m.tables[dname, mode]:
        if shape.name == shape_name:
            samples[peer] = [t * factor for t in samples[peer]]


def test_every_target_is_met_when_every_peer_is_far_slower():
    m = _fake_measurements()
    for rows in m.tables.values():
        for _, samples in rows:
            for peer in ("flax", "torch"):
                samples[peer] = [t * 20 for t in samples[peer]]
    verdicts = _verdicts(m)
    assert all(v.met and v.short == [] for v in verdicts.values())
    assert set(verdicts) == {
        targets.FORWARD[0],
        targets.BACKWARD_FLAX[0],
        targets.BACKWARD_TORCH[0],
        targets.TRAINING[0],
        targets.COMPILE[0],
    }


def test_a_layer_forward_slower_than_torch_fails_the_forward_target_and_is_named():
    m = _fake_measurements()  # every peer 2x convtrans's time
    _scale(m, "float32", "forward", "MelGAN", "torch", 0.4)  # torch now 0.8x convtrans's time
    verdict = _verdicts(m)[targets.FORWARD[0]]
    assert not verdict.met
    assert verdict.short == ["MelGAN float32 vs torch 0.80x"]
    assert verdict.worst == "MelGAN float32 vs torch 0.80x"


def test_the_flax_target_covers_strided_layers_of_16_or_more_input_channels_only():
    m = _fake_measurements()
    for rows in m.tables.values():
        for _, samples in rows:
            samples["flax"] = [t * 10 for t in samples["flax"]]  # 20x everywhere
    _scale(m, "float32", "forward+backward", "stride 1, dilation 2", "flax", 0.1)  # stride 1: not covered
    _scale(m, "float32", "forward+backward", "one-channel input layer", "flax", 0.1)  # 1 input channel
    assert _verdicts(m)[targets.BACKWARD_FLAX[0]].met
    _scale(m, "float32", "forward+backward", "MelGAN", "flax", 0.1)
    assert _verdicts(m)[targets.BACKWARD_FLAX[0]].short == ["MelGAN float32 vs flax 2.00x"]


def test_the_torch_target_is_a_geometric_mean_over_the_float32_layers():
    m = _fake_measurements()  # torch 2x on every layer
    verdict = _verdicts(m)[targets.BACKWARD_TORCH[0]]
    assert verdict.met and verdict.worst.startswith("geometric mean 2.00x")
    layers = len(m.tables["float32", "forward+backward"])
    _scale(m, "float32", "forward+backward", "MelGAN", "torch", 0.25)  # 0.5x on one layer
    mean = (2.0 ** (layers - 1) * 0.5) ** (1 / layers)
    verdict = _verdicts(m)[targets.BACKWARD_TORCH[0]]
    assert verdict.worst == f"geometric mean {mean:.2f}x over {layers} layers"
    assert verdict.met is (mean >= 1.5)
    assert "MelGAN float32 vs torch 0.50x" in verdict.short


def test_the_training_target_asks_for_1_5x_flax_and_1_2x_torch_in_every_thread_setting():
    m = _fake_measurements()  # whole models: flax 2x, torch 3-4x
    assert _verdicts(m)[targets.TRAINING[0]].met
    slow = copy.deepcopy(m)
    hifigan = slow.models.settings[0].models[0]
    hifigan.samples["forward+backward"]["torch"] = [11.0] * 3  # 1.1x torch at one thread
    verdict = _verdicts(slow)[targets.TRAINING[0]]
    assert verdict.short == ["1 thread vs torch 1.10x"]


def test_the_compile_target_allows_flax_s_time_plus_20_percent():
    m = _fake_measurements()  # convtrans 6 s (median), flax 5 s: exactly +20%
    assert _verdicts(m)[targets.COMPILE[0]].met
    for model in m.models.settings[1].models:  # the "2 threads" child measures compile times
        model.compile_s["convtrans"]["forward"] = [6.5] * 3
    verdict = _verdicts(m)[targets.COMPILE[0]]
    assert verdict.short == ["HiFi-GAN V1 forward 1.30x flax's time", "MelGAN forward 1.30x flax's time"]


def test_the_autotuned_plan_is_judged_on_its_own_columns():
    m = _fake_measurements()
    _scale(m, "float32", "forward", "MelGAN", targets.TUNED, 3.0)  # autotuned 3x slower than convtrans
    assert _verdicts(m)[targets.FORWARD[0]].met
    assert not _verdicts(m, targets.TUNED)[targets.FORWARD[0]].met


def test_the_section_has_one_row_per_target_and_plan():
    verdicts = targets.check(_fake_measurements())
    lines = targets.render(verdicts)
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| target")]
    assert len(rows) == len(verdicts)
    assert all(row.count(" | ") == 4 for row in rows)

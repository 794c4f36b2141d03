"""The whole-model benchmark (benchmarks/models.py): its implementations compute the same
generator, its child processes' results survive JSON, and its section of the document renders
from the numbers alone."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks import models as bm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MICRO_HIFIGAN = bm.ModelSpec(
    "micro HiFi-GAN",
    "hifigan",
    batch=2,
    frames=4,
    inference_frames=6,
    hyper=(
        ("upsample_initial_channel", 8),
        ("upsample_rates", (4, 2)),
        ("upsample_kernel_sizes", (8, 4)),
        ("resblock_kernel_sizes", (3,)),
        ("resblock_dilation_sizes", ((1, 3),)),
    ),
)
# An odd ratio: its transposed convolution has an output_padding.
MICRO_MELGAN = bm.ModelSpec(
    "micro MelGAN", "melgan", 2, 4, 6, hyper=(("ngf", 2), ("ratios", (3,)), ("n_residual_layers", 1))
)


def _weights(model, mel, seed):
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0), mel)["params"]
    return jax.tree.map(lambda leaf: jnp.asarray(rng.standard_normal(leaf.shape) * 0.3, leaf.dtype), shapes)


def _relative_error(got, want):
    return float(np.abs(np.asarray(got) - np.asarray(want)).max() / np.abs(np.asarray(want)).max())


def test_the_hifigan_on_flax_conv_transpose_and_in_torch_take_the_same_weights_and_compute_the_same():
    convtrans_model = bm.flax_model(MICRO_HIFIGAN, bm.convtrans_conv_transpose)
    flax_model = bm.flax_model(MICRO_HIFIGAN, bm.flax_conv_transpose)
    mel = np.random.default_rng(0).standard_normal((1, 5, 80)).astype(np.float32)
    params = _weights(convtrans_model, jnp.asarray(mel), seed=1)
    flax_shapes = jax.eval_shape(flax_model.init, jax.random.key(0), mel)["params"]
    assert jax.tree.map(lambda a: a.shape, flax_shapes) == jax.tree.map(lambda a: a.shape, params)
    want = jax.jit(convtrans_model.apply)({"params": params}, mel)
    assert _relative_error(jax.jit(flax_model.apply)({"params": params}, mel), want) < 1e-5
    with torch.no_grad():
        got = bm.torch_model(MICRO_HIFIGAN, convtrans_model, params)(torch.from_numpy(mel.transpose(0, 2, 1).copy()))
    assert _relative_error(got.numpy().transpose(0, 2, 1), want) < 1e-5


def test_measure_model_checks_every_implementation_and_samples_every_mode(capsys):
    # MelGAN: its odd ratio gives the flax and torch layers an output_padding.
    result = bm.measure_model(MICRO_MELGAN, repeats=2, target_s=1e-4, compile_repeats=0)
    every = {"convtrans", "convtrans autotuned", "flax", "torch"}
    assert set(result.errors) == every  # it raises where one differs by > 1e-4
    assert 0 < max(result.errors.values()) <= 1e-4
    assert list(result.samples) == bm.MODES
    for samples in result.samples.values():
        assert set(samples) == every
        assert all(len(v) == 2 and min(v) > 0 for v in samples.values())
    assert result.compile_s == {}
    assert result.inputs["batch-1 inference"] == "B1 x 6 frames"
    assert "micro MelGAN, forward+backward" in capsys.readouterr().out


def test_compile_seconds_compiles_afresh_each_time_inside_the_variants_context():
    entered = []
    variant = bm.JaxVariant("traced", bm.convtrans_conv_transpose, lambda: _Recorder(entered))
    traces = []

    def fn(x):
        traces.append(1)
        return x * 2

    seconds = bm.compile_seconds(variant, fn, (jnp.ones(3),), repeats=2)
    assert len(seconds) == 2 and min(seconds) > 0
    assert len(traces) == 2 and len(entered) == 2


class _Recorder:
    def __init__(self, entered):
        self.entered = entered

    def __enter__(self):
        self.entered.append(1)

    def __exit__(self, *exc):
        return False


def test_a_tune_target_is_a_training_gradient_and_its_arguments():
    fn, args = bm._tune_target(MICRO_HIFIGAN)
    loss, grads = jax.eval_shape(fn, *args)
    assert loss.shape == ()
    assert jax.tree.structure(grads) == jax.tree.structure(args[0])
    assert callable(bm.hifigan_v1_tune_target) and callable(bm.melgan_tune_target)


# --- child processes -----------------------------------------------------------------------------


def _fake_setting(name="2 threads", scale=1.0, compile_s=True):
    def samples(convtrans_ms):
        return {
            "convtrans": [convtrans_ms * scale] * 3,
            "flax": [2 * convtrans_ms * scale] * 3,
            "torch": [3 * convtrans_ms * scale, 4 * convtrans_ms * scale, 3 * convtrans_ms * scale],
        }

    models = [
        bm.ModelResult(
            model=name_,
            parameters=parameters,
            inputs={"forward": "B2 x 32 frames", "forward+backward": "B2 x 32 frames", "batch-1 inference": "B1 x 128"},
            errors={"convtrans": 0.0, "flax": 1e-7, "torch": 2e-7},
            samples={mode: samples(10.0) for mode in bm.MODES},
            compile_s={"convtrans": {p: [6.0, 5.0, 7.0] for p in bm.PROGRAMS}, "flax": {p: [5.0] for p in bm.PROGRAMS}}
            if compile_s
            else {},
        )
        for name_, parameters in [("HiFi-GAN V1", 13.9e6), ("MelGAN", 4.3e6)]
    ]
    environment = {
        "jax": "0.0",
        "torch": "0.0",
        "device": "cpu",
        "backend": "cpu",
        "torch threads": "2",
        "cpus": "[0, 1]",
        "processor": "x86_64",
    }
    return bm.SettingResult(name, bm.SETTINGS[name].how, {"jax": 2, "torch": 2}, environment, models)


def fake_models_run(date="2000-01-03"):
    settings = [_fake_setting(name, compile_s=name == "2 threads") for name in bm.CPU_SETTINGS]
    return bm.ModelsRun(date=date, quick=False, compile_repeats=3, settings=settings)


def test_a_childs_result_round_trips_through_json():
    result = _fake_setting()
    assert bm.SettingResult.from_json(result.to_json()) == result


def test_the_section_renders_every_setting_and_the_compile_times_from_fake_measurements():
    lines = bm.render_models(fake_models_run())
    text = "\n".join(lines)
    assert lines[0] == bm.METHOD
    assert "Measured 2000-01-03 on x86_64, CPUs [0, 1]" in text
    for name in bm.CPU_SETTINGS:
        assert f"### {name}: median ms" in text
    rows = [line for line in lines if line.startswith("| HiFi-GAN V1 | forward+backward | B2")]
    assert len(rows) == len(bm.CPU_SETTINGS)
    # convtrans 10 ms, flax 20, torch 30/40/30 per round: x flax 2.00, x torch 3.00, per round 3.00-4.00
    assert rows[0] == "| HiFi-GAN V1 | forward+backward | B2 x 32 frames | 10 | 20 | 30 | 2.00 | 3.00 | 3.00-4.00 |"
    assert text.count("### Compile times") == 1
    assert "| HiFi-GAN V1 | forward | 6.00 | 5.00 | 1.20 |" in lines  # medians of 6, 5, 7 and of 5
    assert "Threads busy in a 2048^3 GEMM in this child: jax 2, torch 2." in text


def test_a_child_process_applies_its_thread_setting_before_jax_and_torch_start():
    code = (
        "from benchmarks import models as bm\n"
        "bm.enter_setting(bm.SETTINGS['1 thread'])\n"
        "import os, torch\n"
        "print(bm._gemm_threads(), torch.get_num_threads(), len(os.sched_getaffinity(0)))\n"
    )
    env = bm.child_environment()  # without the suite's eight simulated devices, which enlarge XLA's pool
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=120
    ).stdout
    assert out.split()[-2:] == ["1", str(len(os.sched_getaffinity(0)))]  # affinity given back
    assert out.startswith("{'jax': 1, 'torch': 1}")


def test_gpu_sh_parses_and_refuses_a_python_without_cuda(tmp_path):
    script = os.path.join(ROOT, "benchmarks", "gpu.sh")
    subprocess.run(["bash", "-n", script], check=True)
    # `false` as the PYTHON fails the check for jax and torch on CUDA, as a CPU-only python does.
    out = dict(os.environ, OUT=str(tmp_path))
    refused = subprocess.run(["bash", script, "false"], capture_output=True, text=True, timeout=60, env=out)
    assert refused.returncode == 1
    assert "no jax or torch that sees a CUDA GPU" in refused.stderr

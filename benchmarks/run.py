"""convtrans against every peer: forward and forward+backward under jit, in one process.

Usage: ``python -m benchmarks.run [--quick] [--out docs/performance.md] [--machine TEXT]``
(``make bench``). Writes docs/performance.md, the whole of it: the method (:data:`METHOD`), the
run's header, the plan of every benchmark shape, the thresholds of
``convtrans._src.dispatch.THRESHOLDS`` with their provenance, the layer timing tables, the
streaming benchmark (benchmarks/streaming.py) and the whole-model tables (benchmarks/models.py);
the section that benchmarks/crossover.py writes is carried over from the existing document.
:func:`measure` does all the timing; :func:`render` writes the document from its numbers alone.
``--streaming-only`` and ``--models-only`` measure one of those two and rewrite its section alone.

Runs on a CUDA GPU too (``benchmarks/gpu.sh``): torch then runs on the GPU as well, and is timed
with ``torch.cuda.synchronize``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import jax.numpy as jnp
import numpy as np

import convtrans as ct
from benchmarks import targets
from benchmarks.models import MODELS_HEADING, ModelsRun, measure_models, render_models
from benchmarks.streaming import StreamRow, measure_streaming, render_streaming
from benchmarks.targets import TARGETS_HEADING
from convtrans._src import autotune
from convtrans._src.dispatch import THRESHOLDS
from convtrans._src.geometry import full_result_offset, output_length, transpose_pads
from convtrans._src.plan_cache import PlanCache

STREAMING_HEADING = "## Streaming a whole vocoder"
# Written by benchmarks/crossover.py (--write); a run of this module carries it over unchanged.
CROSSOVER_HEADING = "## The sweep behind the thresholds"
CROSSOVER_PLACEHOLDER = (
    "No sweep recorded yet: `make crossover` re-derives every threshold on this machine and prints "
    "the proposals beside the current values; `python -m benchmarks.crossover --write` also "
    "writes them here."
)


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    batch: int
    steps: int
    cin: int
    cout: int
    k: int
    s: int = 1
    d: int = 1
    padding: str = "same"

    def config(self) -> ct.Conv1DTransposeConfig:
        return ct.Conv1DTransposeConfig(
            filters=self.cout, kernel_size=self.k, strides=self.s, padding=self.padding, dilation_rate=self.d
        )

    def flops(self) -> float:
        return 2.0 * self.batch * self.steps * self.cin * self.cout * self.k


SHAPES = [
    Shape("HiFi-GAN stage 1", 4, 64, 512, 256, 16, 8),
    Shape("HiFi-GAN stage 3", 4, 2048, 128, 64, 4, 2),
    Shape("MelGAN", 8, 256, 256, 128, 16, 8),
    Shape("small channels", 16, 4096, 16, 16, 9, 2),
    Shape("stride 1, dilation 2", 8, 1024, 64, 64, 3, 1, 2),
    Shape("batch-1 inference", 1, 256, 512, 256, 16, 8),
    Shape("short wide input", 1, 50, 512, 256, 16, 8),
    Shape("one-channel input layer", 2, 4000, 1, 16, 25, 4),
]
SWEEP = [Shape(f"L=2^{p}", 1, 2**p, 16, 16, 16, 8) for p in range(10, 19, 2)]
BF16_SHAPES = [SHAPES[1], SHAPES[2]]


# --- peers: each returns (forward, forward_backward), taking no arguments ------------------------


def _cotangent(shape, dtype):
    return jnp.asarray(np.cos(np.arange(math.prod(shape))).reshape(shape), dtype)


def _jax_pair(apply: Callable, params, x):
    """Jitted forward and vjp (grads for params and input) of ``apply(params, x)``."""
    y = apply(params, x)
    cotangent = _cotangent(y.shape, y.dtype)
    forward = jax.jit(apply)

    @jax.jit
    def forward_backward(params, x, cotangent):
        # The output is returned too: a linear layer's gradients do not need it, so XLA would
        # otherwise drop the forward pass, which a training step (and torch's timing) includes.
        # The cotangent is an argument, not a closed-over constant, so that nothing of the
        # backward pass (the bias gradient, say) is constant-folded at compile time.
        y, vjp = jax.vjp(apply, params, x)
        return y, vjp(cotangent)

    return (lambda: forward(params, x)), (lambda: forward_backward(params, x, cotangent)), y


def convtrans_peer(shape, kernel, bias, x, dtype, implementation):
    config = shape.config()
    params = {"kernel": jnp.asarray(kernel, dtype), "bias": jnp.asarray(bias, dtype)}

    def apply(params, x):
        return ct.conv1d_transpose(params, x, config, implementation=implementation)[0]

    return _jax_pair(apply, params, jnp.asarray(x, dtype))


def flax_peer(shape, kernel, bias, x, dtype):
    import flax.linen as nn

    module = nn.ConvTranspose(
        features=shape.cout,
        kernel_size=(shape.k,),
        strides=(shape.s,),
        padding=[tuple(transpose_pads(shape.config()))],
        kernel_dilation=(shape.d,),
        transpose_kernel=True,
        dtype=dtype,
        param_dtype=dtype,
    )
    params = {"params": {"kernel": jnp.asarray(kernel, dtype), "bias": jnp.asarray(bias, dtype)}}
    return _jax_pair(module.apply, params, jnp.asarray(x, dtype))


def keras_peer(shape, kernel, bias, x, dtype):
    import keras

    layer = keras.layers.Conv1DTranspose(**shape.config().to_keras(), dtype=str(jnp.dtype(dtype)))
    layer.build((None, shape.steps, shape.cin))
    layer.set_weights([np.asarray(kernel), np.asarray(bias)])
    weights = [jnp.asarray(v.value, dtype) for v in layer.trainable_variables]

    def apply(weights, x):
        return layer.stateless_call(weights, [], x)[0]

    return _jax_pair(apply, weights, jnp.asarray(x, dtype))


def _crops(shape):
    """``(crop_left, crop_right)`` of the full result that give the Keras-mode output."""
    config = shape.config()
    left = full_result_offset(config)
    full = (shape.steps - 1) * shape.s + config.effective_kernel_size
    return left, full - left - output_length(config, shape.steps)


def equinox_peer(shape, kernel, bias, x, dtype):
    import equinox as eqx

    left, right = _crops(shape)
    layer = eqx.nn.ConvTranspose1d(
        shape.cin,
        shape.cout,
        shape.k,
        stride=shape.s,
        padding=((left, max(right, 0)),),
        output_padding=max(-right, 0),
        dilation=shape.d,
        key=jax.random.key(0),
        dtype=dtype,
    )
    # equinox weight (out, in, k) holds the taps in the order of the equivalent forward conv.
    weight = jnp.asarray(np.flip(np.transpose(kernel, (1, 2, 0)), axis=2), dtype)
    layer = eqx.tree_at(lambda m: (m.weight, m.bias), layer, (weight, jnp.asarray(bias, dtype).reshape(shape.cout, 1)))

    def apply(layer, x):  # x: (batch, steps, cin) -> (batch, out, cout)
        return jax.vmap(layer)(x.transpose(0, 2, 1)).transpose(0, 2, 1)

    return _jax_pair(apply, layer, jnp.asarray(x, dtype))


def torch_device() -> str:
    """Where torch runs: on the GPU when jax's default backend is one, else on the CPU."""
    return "cuda" if jax.default_backend() == "gpu" else "cpu"


def torch_peer(shape, kernel, bias, x, dtype):
    import torch

    torch.set_num_threads(2)
    device = torch_device()
    tdtype = {jnp.float32: torch.float32, jnp.bfloat16: torch.bfloat16}[dtype]
    left, right = _crops(shape)
    module = torch.nn.ConvTranspose1d(
        shape.cin,
        shape.cout,
        shape.k,
        stride=shape.s,
        padding=left,
        output_padding=max(left - right, 0),
        dilation=shape.d,
    )
    module = module.to(device=device, dtype=tdtype)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.ascontiguousarray(np.transpose(kernel, (2, 1, 0)))))
        module.bias.copy_(torch.from_numpy(np.asarray(bias)))
    xt = torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 2, 1)))).to(device=device, dtype=tdtype)
    xt.requires_grad_(True)
    steps = output_length(shape.config(), shape.steps)
    with torch.no_grad():
        y = module(xt)
    cotangent = torch.cos(torch.arange(y.numel(), dtype=torch.float64)).reshape(y.shape).to(device=device, dtype=tdtype)

    def forward():
        with torch.no_grad():
            return module(xt)

    def forward_backward():
        return torch.autograd.grad(module(xt), (module.weight, module.bias, xt), cotangent)

    y = jnp.asarray(y[:, :, :steps].float().cpu().numpy().transpose(0, 2, 1), dtype)
    return forward, forward_backward, y


def autotuned_peer(shape, kernel, bias, x, dtype):
    """convtrans with the plan autotuning chooses for this shape on this machine (timed now, into
    the run's own plan cache), forced, so that its programs are the autotuned layer's."""
    from convtrans import tune

    tuned = tune.tune_layer(shape.config(), (shape.batch, shape.steps, shape.cin), dtype)
    TUNED_PLANS[label(shape), jnp.dtype(dtype).name] = tuned.plan
    return convtrans_peer(shape, kernel, bias, x, dtype, implementation=tuned.plan)


# The plan autotuning chose for each (shape label, dtype name) in this run.
TUNED_PLANS: dict[tuple[str, str], ct.Plan] = {}
TUNED = "autotuned"

PEERS = {
    "flax": flax_peer,
    "keras": keras_peer,
    "equinox": equinox_peer,
    "torch": torch_peer,
    "reference": lambda *a: convtrans_peer(*a, implementation="lhs_dilation"),
    TUNED: autotuned_peer,
    "convtrans": lambda *a: convtrans_peer(*a, implementation=None),
}
# The peers timed in bfloat16 (convtrans last, as in PEERS: the ratio columns are the others).
BF16_PEERS = ["flax", "torch", "reference", TUNED, "convtrans"]


# --- timing --------------------------------------------------------------------------------------


def _block(result):
    """``result`` once computed: jax arrays are waited for; torch tensors on the CPU are ready when
    returned, and on a GPU the device is synchronized."""
    first = result[0] if isinstance(result, tuple) and result else result
    if not hasattr(first, "__torch_function__"):
        return jax.block_until_ready(result)
    if first.device.type == "cuda":
        import torch

        torch.cuda.synchronize()
    return result


def _calibrate(fn, target_s):
    _block(fn())
    start = time.perf_counter()
    _block(fn())
    once = time.perf_counter() - start
    return max(1, int(target_s / max(once, 1e-6)))


# After its last call an implementation's worker threads keep spinning for several ms (torch's
# OpenMP pool, XLA's Eigen pool); on 2 cores that slowed the next implementation's first calls by
# up to 50% (measured), which in a round-robin always penalized the same neighbour. Each sample
# therefore starts with this many seconds of untimed calls of its own implementation.
WARM_S = 0.02


def _warm(fn: Callable) -> None:
    end = time.perf_counter() + WARM_S
    while True:
        _block(fn())
        if time.perf_counter() >= end:
            return


def time_interleaved(fns: dict[str, Callable], repeats: int, target_s: float) -> dict[str, list[float]]:
    """Milliseconds per call of each function, one sample per round of a round-robin.

    ``samples[name][r]`` was taken in round ``r``, in which every function was sampled once.
    """
    inner = {name: _calibrate(fn, target_s) for name, fn in fns.items()}
    samples = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn, count = fns[name], inner[name]
            _warm(fn)
            start = time.perf_counter()
            for _ in range(count):
                out = fn()
            _block(out)
            samples[name].append((time.perf_counter() - start) / count * 1e3)
    return samples


def medians(samples: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(v) for name, v in samples.items()}


def round_ratios(samples: dict[str, list[float]], peer: str, base: str = "convtrans") -> list[float]:
    """``peer``'s time over ``base``'s in each round of :func:`time_interleaved`."""
    return [p / b for p, b in zip(samples[peer], samples[base], strict=True)]


def _square_gemm_gflops(matmul: Callable, a, repeats: int) -> float:
    """GFLOP/s of ``matmul(a, a)`` for a 2048x2048 ``a``."""
    ms = medians(time_interleaved({"gemm": lambda: matmul(a, a)}, repeats, 0.2))["gemm"]
    return 2 * 2048**3 / (ms * 1e-3) / 1e9


def _square_matrix():
    return np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)


def gemm_peak_gflops(repeats: int, dtype=jnp.float32) -> float:
    """GFLOP/s of a 2048^3 ``jnp.dot`` in ``dtype``; 16-bit operands accumulate in float32, the
    fastest form XLA offers them (on CPUs with bfloat16 dot-product instructions, 2x float32)."""
    dot = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    return _square_gemm_gflops(dot, jnp.asarray(_square_matrix(), dtype), repeats)


def torch_gemm_peak_gflops(repeats: int) -> float:
    """GFLOP/s of a float32 2048^3 ``torch.matmul`` (2 threads, or on the GPU): torch's own ceiling."""
    import torch

    torch.set_num_threads(2)
    return _square_gemm_gflops(torch.matmul, torch.from_numpy(_square_matrix()).to(torch_device()), repeats)


# --- one shape -----------------------------------------------------------------------------------


def build(shape: Shape, dtype, peers: list[str]):
    rng = np.random.default_rng(0)
    kernel = (rng.standard_normal((shape.k, shape.cout, shape.cin)) / math.sqrt(shape.k * shape.cin / shape.s)).astype(
        np.float32
    )
    bias = rng.standard_normal(shape.cout).astype(np.float32)
    x = rng.standard_normal((shape.batch, shape.steps, shape.cin)).astype(np.float32)
    built = {name: PEERS[name](shape, kernel, bias, x, dtype) for name in peers}
    want = np.asarray(
        ct.conv1d_transpose(
            {"kernel": kernel, "bias": bias}, jnp.asarray(x), shape.config(), implementation="lhs_dilation"
        )[0]
    )
    tol = 2e-3 if dtype == jnp.float32 else 0.1
    for name, (_, _, y) in built.items():
        np.testing.assert_allclose(
            np.asarray(y, np.float32),
            want,
            rtol=tol,
            atol=tol,
            err_msg=f"{name} differs from convtrans's reference on {shape}",
        )
    return built


def fmt(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def label(shape: Shape) -> str:
    return (
        f"{shape.name} (B{shape.batch} L{shape.steps} {shape.cin}->{shape.cout} "
        f"k{shape.k} s{shape.s}{f' d{shape.d}' if shape.d > 1 else ''})"
    )


# --- the document's fixed text -------------------------------------------------------------------

TITLE = "# convtrans performance"

INTRO = (
    "This file is the record of one benchmark run of convtrans against its peers (flax, Keras on "
    "JAX, equinox, torch and convtrans's own reference): how it measures, what ran, the plan "
    "convtrans chose for every benchmark shape, every threshold of that choice with the "
    "measurement behind it, and the timings, of single layers and of whole vocoder generators "
    "(HiFi-GAN V1 and MelGAN against the same models on flax's ConvTranspose and in torch, under "
    "several thread settings, with compile times). It is written, all of it, by `make bench` "
    "(`python -m benchmarks.run`, benchmarks/run.py), which regenerates it from a fresh run; do "
    "not edit it by hand: change the text in benchmarks/run.py or the thresholds in "
    "convtrans/_src/dispatch.py, and rerun."
)

METHOD = (
    "Every implementation of a shape is built from the same Keras-layout weights, and its output "
    'is checked equal to convtrans\'s reference (`implementation="lhs_dilation"`) before anything '
    "is timed. All implementations run in one process and are timed interleaved, round-robin (the "
    "order rotates each round), so that changes of the machine's load hit all of them alike. Each "
    f"sample starts with {WARM_S * 1e3:.0f} ms of untimed calls of its own implementation (a "
    "warm-up: after its last call an implementation's worker threads, torch's OpenMP pool or "
    "XLA's Eigen pool, keep spinning for several milliseconds, and on 2 cores that slowed the next "
    "implementation's first calls by up to 50%, measured), then is the mean of enough calls to "
    "last a few milliseconds; the tables quote the median of the samples. Because one round "
    "samples every implementation within a few seconds, the ratio of two implementations' samples "
    "in the same round is less exposed to slow changes of the load than the ratio of their "
    "medians, so next to the ratios of medians each table gives the lowest and highest per-round "
    'ratio against torch: the noise of that cell, read off the run itself. "forward+backward" '
    "returns the output and the gradients for the kernel, the bias and the input, with the "
    "cotangent passed as an argument (a closed-over constant would let XLA fold part of the "
    "backward pass at compile time). Useful work is `2 * B * L * Cin * Cout * k` FLOPs forward "
    "(`L` input steps), three times that forward+backward; the GFLOP/s it gives are compared with "
    "the GEMM peak of the same dtype (`jnp.dot` of two 2048x2048 matrices) measured in the same "
    "run. Where Winograd's form does 3/4 or 2/3 of those multiplications the useful rate can "
    "exceed that peak.\n\n"
    "The machines these runs use are shared with other work, noisy, and not all alike: read "
    "ratios near 1 as ties, and compare runs only with their header. Machines also differ in "
    "which form wins (an AMD EPYC and an Intel Sapphire Rapids have given different winners), so "
    "a threshold measured on one machine is a hypothesis on another until it is measured there."
)

PLAN_CHANGES = (
    "Since the previous full run (also 2026-12-02), a stride-1 layer hands its zero padding to "
    "the convolution instead of padding the input first; for channels-last inputs XLA already "
    "folded the pad into the convolution, so no benchmark shape (all channels-last) changed. The "
    "run before that followed three changes, all on CPU. The GEMM form now multiplies by the kernel "
    "where it lies, a `(k * filters, in)` matrix contracted along its last axis: its product had a "
    "size-1 batch axis, for which XLA:CPU first copied the whole kernel into `(in, k * filters)`, "
    "and for a short input that copy cost more than the product (B1 L50 512->256 k16 s8 forward: "
    "4.5 ms with the copy, 1.8 ms without; torch 3.0 ms; measured alone, interleaved, on "
    "2026-12-02). From `GEMM_MIN_CHANNELS` (512) the forward pass is now the GEMM form's even where "
    "Winograd applies, the gradients staying Winograd's: at 512 channels and 50 to 256 steps "
    "(HiFi-GAN's first upsampler, batch-1 inference, the short wide input) it was 1.1x-2x faster "
    "than Winograd's forward, which transforms the whole kernel for every call, and 0.8x-0.9x at "
    "128 and 256 channels. Winograd's forward now starts at `WINOGRAD_FORWARD_MIN_CHANNELS` (128), "
    "its gradients still at `WINOGRAD_MIN_CHANNELS` (64): in the sweep of 2026-12-01 its forward "
    "was 0.86x and 0.90x the polyphase convolution at 64 channels on two of the three geometries "
    "(k16 s8, k3 s1 d2) and 1.0x-1.28x from 128."
    "\n\n"
    "The other values were left as they are. The sweep above (2026-12-02, run while another job "
    "shared the machine) proposes WINOGRAD_MIN_CHANNELS 256 or no crossover, "
    "WINOGRAD_FORWARD_MIN_CHANNELS 96, GEMM_MIN_CHANNELS 384, ZERO_PADDED_MAX_CHANNELS 8, "
    "STACKED_PRODUCT_MIN_CHANNELS 64 (as shipped) and memory bounds of 4 and 8 MiB; the sweep of "
    "2026-12-01 on the same machine proposed 256, 256, 16 and 8 or less for the first four it had. "
    "Per-round ratios spread from about 0.3x to 3x at many points, so a 5% margin is inside the "
    "noise of this shared machine, and consecutive sweeps disagree. A value changes when a sweep "
    "on a quiet machine, or on the machine a user cares about, says so; where that differs from "
    "ours, `convtrans.autotune` measures each layer on the machine itself."
)

XLA_BOUNDS = (
    "Two targets against torch are bounded by XLA:CPU's matrix products rather than by the plan "
    "(measured on the products alone on 2026-11-24/25, on the project's shared 2-core AMD EPYC "
    "with AVX-512 and AVX-512 BF16, jax 0.10.2, torch 2.13.0 with 2 threads). HiFi-GAN stage 3 "
    "and MelGAN forward+backward: their weight-gradient products contract over the rows of both "
    "operands (JAX's transpose rule puts the cotangent first), which XLA:CPU does not hand to its "
    "YNNPACK kernels and runs at a lower rate: stage 3's products (4100 rows, 128 by 128) at 127 "
    "GFLOP/s against 177 for the same product from an operand already transposed, MelGAN's (1032 "
    "rows, 256 by 1024) at 181 against 207; they take about 40% of stage 3's training step, and "
    "as a third of its multiplications at 65% of the GEMM peak they cap the step at 85% of it "
    "(1.38x torch) even with every other product at the peak, while MelGAN's nine products at "
    "those rates take 24.7 ms of the 26.3 ms that 1.5x torch allows. Splitting the rows into two "
    "products, or multiplying a transposed copy kept apart by `lax.optimization_barrier`, was "
    "tried and not adopted (within noise, or slower elsewhere). Stride 1 with dilation 2 (64 "
    "channels): its weight gradient's four Winograd products have 64 by 64 outputs, which "
    "XLA:CPU barely spreads over the second core in any orientation (4096 rows: 0.38-0.43 ms, "
    "0.36 ms from an operand already transposed, 0.50 ms pinned to one core), so they take 1.5 ms "
    "of a 2.0-2.5 ms weight gradient where torch's oneDNN computes the whole of it in 1.4-1.6 ms; "
    "one batched product, two products of half the rows, or one product of the three stacked "
    "shifted windows were no faster, and the `XLA_FLAGS` that hand products to other libraries "
    "(`--xla_cpu_use_onednn`, `--xla_cpu_use_xnnpack`, "
    "`--xla_cpu_experimental_onednn_custom_call`) left every orientation's rate as it was.\n\n"
    "The whole HiFi-GAN V1 training step against torch is bounded by its stride-1 convolutions, "
    "not by its transposed ones. Nearly all of its multiplications are in the residual blocks' "
    "`Conv1D` layers (kernels 3, 7 and 11, dilations 1, 3 and 5), which are XLA's own convolutions "
    "(`lax.conv_general_dilated`), the same in convtrans and in the flax model. Timed alone "
    "(2026-12-01, same machine, 2 threads, batch 2 at the benchmark's lengths, forward+backward, "
    "the 28 distinct shapes of the model), XLA's convolution took 181 ms where torch's took 151 "
    "(0.83x; 0.50x-1.31x per shape, most between 0.7x and 0.95x): the whole step's ratio to torch "
    "in the tables above (0.8x-0.95x) is that ratio, and 1.2x torch would need those convolutions "
    "1.45x faster than XLA runs them. The transposed layers are where convtrans makes the step "
    "1.4x-1.7x faster than on flax's `ConvTranspose`.\n\n"
    "Stride 1 with dilation 2, forward, against flax: the two run the same XLA convolution. "
    "Compiled, both programs are the convolution (window 3, pads 2 and 2, kernel dilation 2; a "
    "test reads convtrans's), a flip and transpose of the small kernel, and the bias add; "
    "convtrans adds one reduction over the kernel's 12,288 entries, which gives a non-finite "
    "kernel entry the same effect in every plan (its whole output channel is NaN). Timed alone, "
    "interleaved, three times (2026-12-02, same machine, 2 threads), the layer took 1.42-1.57 ms "
    "in flax and 1.45-1.57 ms in convtrans, 0.98x, and 0.98x-1.00x with that reduction left out; "
    "the tables' 0.94x-0.95x in two full runs are that tie plus the noise of a run. The autotuned "
    "column's Winograd forward there is slower than the convolution in the tables: its candidates "
    "were timed within 5% of each other, and the noise of this shared machine decided.\n\n"
    "Compile time: the Winograd and GEMM forms that make the CPU plan fast are more XLA "
    "operations than one convolution, and XLA:CPU compiles each fusion separately. One HiFi-GAN "
    "layer (B4 L2048 128->64 k4 s2) compiled its forward in 0.35-0.5 s with Winograd's form "
    "against 0.1-0.2 s as the reference's one convolution (61 StableHLO operations, 12 fusions "
    "after optimization; measured on 2026-12-01 on the same machine with another job running), "
    "and its gradients are two more such computations. The forward programs compile within 20% "
    "of flax's; the training steps, where every upsampler of 64 or more input channels takes "
    "Winograd's gradients, take 1.1x-1.45x flax's compile time, and which of the two generators "
    "is over 1.2x changes from run to run (HiFi-GAN V1 1.43x and MelGAN 1.13x in the full run "
    "before this one, 1.12x and 1.41x in this one, three compiles each; two shorter runs the same "
    "day gave HiFi-GAN V1 1.26x and 1.65x). With every part of every layer on convolutions "
    "(`implementation=convtrans.Plan()`), one HiFi-GAN upsampler's training step compiled in "
    "0.20-0.26 s against 0.31-0.46 s with the default plan and 0.16 s with flax (batch 2, medians "
    "of five compiles), and the whole HiFi-GAN V1 step ran as fast as with the default plan in "
    "one interleaved run (501 against 507 ms; MelGAN 149 against 135 ms). Compiled once, the step "
    "runs 1.5x-4x faster than flax's (MelGAN in this run: 1.3 s more to compile and 0.28 s less "
    "per step at 2 threads; HiFi-GAN V1: 0.5 s more and 0.26 s less), so those seconds are "
    "repaid within the first five steps; a plan of fewer operations (the plain polyphase "
    "convolution compiles as fast as the reference) would trade the run-time speed-ups of the "
    "tables for them, and we keep the faster plan."
)

SECTIONS = (
    "Method",
    "The run",
    "What runs for each benchmark shape",
    "Thresholds and their provenance",
    CROSSOVER_HEADING[3:],
    "Changes to the plan",
    "Results",
    STREAMING_HEADING[3:],
    MODELS_HEADING[3:],
    TARGETS_HEADING[3:],
    "Where XLA bounds a target",
)


# --- measuring -----------------------------------------------------------------------------------

# (dtype, shapes, peers: convtrans last, the ratio columns are the others)
TABLES = [(jnp.float32, SHAPES, list(PEERS)), (jnp.bfloat16, BF16_SHAPES, BF16_PEERS)]
MODES = [("forward", 0, 1), ("forward+backward", 1, 3)]  # (name, index in a peer's pair, FLOP factor)


@dataclasses.dataclass
class Measurements:
    """Everything one run measured: :func:`render` writes the document from this alone."""

    date: str
    machine: str
    cpus: int
    processor: str
    jax_version: str
    backend: str
    device: str  # jax's first device's kind
    default_implementation: str
    quick: bool
    repeats: int
    gemm_gflops: dict[str, float]  # "float32", "bfloat16" (jnp.dot), "torch float32"
    # (dtype name, mode) -> one (shape, samples) per row; samples[peer][r]: ms per call in round r.
    tables: dict[tuple[str, str], list[tuple[Shape, dict[str, list[float]]]]]
    sweep: list[tuple[Shape, dict[str, float]]]  # forward+backward median ms of torch and convtrans
    streaming: tuple[dict, list[StreamRow]]  # HiFi-GAN V1 real-time factors (benchmarks/streaming.py)
    models: ModelsRun  # whole generators under each thread setting (benchmarks/models.py)
    tuned_plans: dict[str, ct.Plan] = dataclasses.field(default_factory=dict)  # "label | dtype" -> plan


def _ratio_columns(peers: list[str]) -> list[tuple[str, str]]:
    """``(ours, peer)`` per ratio column: convtrans against every other peer, then the autotuned
    plan against torch and flax."""
    columns = [("convtrans", p) for p in peers[:-1] if p != TUNED]
    if TUNED in peers:
        columns += [(TUNED, p) for p in ("torch", "flax") if p in peers]
    return columns


def _table_header(mode: str, dname: str, peers: list[str]) -> list[str]:
    ratios = [f"x {p}" if ours == "convtrans" else f"{ours} x {p}" for ours, p in _ratio_columns(peers)]
    return [
        f"### {mode}, {dname}: median ms (speed-up of convtrans = peer ms / convtrans ms)",
        "",
        "| shape | " + " | ".join(peers + ratios) + " | x torch per round | GFLOP/s | % GEMM peak |",
        "|---" * (1 + len(peers) + len(ratios) + 3) + "|",
    ]


def _table_row(shape: Shape, samples: dict[str, list[float]], factor: int, peak: float) -> str:
    peers = list(samples)
    ms = medians(samples)
    per_round = round_ratios(samples, "torch")
    gflops = factor * shape.flops() / (ms["convtrans"] * 1e-3) / 1e9
    return (
        f"| {label(shape)} | "
        + " | ".join(fmt(ms[p]) for p in peers)
        + " | "
        + " | ".join(f"{ms[p] / ms[ours]:.2f}" for ours, p in _ratio_columns(peers))
        + f" | {min(per_round):.2f}-{max(per_round):.2f}"
        + f" | {gflops:.0f} | {100 * gflops / peak:.0f}% |"
    )


def _sweep_row(shape: Shape, ms: dict[str, float]) -> str:
    return (
        f"| {shape.steps} | {fmt(ms['convtrans'])} | {1e6 * ms['convtrans'] / shape.steps:.0f} | "
        f"{fmt(ms['torch'])} | {1e6 * ms['torch'] / shape.steps:.0f} |"
    )


def measure(quick: bool, machine: str) -> Measurements:
    """Time every peer on every benchmark shape (printing each row as it is measured)."""
    repeats = 5 if quick else 11
    target = 0.002 if quick else 0.005
    peaks = {
        "float32": gemm_peak_gflops(repeats),
        "bfloat16": gemm_peak_gflops(repeats, jnp.bfloat16),
        "torch float32": torch_gemm_peak_gflops(repeats),
    }
    tables = {}
    # Autotuning starts from an empty plan cache of this run's own.
    tune_cache = tempfile.TemporaryDirectory()
    autotune.CACHE = PlanCache(tune_cache.name)
    TUNED_PLANS.clear()
    for dtype, shapes, dtype_peers in TABLES:
        dname = jnp.dtype(dtype).name
        for mode, index, factor in MODES:
            rows = tables[dname, mode] = []
            for shape in shapes:
                built = build(shape, dtype, dtype_peers)
                samples = time_interleaved({n: b[index] for n, b in built.items()}, repeats, target)
                rows.append((shape, samples))
                print(f"{mode}, {dname}: " + _table_row(shape, samples, factor, peaks[dname]), flush=True)
    tune_cache.cleanup()
    sweep = []
    for shape in SWEEP:
        built = build(shape, jnp.float32, ["torch", "convtrans"])
        ms = medians(time_interleaved({n: b[1] for n, b in built.items()}, max(3, repeats // 3), target))
        sweep.append((shape, ms))
        print("sweep: " + _sweep_row(shape, ms), flush=True)
    streaming = measure_streaming(seconds=1.0 if quick else 4.0, rounds=3 if quick else 5)
    print("\n".join(render_streaming(*streaming)), flush=True)
    models = measure_models(quick)
    return Measurements(
        date=datetime.date.today().isoformat(),
        machine=machine,
        cpus=os.cpu_count() or 0,
        processor=platform.processor() or platform.machine(),
        jax_version=jax.__version__,
        backend=jax.default_backend(),
        device=jax.devices()[0].device_kind,
        default_implementation=ct.default_implementation(),
        quick=quick,
        repeats=repeats,
        gemm_gflops=peaks,
        tables=tables,
        sweep=sweep,
        streaming=streaming,
        models=models,
        tuned_plans={f"{name} | {dname}": plan for (name, dname), plan in TUNED_PLANS.items()},
    )


# --- writing -------------------------------------------------------------------------------------


def _cell(value) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def _md_table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"] + [
        "| " + " | ".join(_cell(v) for v in row) + " |" for row in rows
    ]


def plan_rows(platform_name: str) -> list[list[str]]:
    """One row per benchmark shape and dtype: the plan convtrans picks on ``platform_name``."""
    fields = [f.name for f in dataclasses.fields(ct.Plan)]
    rows = []
    for dtype, shapes in [(jnp.float32, SHAPES), (jnp.bfloat16, BF16_SHAPES), (jnp.float32, SWEEP)]:
        for shape in shapes:
            plan = ct.plan(shape.config(), (shape.batch, shape.steps, shape.cin), dtype, platform=platform_name)
            rows.append([label(shape), jnp.dtype(dtype).name] + [getattr(plan, f) for f in fields])
    return rows


def _threshold_value(threshold) -> str:
    if threshold.unit.startswith("bytes") and threshold.value % 2**20 == 0:
        return f"{threshold.value} ({threshold.value // 2**20} MiB)"
    return str(threshold.value)


def threshold_rows() -> list[list[str]]:
    """One row per entry of ``convtrans._src.dispatch.THRESHOLDS``, every field."""
    return [[_threshold_value(t) if field == "value" else getattr(t, field) for field in t._fields] for t in THRESHOLDS]


def render(m: Measurements) -> str:
    """The whole of docs/performance.md, from one run's measurements."""
    lines = [
        TITLE,
        "",
        INTRO,
        "",
        "## Method",
        "",
        METHOD,
        "",
        "## The run",
        "",
        f"Date: {m.date}; machine: {m.machine}; {m.cpus} CPUs ({m.processor}); jax {m.jax_version}, "
        f"backend {m.backend}{'' if m.backend == 'cpu' else f' ({m.device})'}; "
        f"convtrans default: `{m.default_implementation}`; "
        f"{'quick' if m.quick else 'full'} run, median of {m.repeats} interleaved samples.",
        "",
        f"GEMM peaks (jnp.dot 2048^3) measured in this run: float32 **{m.gemm_gflops['float32']:.0f} GFLOP/s**, "
        f"bfloat16 with float32 accumulation **{m.gemm_gflops['bfloat16']:.0f} GFLOP/s**; each table's "
        f"% GEMM peak is against its dtype's. torch.matmul float32 in this run: "
        f"**{m.gemm_gflops['torch float32']:.0f} GFLOP/s**.",
        "",
        "## What runs for each benchmark shape",
        "",
        f"The plan convtrans picks on this run's platform (`{m.backend}`) for each benchmark shape, "
        "from `convtrans.plan(config, (batch, steps, channels), dtype)` (the fields of "
        "`convtrans.Plan`; `convtrans.explain` gives the reason for each).",
        "",
    ]
    lines += _md_table(["shape", "dtype"] + [f.name for f in dataclasses.fields(ct.Plan)], plan_rows(m.backend))
    if m.tuned_plans:
        lines += [
            "",
            f"The plan autotuning chose in this run (the `{TUNED}` columns of the tables: "
            "`convtrans.tune.tune_layer` on this machine from an empty plan cache, then forced), "
            "where it differs from the static plan above; the other shapes kept it.",
            "",
        ]
        fields = [f.name for f in dataclasses.fields(ct.Plan)]
        static = {f"{row[0]} | {row[1]}": row[2:] for row in plan_rows(m.backend)}
        changed = [
            key.split(" | ") + [getattr(plan, f) for f in fields]
            for key, plan in m.tuned_plans.items()
            if static.get(key) != [getattr(plan, f) for f in fields]
        ]
        lines += _md_table(["shape", "dtype"] + fields, changed) if changed else ["(none)"]
    lines += [
        "",
        "## Thresholds and their provenance",
        "",
        f"Every constant of the plan's policy, from `convtrans._src.dispatch.THRESHOLDS` "
        f"({len(THRESHOLDS)} entries); a machine of `-` marks a bound set by reasoning rather "
        "than measured. The command re-derives the value (or checks the bound) on the machine at hand.",
        "",
    ]
    lines += _md_table(list(THRESHOLDS[0]._fields), threshold_rows())
    lines += ["", CROSSOVER_HEADING, "", CROSSOVER_PLACEHOLDER]
    lines += ["", "## Changes to the plan", "", PLAN_CHANGES, "", "## Results", ""]
    for dtype, _, dtype_peers in TABLES:
        dname = jnp.dtype(dtype).name
        for mode, _, factor in MODES:
            lines += _table_header(mode, dname, dtype_peers)
            lines += [
                _table_row(shape, samples, factor, m.gemm_gflops[dname]) for shape, samples in m.tables[dname, mode]
            ]
            lines.append("")
    lines += [
        "### length sweep, forward+backward, float32 (B1 16->16 k16 s8): time per input step",
        "",
        "| steps | convtrans ms | convtrans ns/step | torch ms | torch ns/step |",
        "|---|---|---|---|---|",
    ]
    lines += [_sweep_row(shape, ms) for shape, ms in m.sweep]
    lines += ["", STREAMING_HEADING, ""] + render_streaming(*m.streaming)
    lines += ["", MODELS_HEADING, ""] + render_models(m.models)
    lines += ["", TARGETS_HEADING, ""] + targets.render(targets.check(m))
    lines += ["", "## Where XLA bounds a target", "", XLA_BOUNDS]
    return "\n".join(lines) + "\n"


def replace_section(document: str, heading: str, body: list[str]) -> str:
    """``document`` with the body of the section under ``heading`` (up to the next ``## ``)
    replaced; a section of :data:`SECTIONS` that the document lacks is inserted where it belongs,
    before the first later section the document has."""
    lines = document.split("\n")
    if heading not in lines:
        title = heading[3:]
        later = [f"## {t}" for t in SECTIONS[SECTIONS.index(title) + 1 :]] if title in SECTIONS else []
        at = next((lines.index(h) for h in later if h in lines), None)
        if at is None:
            raise ValueError(f"the document has no section {heading!r}; run the whole benchmark once.")
        lines[at:at] = [heading, ""]
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[:start] + [""] + body + [""] + lines[end:])


def section_body(path: str, heading: str) -> list[str] | None:
    """The body of the section under ``heading`` of the document at ``path``, blank lines around
    it dropped; None when there is no such document or section."""
    try:
        with open(path) as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return None
    if heading not in lines:
        return None
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    body = "\n".join(lines[start:end]).strip("\n")
    return body.split("\n") if body else None


DEFAULT_OUT = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "docs", "performance.md")
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter samples")
    parser.add_argument("--out", default=DEFAULT_OUT, help="where to write the Markdown document")
    parser.add_argument("--machine", default="2-core CPU (shared, noisy)", help="machine description for the header")
    parser.add_argument(
        "--streaming-only",
        action="store_true",
        help=f"measure the streaming benchmark alone and rewrite its section ({STREAMING_HEADING!r}) "
        "of the existing document",
    )
    parser.add_argument(
        "--models-only",
        action="store_true",
        help=f"measure the whole-model benchmark alone (benchmarks/models.py) and rewrite its section "
        f"({MODELS_HEADING!r}) of the existing document (the targets keep the last full run's verdicts)",
    )
    args = parser.parse_args(argv)
    if args.streaming_only:
        streaming = measure_streaming(seconds=1.0 if args.quick else 4.0, rounds=3 if args.quick else 5)
        with open(args.out) as f:
            document = replace_section(f.read(), STREAMING_HEADING, render_streaming(*streaming))
    elif args.models_only:
        models = measure_models(args.quick)
        with open(args.out) as f:
            document = replace_section(f.read(), MODELS_HEADING, render_models(models))
    else:
        document = render(measure(args.quick, args.machine))
        carried = section_body(args.out, CROSSOVER_HEADING)  # benchmarks/crossover.py's record
        if carried is not None:
            document = replace_section(document, CROSSOVER_HEADING, carried)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(document)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""convtrans against every peer: forward and forward+backward under jit, in one process.

Usage: ``python -m benchmarks.run [--quick] [--out benchmarks/results.md]``.

Method: every implementation of a shape is built from the same Keras-layout weights, its output is
checked equal to convtrans's reference before anything is timed, then the implementations are
timed round-robin (interleaved, so machine noise hits all of them alike); each sample starts with
``WARM_S`` of untimed calls of its own implementation, then is the mean of enough calls to last a
few milliseconds, and the table quotes medians. Because one round samples every implementation
within a few seconds, the ratio of two implementations' samples in the same round is less
exposed to slow changes of the machine's load than the ratio of their medians; the table gives
the lowest and highest of these per-round ratios against torch next to the median ones, so that
a cell's noise can be read off the run itself.
Useful work is ``2 * B * L * Cin * Cout * k`` FLOPs forward (``L`` input steps), three times
that forward+backward (gradients for the kernel, the bias and the input), and is compared with
the GEMM peak of the same dtype (``jnp.dot`` of two 2048x2048 matrices) measured in the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import platform
import statistics
import time
from typing import Callable

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import convtrans as ct  # noqa: E402
from convtrans.geometry import full_result_offset, output_length, transpose_pads  # noqa: E402


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
        return ct.Conv1DTransposeConfig(filters=self.cout, kernel_size=self.k, strides=self.s,
                                        padding=self.padding, dilation_rate=self.d)

    def flops(self) -> float:
        return 2.0 * self.batch * self.steps * self.cin * self.cout * self.k


SHAPES = [
    Shape("HiFi-GAN stage 1", 4, 64, 512, 256, 16, 8),
    Shape("HiFi-GAN stage 3", 4, 2048, 128, 64, 4, 2),
    Shape("MelGAN", 8, 256, 256, 128, 16, 8),
    Shape("small channels", 16, 4096, 16, 16, 9, 2),
    Shape("stride 1, dilation 2", 8, 1024, 64, 64, 3, 1, 2),
    Shape("batch-1 inference", 1, 256, 512, 256, 16, 8),
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

    module = nn.ConvTranspose(features=shape.cout, kernel_size=(shape.k,), strides=(shape.s,),
                              padding=[tuple(transpose_pads(shape.config()))],
                              kernel_dilation=(shape.d,), transpose_kernel=True,
                              dtype=dtype, param_dtype=dtype)
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
    layer = eqx.nn.ConvTranspose1d(shape.cin, shape.cout, shape.k, stride=shape.s,
                                   padding=((left, max(right, 0)),), output_padding=max(-right, 0),
                                   dilation=shape.d, key=jax.random.key(0), dtype=dtype)
    # equinox weight (out, in, k) holds the taps in the order of the equivalent forward conv.
    weight = jnp.asarray(np.flip(np.transpose(kernel, (1, 2, 0)), axis=2), dtype)
    layer = eqx.tree_at(lambda m: (m.weight, m.bias), layer,
                        (weight, jnp.asarray(bias, dtype).reshape(shape.cout, 1)))

    def apply(layer, x):  # x: (batch, steps, cin) -> (batch, out, cout)
        return jax.vmap(layer)(x.transpose(0, 2, 1)).transpose(0, 2, 1)

    return _jax_pair(apply, layer, jnp.asarray(x, dtype))


def torch_peer(shape, kernel, bias, x, dtype):
    import torch

    torch.set_num_threads(2)
    tdtype = {jnp.float32: torch.float32, jnp.bfloat16: torch.bfloat16}[dtype]
    left, right = _crops(shape)
    module = torch.nn.ConvTranspose1d(shape.cin, shape.cout, shape.k, stride=shape.s, padding=left,
                                      output_padding=max(left - right, 0), dilation=shape.d)
    module = module.to(tdtype)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.ascontiguousarray(np.transpose(kernel, (2, 1, 0)))))
        module.bias.copy_(torch.from_numpy(np.asarray(bias)))
    xt = torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 2, 1)))).to(tdtype)
    xt.requires_grad_(True)
    steps = output_length(shape.config(), shape.steps)
    with torch.no_grad():
        y = module(xt)
    cotangent = torch.cos(torch.arange(y.numel(), dtype=torch.float64)).reshape(y.shape).to(tdtype)

    def forward():
        with torch.no_grad():
            return module(xt)

    def forward_backward():
        return torch.autograd.grad(module(xt), (module.weight, module.bias, xt), cotangent)

    y = jnp.asarray(y[:, :, :steps].float().numpy().transpose(0, 2, 1), dtype)
    return forward, forward_backward, y


PEERS = {
    "flax": flax_peer,
    "keras": keras_peer,
    "equinox": equinox_peer,
    "torch": torch_peer,
    "reference": lambda *a: convtrans_peer(*a, implementation="lhs_dilation"),
    "convtrans": lambda *a: convtrans_peer(*a, implementation=None),
}
# The peers timed in bfloat16 (convtrans last, as in PEERS: the ratio columns are the others).
BF16_PEERS = ["flax", "torch", "reference", "convtrans"]


# --- timing --------------------------------------------------------------------------------------

def _block(result):
    return jax.block_until_ready(result) if not hasattr(result, "__torch_function__") and not (
        isinstance(result, tuple) and result and hasattr(result[0], "__torch_function__")) else result


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
        for name in names[r % len(names):] + names[:r % len(names)]:
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
    """GFLOP/s of a float32 2048^3 ``torch.matmul`` (2 threads): torch's own ceiling."""
    import torch

    torch.set_num_threads(2)
    return _square_gemm_gflops(torch.matmul, torch.from_numpy(_square_matrix()), repeats)


# --- one shape -----------------------------------------------------------------------------------

def build(shape: Shape, dtype, peers: list[str]):
    rng = np.random.default_rng(0)
    kernel = (rng.standard_normal((shape.k, shape.cout, shape.cin)) / math.sqrt(shape.k * shape.cin / shape.s)).astype(np.float32)
    bias = rng.standard_normal(shape.cout).astype(np.float32)
    x = rng.standard_normal((shape.batch, shape.steps, shape.cin)).astype(np.float32)
    built = {name: PEERS[name](shape, kernel, bias, x, dtype) for name in peers}
    want = np.asarray(ct.conv1d_transpose({"kernel": kernel, "bias": bias}, jnp.asarray(x), shape.config(),
                                          implementation="lhs_dilation")[0])
    tol = 2e-3 if dtype == jnp.float32 else 0.1
    for name, (_, _, y) in built.items():
        np.testing.assert_allclose(np.asarray(y, np.float32), want, rtol=tol, atol=tol,
                                   err_msg=f"{name} differs from convtrans's reference on {shape}")
    return built


def fmt(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def run(args) -> str:
    repeats = 5 if args.quick else 11
    target = 0.002 if args.quick else 0.005
    peaks = {jnp.float32: gemm_peak_gflops(repeats), jnp.bfloat16: gemm_peak_gflops(repeats, jnp.bfloat16)}
    lines = [
        f"Date: {datetime.date.today().isoformat()}; machine: {args.machine}; "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}); jax {jax.__version__}, "
        f"backend {jax.default_backend()}; convtrans default: `{ct.default_implementation()}`; "
        f"{'quick' if args.quick else 'full'} run, median of {repeats} interleaved samples.",
        "",
        f"GEMM peaks (jnp.dot 2048^3) measured in this run: float32 **{peaks[jnp.float32]:.0f} GFLOP/s**, "
        f"bfloat16 with float32 accumulation **{peaks[jnp.bfloat16]:.0f} GFLOP/s**; each table's "
        f"% GEMM peak is against its dtype's. torch.matmul float32 in this run: "
        f"**{torch_gemm_peak_gflops(repeats):.0f} GFLOP/s**.",
        "",
    ]
    for dtype, shapes, dtype_peers in [(jnp.float32, SHAPES, list(PEERS)), (jnp.bfloat16, BF16_SHAPES, BF16_PEERS)]:
        dname = jnp.dtype(dtype).name
        dothers = dtype_peers[:-1]
        for mode, index, factor in [("forward", 0, 1), ("forward+backward", 1, 3)]:
            lines += [f"### {mode}, {dname}: median ms (speed-up of convtrans = peer ms / convtrans ms)", "",
                      "| shape | " + " | ".join(dtype_peers) + " | " + " | ".join(f"x {p}" for p in dothers)
                      + " | x torch per round | GFLOP/s | % GEMM peak |",
                      "|---" * (1 + len(dtype_peers) + len(dothers) + 3) + "|"]
            for shape in shapes:
                built = build(shape, dtype, dtype_peers)
                samples = time_interleaved({n: b[index] for n, b in built.items()}, repeats, target)
                ms = medians(samples)
                per_round = round_ratios(samples, "torch")
                gflops = factor * shape.flops() / (ms["convtrans"] * 1e-3) / 1e9
                label = (f"{shape.name} (B{shape.batch} L{shape.steps} {shape.cin}->{shape.cout} "
                         f"k{shape.k} s{shape.s}{f' d{shape.d}' if shape.d > 1 else ''})")
                lines.append(f"| {label} | " + " | ".join(fmt(ms[p]) for p in dtype_peers) + " | "
                             + " | ".join(f"{ms[p] / ms['convtrans']:.2f}" for p in dothers)
                             + f" | {min(per_round):.2f}-{max(per_round):.2f}"
                             + f" | {gflops:.0f} | {100 * gflops / peaks[dtype]:.0f}% |")
                print(lines[-1], flush=True)
            lines.append("")
    lines += ["### length sweep, forward+backward, float32 (B1 16->16 k16 s8): time per input step", "",
              "| steps | convtrans ms | convtrans ns/step | torch ms | torch ns/step |", "|---|---|---|---|---|"]
    for shape in SWEEP:
        built = build(shape, jnp.float32, ["torch", "convtrans"])
        ms = medians(time_interleaved({n: b[1] for n, b in built.items()}, max(3, repeats // 3), target))
        lines.append(f"| {shape.steps} | {fmt(ms['convtrans'])} | {1e6 * ms['convtrans'] / shape.steps:.0f} | "
                     f"{fmt(ms['torch'])} | {1e6 * ms['torch'] / shape.steps:.0f} |")
        print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter samples")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results.md"),
                        help="where to write the Markdown table")
    parser.add_argument("--machine", default="2-core CPU (shared, noisy)", help="machine description for the header")
    args = parser.parse_args(argv)
    table = run(args)
    print(table)
    with open(args.out, "w") as f:
        f.write(table)


if __name__ == "__main__":
    main()

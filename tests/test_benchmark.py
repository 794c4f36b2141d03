"""The benchmark's harness: every peer computes the same layer, and the timer samples each one."""

from __future__ import annotations

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

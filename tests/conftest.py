"""Test-wide set-up: environment that must be fixed before JAX or Keras are imported."""

import atexit
import os
import shutil
import tempfile

# Keras is the semantic oracle and must run on its JAX backend.
os.environ.setdefault("KERAS_BACKEND", "jax")
# Autotuned plans go to a folder of this run's, never to the user's cache.
os.environ["CONVTRANS_CACHE_DIR"] = tempfile.mkdtemp(prefix="convtrans-test-plans-")
# Eight simulated CPU devices, so sharding tests run on any machine. LLVM's optimization level 0
# for XLA's CPU code: most of this suite's time is compiling small programs, and at level 0 it ran
# in about two thirds of the time (10 against 16 minutes on 2 cores). The level changes neither the
# HLO that the structure tests read nor any result beyond rounding; the tests that assert
# bit-exactness across two programs compile at XLA's default level, the one users run
# (test_keras_oracle.DEFAULT_OPTIMIZATION).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0")

import jax
import pytest
from hypothesis import HealthCheck, settings

# Many tests compile the same program from different jitted functions (a lambda per test, a
# Streamer's step per instance, eager ops inside helpers); XLA's persistent cache serves the
# repeats from disk by their HLO. From an empty cache it measured 10-25% less time on the files
# with such repeats (the streamer and vocoder tests most), within noise on the whole suite. One
# folder per process: JAX writes entries without a lock, so two xdist workers sharing one could
# read each other's half-written files.
_compilation_cache = tempfile.mkdtemp(prefix="convtrans-test-xla-")
atexit.register(shutil.rmtree, _compilation_cache, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", _compilation_cache)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)

settings.register_profile("convtrans", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile("convtrans")


@pytest.fixture
def plans_run(monkeypatch):
    """The plans the public function hands to the kernel, in call order (where the CPU plan differs
    from the other platforms', both: the program holds both)."""
    from convtrans._src import api

    seen = []
    convolve = api.convolve

    def spy(x, kernel, config, precision, plan):
        seen.append(plan)
        return convolve(x, kernel, config, precision, plan)

    monkeypatch.setattr(api, "convolve", spy)
    return seen

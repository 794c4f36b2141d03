"""Test-wide set-up: environment that must be fixed before JAX or Keras are imported."""

import os
import tempfile

# Keras is the semantic oracle and must run on its JAX backend.
os.environ.setdefault("KERAS_BACKEND", "jax")
# Autotuned plans go to a folder of this run's, never to the user's cache.
os.environ["CONVTRANS_CACHE_DIR"] = tempfile.mkdtemp(prefix="convtrans-test-plans-")
# Eight simulated CPU devices, so sharding tests run on any machine.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import pytest
from hypothesis import HealthCheck, settings

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

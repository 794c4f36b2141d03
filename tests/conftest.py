"""Test-wide set-up: environment that must be fixed before JAX or Keras are imported."""

import os

# Keras is the semantic oracle and must run on its JAX backend.
os.environ.setdefault("KERAS_BACKEND", "jax")
# Eight simulated CPU devices, so sharding tests run on any machine.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

from hypothesis import HealthCheck, settings

settings.register_profile("convtrans", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile("convtrans")

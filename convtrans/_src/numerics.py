"""Dtype rules of the computation."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp


def accumulation_dtype(dtype: Any) -> jnp.dtype:
    """The dtype products are accumulated in: float32 for 16-bit floats, else ``dtype`` itself."""
    dtype = jnp.dtype(dtype)
    return jnp.dtype(jnp.float32) if jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize < 4 else dtype

import jax.numpy as jnp

import convtrans as ct


def test_upsamples_by_the_stride_with_same_padding():
    config = ct.Conv1DTransposeConfig(filters=3, kernel_size=4, strides=2, padding="same")
    params = {"kernel": jnp.ones((4, 3, 2)), "bias": jnp.zeros((3,))}
    y, aux = ct.conv1d_transpose(params, jnp.ones((1, 5, 2)), config)
    assert y.shape == (1, 10, 3)
    assert set(aux) == {"kernel", "bias", "activity"}

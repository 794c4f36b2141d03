import jax.numpy as jnp

import convtrans as ct


def test_upsamples_by_the_stride_with_same_padding():
    config = ct.Conv1DTransposeConfig(filters=3, kernel_size=4, strides=2, padding="same")
    params = {"kernel": jnp.ones((4, 3, 2)), "bias": jnp.zeros((3,))}
    y, aux = ct.conv1d_transpose(params, jnp.ones((1, 5, 2)), config)
    assert y.shape == (1, 10, 3)
    assert set(aux) == {"kernel", "bias", "activity"}


def test_numpy_reference_agrees_on_a_pytorch_style_padding():
    import numpy as np

    from tests.numpy_reference import conv1d_transpose as reference

    config = ct.Conv1DTransposeConfig(filters=2, kernel_size=5, strides=3, padding=(1, 2), output_padding=2)
    rng = np.random.default_rng(0)
    kernel, x = rng.standard_normal((5, 2, 3)), rng.standard_normal((2, 4, 3))
    y, _ = ct.conv1d_transpose(
        {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.zeros(2)}, jnp.asarray(x, jnp.float32), config
    )
    expected = reference(x, kernel, strides=3, padding=(1, 2), output_padding=2)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)

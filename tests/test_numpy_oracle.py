"""Every implementation against the naive NumPy scatter-add (tests/numpy_reference.py)."""

import functools
import itertools

import jax
import numpy as np
import pytest

import convtrans as ct
from tests.numpy_reference import conv1d_transpose as reference

PADDINGS = ["valid", "same", 0, 1, 3, (0, 2), (2, 0), (1, 4)]


def _case(
    *,
    filters=4,
    kernel_size=3,
    strides=1,
    padding="valid",
    output_padding=None,
    dilation_rate=1,
    groups=1,
    data_format="channels_last",
    in_channels=2,
    steps=5,
    batch=2,
    use_bias=True,
    seed=0,
):
    """(config, params, x, expected) for one configuration, with the NumPy reference's output."""
    rng = np.random.default_rng(seed)
    config = ct.Conv1DTransposeConfig(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        output_padding=output_padding,
        dilation_rate=dilation_rate,
        groups=groups,
        data_format=data_format,
        use_bias=use_bias,
    )
    shape = (batch, steps, in_channels) if data_format == "channels_last" else (batch, in_channels, steps)
    x = rng.standard_normal(shape).astype(np.float32)
    params = {"kernel": rng.standard_normal(config.kernel_shape(in_channels)).astype(np.float32)}
    if use_bias:
        params["bias"] = rng.standard_normal(filters).astype(np.float32)
    expected = reference(
        x,
        params["kernel"],
        params.get("bias"),
        strides=strides,
        padding=padding,
        output_padding=output_padding,
        dilation_rate=dilation_rate,
        groups=groups,
        data_format=data_format,
    )
    return config, params, x, expected


@functools.partial(jax.jit, static_argnums=(0, 1))
def _run_all(name, configs, params, xs):
    return [ct.conv1d_transpose(p, x, c, implementation=name)[0] for c, p, x in zip(configs, params, xs)]


class _Checks:
    """Collects configurations (``check(kernel_size=..., ...)``) and, on leaving the ``with`` block,
    runs them all in one jitted call (XLA compiles dominate the cost) against the reference."""

    def __init__(self, name):
        self.name, self.cases = name, []

    def __call__(self, **kwargs):
        self.cases.append(_case(**kwargs))

    def __enter__(self):
        return self

    def __exit__(self, error_type, *_):
        if error_type is not None:
            return
        configs, params, xs, expected = zip(*self.cases)
        for config, x, y, want in zip(configs, xs, _run_all(self.name, configs, params, xs), expected):
            assert y.shape == want.shape, config
            assert y.shape[config.time_axis] == ct.output_length(config, x.shape[config.time_axis]), config
            np.testing.assert_allclose(np.asarray(y), want, rtol=1e-5, atol=1e-5, err_msg=str(config))


def _legal_output_paddings(strides, dilation_rate, padding):
    limit = strides if isinstance(padding, str) else max(strides, dilation_rate)
    return [None, *range(limit)]


@pytest.mark.parametrize("name", sorted(ct.IMPLEMENTATIONS))
@pytest.mark.parametrize("padding", PADDINGS, ids=str)
def test_every_padding_mode_output_padding_and_stride(name, padding):
    with _Checks(name) as check:
        for kernel_size, strides in itertools.product([1, 2, 3, 5], [1, 2, 3]):
            for output_padding in _legal_output_paddings(strides, 1, padding):
                steps = 6
                if not isinstance(padding, str):
                    left, right = (padding, padding) if isinstance(padding, int) else padding
                    if (steps - 1) * strides + kernel_size + (output_padding or 0) - left - right < 0:
                        continue
                check(
                    kernel_size=kernel_size,
                    strides=strides,
                    padding=padding,
                    output_padding=output_padding,
                    steps=steps,
                )


@pytest.mark.parametrize("name", sorted(ct.IMPLEMENTATIONS))
def test_dilation_at_stride_one_and_with_pytorch_padding_at_stride_two(name):
    with _Checks(name) as check:
        for dilation_rate, padding in itertools.product([2, 3], ["valid", "same", 1, (2, 1)]):
            check(kernel_size=3, dilation_rate=dilation_rate, padding=padding)
        for output_padding in [None, 0, 1, 2]:  # PyTorch's rule: output_padding < max(stride, dilation)
            check(kernel_size=3, strides=2, dilation_rate=3, padding=(1, 2), output_padding=output_padding)


@pytest.mark.parametrize("name", sorted(ct.IMPLEMENTATIONS))
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_groups_in_both_data_formats(name, data_format):
    with _Checks(name) as check:
        for groups, strides, padding in itertools.product([1, 2, 4], [1, 3], ["valid", "same", (1, 1)]):
            check(
                filters=8,
                in_channels=4,
                groups=groups,
                strides=strides,
                padding=padding,
                kernel_size=4,
                data_format=data_format,
            )


@pytest.mark.parametrize("name", sorted(ct.IMPLEMENTATIONS))
def test_inputs_of_one_step(name):
    with _Checks(name) as check:
        for kernel_size, strides, padding in itertools.product([1, 2, 4], [1, 2, 5], ["valid", "same"]):
            check(kernel_size=kernel_size, strides=strides, padding=padding, steps=1)


@pytest.mark.parametrize("name", sorted(ct.IMPLEMENTATIONS))
def test_empty_results(name):
    with _Checks(name) as check:
        # same with output_padding=0 and an even kernel at stride 1: (n - 1) * s + ke % 2 + op = 0.
        check(kernel_size=2, strides=1, padding="same", output_padding=0, steps=1)
        check(kernel_size=4, strides=1, padding=(2, 2), steps=1, data_format="channels_first")
        check(kernel_size=3, strides=2, padding="same", output_padding=0, steps=1, use_bias=False)


def test_the_numpy_reference_follows_the_output_length_table():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 10, 1)), rng.standard_normal((5, 1, 1))
    lengths = {
        (p, op): reference(x, w, strides=3, padding=p, output_padding=op).shape[1]
        for p in ["valid", "same"]
        for op in [None, 0, 1, 2]
    }
    assert lengths == {
        ("valid", None): 32,
        ("valid", 0): 32,
        ("valid", 1): 33,
        ("valid", 2): 34,
        ("same", None): 30,
        ("same", 0): 28,
        ("same", 1): 29,
        ("same", 2): 30,
    }


@pytest.mark.parametrize("name", sorted(ct.IMPLEMENTATIONS))
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_every_padding_mode_in_both_data_formats_for_short_inputs(name, data_format):
    with _Checks(name) as check:
        for steps, padding, (kernel_size, dilation_rate) in itertools.product(
            [1, 3], ["valid", "same", 0, 2, (0, 3), (3, 1)], [(3, 1), (2, 3)]
        ):
            for strides in [1, 4] if dilation_rate == 1 or not isinstance(padding, str) else [1]:
                for output_padding in _legal_output_paddings(strides, dilation_rate, padding)[::2]:
                    config = ct.Conv1DTransposeConfig(
                        4,
                        kernel_size,
                        strides=strides,
                        padding=padding,
                        dilation_rate=dilation_rate,
                        output_padding=output_padding,
                    )
                    try:
                        ct.output_length(config, steps)
                    except ValueError:
                        continue  # integer padding that crops more than the full result holds
                    check(
                        kernel_size=kernel_size,
                        strides=strides,
                        padding=padding,
                        dilation_rate=dilation_rate,
                        output_padding=output_padding,
                        data_format=data_format,
                        steps=steps,
                        seed=steps,
                    )


def _torch_reference(x, kernel, bias, *, strides, padding, output_padding, dilation_rate, groups):
    """PyTorch's ConvTranspose1d, channels_last in and out; a pair (l, r) crops its padding-0 result."""
    import torch

    left, right = (padding, padding) if isinstance(padding, int) else padding
    with torch.no_grad():
        y = (
            torch.nn.functional.conv_transpose1d(
                torch.from_numpy(x.transpose(0, 2, 1).astype(np.float64)),
                torch.from_numpy(kernel.transpose(2, 1, 0).astype(np.float64)),  # (in, out / groups, k)
                torch.from_numpy(bias.astype(np.float64)),
                stride=strides,
                padding=left if left == right else 0,
                output_padding=output_padding or 0,
                groups=groups,
                dilation=dilation_rate,
            )
            .numpy()
            .transpose(0, 2, 1)
        )
    return y if left == right else y[:, left : y.shape[1] - right]


def test_the_numpy_reference_agrees_with_pytorch_for_integer_padding():
    rng = np.random.default_rng(7)
    for kernel_size, strides, dilation_rate, groups, padding in itertools.product(
        [1, 4], [1, 2, 3], [1, 2], [1, 2], [0, 2, (1, 3)]
    ):
        for output_padding in [None, *range(max(strides, dilation_rate))]:
            x = rng.standard_normal((2, 5, 4))
            kernel = rng.standard_normal((kernel_size, 6 // groups, 4))
            bias = rng.standard_normal(6)
            options = dict(
                strides=strides,
                padding=padding,
                output_padding=output_padding,
                dilation_rate=dilation_rate,
                groups=groups,
            )
            np.testing.assert_allclose(
                reference(x, kernel, bias, **options),
                _torch_reference(x, kernel, bias, **options),
                rtol=1e-12,
                atol=1e-12,
                err_msg=str((kernel_size, options)),
            )


def test_the_numpy_reference_scatters_each_sample_times_each_tap():
    # One input impulse at step i reproduces the kernel's taps at i * s + j * d of the full result.
    x = np.zeros((1, 4, 1))
    x[0, 2, 0] = 1.0
    kernel = np.arange(1.0, 4.0).reshape(3, 1, 1)
    y = reference(x, kernel, strides=3, dilation_rate=1, padding=0)[0, :, 0]
    expected = np.zeros((4 - 1) * 3 + 3)
    expected[[6, 7, 8]] = [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(y, expected)

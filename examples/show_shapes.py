"""Shows convtrans on real vocoder shapes: output lengths for every padding mode, and a timing.

Run with `make demo`.
"""

import time

import jax
import jax.numpy as jnp

import convtrans as ct


def main() -> None:
    key = jax.random.PRNGKey(0)
    print(f"JAX {jax.__version__} on {jax.default_backend()}\n")
    print("Output lengths for an input of 10 steps, kernel 5, stride 3:")
    print(f"{'padding':>10} {'output_padding':>15} {'length':>7}")
    for padding in ("valid", "same", 2, (1, 3)):
        for op in (None, 0, 1, 2):
            config = ct.Conv1DTransposeConfig(filters=4, kernel_size=5, strides=3, padding=padding, output_padding=op)
            print(f"{padding!s:>10} {op!s:>15} {ct.output_length(config, 10):>7}")

    print("\nHiFi-GAN-style upsampling stages (batch 4, channels_last):")
    stages = [(64, 512, 256, 16, 8), (512, 256, 128, 16, 8), (4096, 128, 64, 4, 2)]
    for steps, cin, cout, k, s in stages:
        config = ct.Conv1DTransposeConfig(
            filters=cout, kernel_size=k, strides=s, padding="same", activation="leaky_relu"
        )
        kernel = config.kernel_initializer(key, config.kernel_shape(cin))
        params = {"kernel": kernel, "bias": jnp.zeros((cout,))}
        x = jax.random.normal(key, (4, steps, cin))
        fn = jax.jit(ct.conv1d_transpose, static_argnums=2)
        y, _ = fn(params, x, config)
        y.block_until_ready()
        times = []
        for _ in range(10):
            start = time.perf_counter()
            fn(params, x, config)[0].block_until_ready()
            times.append(time.perf_counter() - start)
        times.sort()
        print(f"  {tuple(x.shape)} -> {tuple(y.shape)}  k={k} s={s}: median {1e3 * times[5]:.2f} ms forward")


if __name__ == "__main__":
    main()

"""Exact streaming: models and layers evaluated chunk by chunk with a carried state.

A whole model (a flax.linen model built from :class:`convtrans.Conv1D`,
:class:`convtrans.Conv1DTranspose`, :class:`convtrans.Pad1D`, :class:`convtrans.Residual`,
:class:`convtrans.Parallel`, activations and ``nn.Sequential``) streams through
:class:`Streamer`::

    streamer = streaming.Streamer(model, variables, batch_size=1)
    state = streamer.init()
    for chunk in chunks:                          # (1, m, in_channels), m a multiple of chunk_multiple
        state, y = streamer.step(state, chunk)    # (1, m * rate, out_channels)
        play(y)
    play(streamer.finish(state))

One transposed convolution streams from its config and params with :func:`init`, :func:`step`
and :func:`finish`::

    state = streaming.init(config, batch_size=1)
    for chunk in chunks:                                # (batch, m, in_channels), any m >= 1
        state, y = streaming.step(params, state, chunk, config)   # (batch, m * strides, filters)
        play(y)
    play(streaming.finish(params, state, config))       # (batch, tail_length(config), filters)

Either way the played stream is ``latency`` zeros followed by exactly the whole-signal output, in
memory that does not grow with the signal, and every step is a pure function of arrays (usable
under ``jax.jit`` and as the body of ``jax.lax.scan``).

The arithmetic of one layer (``s`` stride, ``d`` dilation, ``ke = (kernel_size - 1) * d + 1``,
``(left, right)`` the pads of :func:`convtrans.transpose_pads`): input step ``i`` times tap ``j``
lands at position ``i * s + j * d`` of the *full* result, and output step ``t`` is full position
``t + c`` with ``c = ke - 1 - left``. Once ``n`` steps are in, full positions ``< n * s`` are
final; ``[n * s, n * s + ke - s)`` still wait for later steps. When ``right < s - 1`` the last
``hold = s - 1 - right`` final positions may still be cropped by the end of the signal, so a step
holds them back. The state carries :func:`carry_length` ``= hold + max(ke - s, 0)`` partial sums;
a step of ``m`` input steps adds its chunk's full result onto them and emits ``m * s`` samples,
so the stream runs :func:`latency` ``= c + hold`` samples behind the output, and :func:`finish`
emits the last :func:`tail_length` ``= max(right + 1 - s, 0)`` samples: ``n * s + tail_length``
samples in all, ``latency + output_length(config, n)``. Each sample is the same sum of products as
in the whole-signal evaluation, grouped differently where chunks overlap, so results agree to
float rounding.
"""

from convtrans._src.streaming.layer import (
    StreamState,
    carry_length,
    chunked_conv1d_transpose,
    finish,
    init,
    latency,
    step,
    tail_length,
)
from convtrans._src.streaming.streamer import Streamer

__all__ = [
    "StreamState",
    "Streamer",
    "carry_length",
    "chunked_conv1d_transpose",
    "finish",
    "init",
    "latency",
    "step",
    "tail_length",
]

"""Output-length and padding arithmetic: the one place where it lives.

Everything in convtrans that needs to know how long an output is, how far a transposed
convolution reaches past the input, or which blocks of ``s`` full-result positions an output
covers, calls the functions here.

Notation: ``n`` input length, ``k`` kernel size, ``s`` stride, ``d`` dilation,
``op`` output padding, ``ke = (k - 1) * d + 1`` the effective (dilated) kernel size.

The transposed convolution is described by a pair of pads ``(left, right)`` that would be applied
to the ``s``-dilated input before a stride-1 convolution with the flipped kernel (Keras's
formulation). The "full" result, where every product of every input sample and tap lands, uses
``(ke - 1, ke - 1)`` and has length ``(n - 1) * s + ke``; smaller pads crop it, larger pads append
zeros-only positions (bias and activation still apply there). The output length is then

    out = (n - 1) * s + left + right - ke + 2,

and output sample ``t`` is sample ``t + (ke - 1 - left)`` of the full result.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol, cast

from convtrans._src.checks import is_int, is_symbolic

# A time length: an int, or a symbolic dimension of jax.export.
Size = Any


class ForwardGeometry(Protocol):
    """The fields of a convolution that decide its lengths (a :class:`Conv1DConfig` has them).

    ``padding`` is a mode name or a pair ``(left, right)`` of ints. Read-only, so that the frozen
    configs match.
    """

    @property
    def kernel_size(self) -> int: ...
    @property
    def strides(self) -> int: ...
    @property
    def dilation_rate(self) -> int: ...
    # A config's declared type, which also admits the int it normalizes to a pair.
    @property
    def padding(self) -> str | int | tuple[int, int]: ...


class ConvGeometry(ForwardGeometry, Protocol):
    """The fields of a layer that decide its lengths (a :class:`Conv1DTransposeConfig` has them).

    ``padding`` is ``"valid"``, ``"same"`` or a pair ``(crop_left, crop_right)`` of ints.
    """

    @property
    def output_padding(self) -> int | None: ...


def _pair(padding: str | int | tuple[int, int]) -> tuple[int, int]:
    """A config's integer padding, which its constructor stores as a pair ``(left, right)``."""
    return cast("tuple[int, int]", padding)


class TransposePads(NamedTuple):
    """Pads ``(left, right)`` of the s-dilated input; negative values crop."""

    left: int
    right: int


def effective_kernel_size(kernel_size: int, dilation_rate: int) -> int:
    """``(kernel_size - 1) * dilation_rate + 1``: the span of a dilated kernel."""
    return (kernel_size - 1) * dilation_rate + 1


def transpose_pads(config: ConvGeometry) -> TransposePads:
    """The ``(left, right)`` pads of the s-dilated input that define ``config``'s output: a named
    tuple of two ints (negative values crop).

    The output is a stride-1 convolution of ``pad_(left, right)(dilate_s(x))`` with the flipped
    kernel, so output step ``t`` is position ``t + ke - 1 - left`` of the full result (see
    :func:`convtrans.conv1d_transpose`).

    Keras modes (what ``keras.layers.Conv1DTranspose`` computes on every backend):

    - ``valid``: ``left = ke - 1``, ``right = ke - 1 + op`` with ``op`` defaulting to
      ``max(ke, s) - ke``.
    - ``same``: ``pad = s + ke - 2`` if ``op`` is None, else ``ke + ke % 2 - 2 + op``;
      ``left = min(ceil(pad / 2), ke - 1)``, ``right = pad - left``.

    PyTorch mode (``padding=(p_left, p_right)``): crop ``p_left`` / ``p_right`` samples from the
    full result, then add ``op`` (default 0) samples on the right, so
    ``left = ke - 1 - p_left`` and ``right = ke - 1 - p_right + op``.
    """
    s = config.strides
    ke = effective_kernel_size(config.kernel_size, config.dilation_rate)
    op = config.output_padding
    if config.padding == "valid":
        if op is None:
            op = max(ke, s) - ke
        return TransposePads(ke - 1, ke - 1 + op)
    if config.padding == "same":
        pad = s + ke - 2 if op is None else ke + ke % 2 - 2 + op
        left = min(math.ceil(pad / 2), ke - 1)
        return TransposePads(left, pad - left)
    crop_left, crop_right = _pair(config.padding)
    return TransposePads(ke - 1 - crop_left, ke - 1 - crop_right + (op or 0))


def output_length(config: ConvGeometry, length: Size) -> Size:
    """Length of the output time axis for an input of ``length`` steps.

    Matches Keras's ``Conv1DTranspose`` (``padding`` "valid"/"same") and PyTorch's
    ``ConvTranspose1d`` (integer padding):

    ================  =================  ================================
    padding           output_padding     output length
    ================  =================  ================================
    valid             None               ``(n - 1) * s + max(ke, s)``
    valid             op                 ``(n - 1) * s + ke + op``
    same              None               ``n * s``
    same              op                 ``(n - 1) * s + ke % 2 + op``
    ``(pl, pr)``      op (None = 0)      ``(n - 1) * s + ke - pl - pr + op``
    ================  =================  ================================

    ``length`` may be a symbolic dimension of :mod:`jax.export`; the result is then symbolic too.

    Raises:
      ValueError: if ``length < 1``, or if the padding crops more than the full result holds.
    """
    symbolic = is_symbolic(length)
    if not symbolic and (not is_int(length) or length < 1):
        raise ValueError(
            f"input length must be a positive integer, got {length!r}; "
            "a transposed convolution needs at least one input step."
        )
    length = length if symbolic else int(length)
    pads = transpose_pads(config)
    ke = effective_kernel_size(config.kernel_size, config.dilation_rate)
    out = (length - 1) * config.strides + pads.left + pads.right - ke + 2
    # A symbolic length can be any size >= 1, so there is nothing to check it against here.
    if not symbolic and out < 0:
        raise ValueError(
            f"padding={config.padding!r} crops more than the full output holds: an input of "
            f"length {length} gives a full result of {(length - 1) * config.strides + ke} "
            f"steps, which leaves {out}. Use a longer input or smaller padding."
        )
    return out


def full_result_offset(config: ConvGeometry) -> int:
    """Index in the full result of output sample 0: ``ke - 1 - left`` (negative: zeros before)."""
    ke = effective_kernel_size(config.kernel_size, config.dilation_rate)
    return ke - 1 - transpose_pads(config).left


class OutputBlocks(NamedTuple):
    """An output as blocks of ``s`` full-result positions (block ``q`` is ``q*s .. q*s + s - 1``).

    Blocks ``first <= q < stop`` cover the output, whose step 0 is position ``start`` of block
    ``first`` (``start = c - first * s`` with ``c = full_result_offset(config)``).
    """

    first: int
    stop: int
    start: int


def output_blocks(config: ConvGeometry, steps: int) -> OutputBlocks:
    """The blocks of ``config.strides`` full-result positions that an output of ``steps`` covers."""
    s = config.strides
    c = full_result_offset(config)
    first, stop = c // s, -(-(c + steps) // s)
    return OutputBlocks(first, stop, c - first * s)


class PhaseColumn(NamedTuple):
    """Where one phase's full-result positions land in the output, seen as rows of ``s`` steps.

    Output steps ``column + m * s`` (``m >= 0``) are the phase's blocks ``first + m``.
    """

    column: int
    first: int


def phase_column(config: ConvGeometry, phase: int) -> PhaseColumn:
    """The output column of phase ``r`` and the block holding its first output step.

    Output step ``t`` is full position ``t + c`` (``c = full_result_offset(config)``), so the
    phase of every step of column ``u = (r - c) mod s`` is ``r``, and step ``u + m * s`` lies in
    block ``(c + u) // s + m``.
    """
    s = config.strides
    c = full_result_offset(config)
    column = (phase - c) % s
    return PhaseColumn(column, (c + column) // s)


def kernel_blocks(config: ConvGeometry) -> int:
    """``ceil(ke / s)``: how many blocks of ``s`` full-result positions one input step's taps span."""
    return math.ceil(effective_kernel_size(config.kernel_size, config.dilation_rate) / config.strides)


class PhaseGroup(NamedTuple):
    """Output phases whose taps follow the same pattern, computed by one convolution.

    Phase ``r`` (output steps ``t`` with full position ``= r mod s``) uses the taps ``j`` with
    ``j * d = m * s + r``; their phase taps ``m`` are ``first + i * step`` for ``i < taps``.
    """

    phases: tuple[int, ...]
    first: int
    taps: int
    step: int


def phase_groups(kernel_size: int, strides: int, dilation_rate: int) -> tuple[PhaseGroup, ...]:
    """The phases of a stride-``strides`` transposed convolution, grouped by tap pattern.

    The taps of phase ``r`` are every ``s / gcd(s, d)``-th tap ``j`` from the first with
    ``j * d = r (mod s)``, so their phase taps step by ``d / gcd(s, d)``. With ``d = 1`` there are
    at most two groups: phases ``r < k mod s`` with one tap more than the rest. A phase with no
    taps at all (``s > ke``) has ``taps = 0``: its outputs are zero.

    Costs ``O(k + s)`` Python steps, so callers keep ``s`` to :data:`PHASE_LOOP_MAX_STRIDES`.
    """
    s, d = strides, dilation_rate
    step = d // math.gcd(s, d)
    first_tap: dict[int, int] = {}
    counts: dict[int, int] = {}
    for j in range(kernel_size):
        r = j * d % s
        first_tap.setdefault(r, j * d // s)
        counts[r] = counts.get(r, 0) + 1
    by_pattern: dict[tuple[int, int], list[int]] = {}
    for r in range(s):
        by_pattern.setdefault((first_tap.get(r, 0), counts.get(r, 0)), []).append(r)
    return tuple(
        PhaseGroup(tuple(phases), first, taps, step)
        for (first, taps), phases in sorted(by_pattern.items(), key=lambda kv: kv[1][0])
    )


# The phase forms trace a few operations per phase; past this stride a layer goes to a form whose
# Python work does not grow with the stride (a stride this large is far from any real upsampler).
PHASE_LOOP_MAX_STRIDES = 4096


def phases_share_taps(config: ConvGeometry) -> bool:
    """Whether some phase has two taps or more (``s < ke``); otherwise every full-result position
    receives at most one product and the phase forms would mostly compute zeros."""
    return config.strides < effective_kernel_size(config.kernel_size, config.dilation_rate)


# --- the forward convolution (Conv1D) -------------------------------------------------------


def conv_pads(config: ForwardGeometry, length: int) -> TransposePads:
    """The ``(left, right)`` zeros a convolution (Keras's ``Conv1D``) pads its input with.

    - ``valid``: none; ``causal``: ``ke - 1`` on the left;
    - ``same`` (XLA's and so Keras's on JAX): ``total = max((ceil(n / s) - 1) * s + ke - n, 0)``,
      ``left = total // 2``, ``right = total - left``;
    - PyTorch-style ``(p_left, p_right)``: those.
    """
    ke = effective_kernel_size(config.kernel_size, config.dilation_rate)
    if config.padding == "valid":
        return TransposePads(0, 0)
    if config.padding == "causal":
        return TransposePads(ke - 1, 0)
    if config.padding == "same":
        total = max((-(-length // config.strides) - 1) * config.strides + ke - length, 0)
        return TransposePads(total // 2, total - total // 2)
    return TransposePads(*_pair(config.padding))


def conv_output_length(config: ForwardGeometry, length: int) -> int:
    """Output steps of a convolution of ``length`` input steps: ``(n + left + right - ke) // s + 1``
    with :func:`conv_pads` (``ceil(n / s)`` for ``same``).

    Raises:
      ValueError: if ``length < 1``, or if the padded input is shorter than the kernel's span.
    """
    if not is_int(length) or length < 1:
        raise ValueError(
            f"input length must be a positive integer, got {length!r}; a convolution needs at least one input step."
        )
    left, right = conv_pads(config, length)
    ke = effective_kernel_size(config.kernel_size, config.dilation_rate)
    if length + left + right < ke:
        raise ValueError(
            f"an input of length {length} padded by {(left, right)} is shorter than the kernel's "
            f"span {ke} (kernel_size={config.kernel_size}, dilation_rate={config.dilation_rate}); "
            "use a longer input or more padding."
        )
    return (length + left + right - ke) // config.strides + 1

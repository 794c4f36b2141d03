"""``Plan``: the form of each part of a layer's computation (chosen by :mod:`convtrans._src.dispatch`,
run by :mod:`convtrans._src.kernels.polyphase`)."""

from __future__ import annotations

import dataclasses

FORWARD_FORMS = ("lhs_dilation", "polyphase", "winograd", "gemm")
INPUT_GRADIENT_FORMS = FORWARD_FORMS
KERNEL_GRADIENT_FORMS = FORWARD_FORMS + ("zero_padded",)
CORRELATIONS = ("convolution", "stacked_product")


@dataclasses.dataclass(frozen=True)
class Plan:
    """The form of each part of a layer's computation; :func:`convtrans.plan` gives the default
    plan of a layer and :func:`convtrans.explain` its reasons. Pass one as ``implementation`` to
    force it. The forms are described in the design document ("The dispatch plan").

    The default, ``Plan()``, is the plain polyphase convolution throughout.

    Attributes:
      forward: the form of the output: ``"lhs_dilation"`` (the reference), ``"polyphase"``,
        ``"winograd"`` or ``"gemm"``.
      input_gradient: the form of the tangent in ``x`` (and so of the input gradient), one of the
        same four.
      kernel_gradient: the form of the tangent in the kernel (and of the kernel gradient): one of
        the four, or ``"zero_padded"``.
      correlation: how the forward pass's stride-1 correlations run: ``"convolution"`` or
        ``"stacked_product"`` (bfloat16 on CPU: one product of stacked shifted windows,
        accumulated in float32).

    Raises:
      ValueError: for an unknown form name.
    """

    forward: str = "polyphase"
    input_gradient: str = "polyphase"
    kernel_gradient: str = "polyphase"
    correlation: str = "convolution"

    def __post_init__(self) -> None:
        for name, allowed in (
            ("forward", FORWARD_FORMS),
            ("input_gradient", INPUT_GRADIENT_FORMS),
            ("kernel_gradient", KERNEL_GRADIENT_FORMS),
            ("correlation", CORRELATIONS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"Plan {name}={value!r} is unknown; expected one of {allowed}.")

    @classmethod
    def uniform(cls, form: str) -> Plan:
        """Every part by ``form`` (``lhs_dilation``, ``polyphase``, ``winograd`` or ``gemm``)."""
        return cls(form, form, form)

    @property
    def is_uniform(self) -> bool:
        """Whether every part uses the forward's form (its derivatives are the forward's own)."""
        return self.input_gradient == self.kernel_gradient == self.forward and self.correlation == "convolution"

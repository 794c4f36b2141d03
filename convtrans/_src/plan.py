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
    """The form of each part of a layer's computation (the forms: :mod:`convtrans._src.dispatch`).

    The default, ``Plan()``, is the plain polyphase convolution throughout.
    """

    forward: str = "polyphase"
    input_gradient: str = "polyphase"
    kernel_gradient: str = "polyphase"
    correlation: str = "convolution"

    def __post_init__(self) -> None:
        for name, allowed in (("forward", FORWARD_FORMS), ("input_gradient", INPUT_GRADIENT_FORMS),
                              ("kernel_gradient", KERNEL_GRADIENT_FORMS),
                              ("correlation", CORRELATIONS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"Plan {name}={value!r} is unknown; expected one of {allowed}.")

    @classmethod
    def uniform(cls, form: str) -> "Plan":
        """Every part by ``form`` (``lhs_dilation``, ``polyphase``, ``winograd`` or ``gemm``)."""
        return cls(form, form, form)

    @property
    def is_uniform(self) -> bool:
        """Whether every part uses the forward's form (its derivatives are the forward's own)."""
        return (self.input_gradient == self.kernel_gradient == self.forward
                and self.correlation == "convolution")

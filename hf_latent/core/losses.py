"""The common surface of every loss module in hf_latent, and the checks their constructors and inputs share.

- [`LossBase`]: `get_config_dict()` (for the model card and logs), `citation` (the paper's BibTeX, a class
  attribute set by each method's base class) and an `extra_repr` listing the configuration.
- [`check_temperature`], [`check_weight`], [`check_positive`]: scalar hyper-parameters, returned as floats.
- [`check_tensor`]: a tensor input's type and number of dimensions, with the expected shape in the message.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from torch import Tensor, nn


class LossBase(nn.Module):
    """Base of the loss modules: `get_config_dict()`, `citation`, and a repr built from the configuration."""

    CITATION: ClassVar[str] = ""

    def get_config_dict(self) -> dict[str, Any]:
        """The constructor arguments that define this loss, for the model card and logging."""
        raise NotImplementedError

    @property
    def citation(self) -> str:
        """BibTeX of the paper that defines this loss."""
        return self.CITATION

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.get_config_dict().items())


def check_positive(name: str, value: float) -> float:
    """Return `value` as a float, or raise `ValueError` unless it is a positive finite number."""
    value = float(value)
    if not 0.0 < value < math.inf:
        raise ValueError(f"{name} must be a positive finite number, got {value}.")
    return value


def check_temperature(name: str, value: float) -> float:
    """A softmax temperature τ: positive and finite (scores are divided by it)."""
    return check_positive(name, value)


def check_weight(name: str, value: float) -> float:
    """Return `value` as a float, or raise `ValueError` unless it is a non-negative finite number (0 = term off)."""
    value = float(value)
    if not 0.0 <= value < math.inf:
        raise ValueError(f"{name} must be a non-negative finite number, got {value}.")
    return value


def check_tensor(name: str, tensor: Any, ndim: int, shape_doc: str, loss_name: str | None = None) -> None:
    """Raise `TypeError` unless `tensor` is a `Tensor`, `ValueError` unless it has `ndim` dimensions.

    Args:
        name: the argument's name in the message; `loss_name` (when given) prefixes it.
        shape_doc: the expected shape as text, e.g. `"(batch, hidden)"`.
    """
    label = f"{loss_name}: {name}" if loss_name else name
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{label} must be a torch.Tensor of shape {shape_doc}, got {type(tensor).__name__}.")
    if tensor.ndim != ndim:
        raise ValueError(f"{label} must have shape {shape_doc}, got {tuple(tensor.shape)}.")

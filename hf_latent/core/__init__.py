"""Machinery shared by the LaSER and LatentRAG packages: loss base class, loss and training-argument checks, and the
trainers' per-term loss logging."""

from .loss_logging import LossLoggingMixin
from .losses import LossBase, check_positive, check_temperature, check_tensor, check_weight
from .training import (
    apply_trainer_defaults,
    check_fields,
    check_int_fields,
    check_loss_variant,
    check_positive_fields,
    check_weight_fields,
    is_int,
    is_number,
    resolve_loss_weights,
    trainer_arguments,
)


__all__ = [
    "LossBase",
    "LossLoggingMixin",
    "apply_trainer_defaults",
    "check_fields",
    "check_int_fields",
    "check_loss_variant",
    "check_positive",
    "check_positive_fields",
    "check_temperature",
    "check_tensor",
    "check_weight",
    "check_weight_fields",
    "is_int",
    "is_number",
    "resolve_loss_weights",
    "trainer_arguments",
]

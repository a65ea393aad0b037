"""Checks and defaults shared by the `__post_init__` of `LaserTrainingArguments` and `LatentRAGTrainingArguments`.

The `check_*_fields` helpers read each named field of `args` and raise `ValueError` with the message
"`name` must be <expected>, got <value!r>." for the first one that fails.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def is_number(value: object) -> bool:
    """An `int` or `float`, but not a `bool`."""
    return not isinstance(value, bool) and isinstance(value, (int, float))


def is_int(value: object, minimum: int) -> bool:
    """An `int` (not a `bool`) >= `minimum`."""
    return not isinstance(value, bool) and isinstance(value, int) and value >= minimum


def check_fields(args: Any, names: Iterable[str], is_valid: Callable[[Any], bool], expected: str) -> None:
    """Raise `ValueError` for the first field of `names` whose value fails `is_valid`."""
    for name in names:
        value = getattr(args, name)
        if not is_valid(value):
            raise ValueError(f"`{name}` must be {expected}, got {value!r}.")


def check_positive_fields(args: Any, *names: str) -> None:
    """Each field is a positive finite number (temperatures, LoRA α)."""
    check_fields(
        args, names, lambda value: is_number(value) and 0.0 < float(value) < math.inf, "a positive finite number"
    )


def check_weight_fields(args: Any, *names: str) -> None:
    """Each field is `None` (= from the loss variant) or a non-negative finite number (loss weights)."""
    check_fields(
        args,
        names,
        lambda value: value is None or (is_number(value) and 0.0 <= float(value) < math.inf),
        "None or a non-negative finite number",
    )


def check_int_fields(args: Any, *names: str, minimum: int = 1, optional: bool = False) -> None:
    """Each field is an integer >= `minimum` (or `None` when `optional`)."""
    expected = f"{'None or ' if optional else ''}an integer >= {minimum}"
    check_fields(args, names, lambda value: (optional and value is None) or is_int(value, minimum), expected)


def check_loss_variant(loss_variant: str, variants: Mapping[str, Any]) -> None:
    """Raise `ValueError` unless `loss_variant` is a key of `variants`."""
    if loss_variant not in variants:
        raise ValueError(f"Unknown `loss_variant` {loss_variant!r}; expected one of {sorted(variants)}.")


def resolve_loss_weights(args: Any, variant: Any, names: Iterable[str]) -> dict[str, float]:
    """Each weight field of `args` as a float: its own value, or the variant's attribute of that name when `None`."""
    return {
        name: float(getattr(variant, name) if getattr(args, name) is None else getattr(args, name)) for name in names
    }


def trainer_arguments(args: Any, args_class: type, default_output_dir: str, plain_args_message: str) -> Any:
    """`args` checked for a trainer: `None` gives `args_class(output_dir=default_output_dir)`; another type raises.

    Args:
        args_class: the method's `TrainingArguments` subclass.
        plain_args_message: the `TypeError` for a plain `TrainingArguments`; `{got}` stands for its class name.
    """
    if args is None:
        return args_class(output_dir=default_output_dir)
    if isinstance(args, args_class):
        return args
    from transformers import TrainingArguments  # here: the loss modules import hf_latent.core without transformers

    if isinstance(args, TrainingArguments):
        raise TypeError(plain_args_message.format(got=type(args).__name__))
    raise TypeError(f"args must be {args_class.__name__}, got {type(args).__name__}.")


def apply_trainer_defaults(args: Any, columns: str, collator: str, logger: logging.Logger) -> None:
    """Force `remove_unused_columns=False` (with a warning) and turn activation checkpointing off unless asked for.

    Args:
        columns: what the collator reads, for the warning (e.g. `"text"` columns).
        collator: the collator's class name, for the warning.
        logger: the logger of the arguments' module.
    """
    if args.remove_unused_columns:
        logger.warning(
            f"remove_unused_columns=True would drop the {columns} columns {collator} needs; setting it to False."
        )
        args.remove_unused_columns = False
    # Explicit CPU-sane default (STYLE §2): no activation checkpointing unless asked for, under either name.
    if args.activation_checkpointing is None and args.gradient_checkpointing is None:
        args.activation_checkpointing = False


__all__ = [
    "apply_trainer_defaults",
    "check_fields",
    "check_int_fields",
    "check_loss_variant",
    "check_positive_fields",
    "check_weight_fields",
    "is_int",
    "is_number",
    "resolve_loss_weights",
    "trainer_arguments",
]

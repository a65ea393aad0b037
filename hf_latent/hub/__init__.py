"""Hub-native checkpoints: model cards (`model_card.py`) and uploads of saved folders (`push.py`)."""

from __future__ import annotations

from .model_card import (
    ModelCardCallback,
    ModelCardMixin,
    create_laser_model_card,
    create_latentrag_model_card,
    normalize_eval_results,
    read_checkpoint_config,
    render_model_card,
    write_model_card,
)


__all__ = [
    "ModelCardCallback",
    "ModelCardMixin",
    "create_laser_model_card",
    "create_latentrag_model_card",
    "normalize_eval_results",
    "read_checkpoint_config",
    "render_model_card",
    "write_model_card",
]

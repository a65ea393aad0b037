"""Hub-native checkpoints: model cards (`model_card.py`) and uploads of saved checkpoint folders (`push.py`).

- [`write_model_card`]: the `README.md` of any saved LaSER / LatentRAG checkpoint (offline).
- [`create_laser_model_card`] / [`create_latentrag_model_card`] / [`ModelCardMixin`] / [`ModelCardCallback`]: the
  trainers' cards (`save_model`, `push_to_hub`).
- [`push_checkpoint`]: `create_repo` + `upload_folder` of a checkpoint folder, checked for `trust_remote_code` loading.
"""

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
from .push import inspect_checkpoint, push_checkpoint


__all__ = [
    "ModelCardCallback",
    "ModelCardMixin",
    "create_laser_model_card",
    "create_latentrag_model_card",
    "inspect_checkpoint",
    "normalize_eval_results",
    "push_checkpoint",
    "read_checkpoint_config",
    "render_model_card",
    "write_model_card",
]

"""[`LossLoggingMixin`]: the per-term loss logging of the LaSER and LatentRAG trainers (TRL style)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import torch


class LossLoggingMixin:
    """Logs the terms of a loss computed in `compute_loss`, each averaged over the logging interval.

    Put it before `Trainer` in the bases. `compute_loss` hands each micro-batch's scalars to `_store_metrics`; `log`
    adds their interval means (`eval_`-prefixed in evaluation) to the Trainer's logs. Sets `can_return_loss`, since
    `Trainer.prediction_step` only computes an eval loss for models that "can return a loss" and ours comes from
    `compute_loss`: evaluation then gives `eval_loss` and the logged terms.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.can_return_loss = True
        # mode ("train" / "eval") -> metric name -> one value per micro-batch since the last `log`.
        self._metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}

    def _store_metrics(self, values: Mapping[str, torch.Tensor], reduce: bool) -> None:
        """Append one value per name; `values` are scalar tensors, averaged over processes first when `reduce`."""
        if not values:
            return
        mode = "train" if self.model.training else "eval"
        stacked = torch.stack([value.detach().float().reshape(()) for value in values.values()])
        if reduce:
            stacked = self.accelerator.reduce(stacked, reduction="mean")
        for name, value in zip(values, stacked.tolist()):
            self._metrics[mode][name].append(value)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the loss terms averaged over the interval, then clear them."""
        mode = "train" if self.model.training else "eval"
        metrics = {key: sum(values) / len(values) for key, values in self._metrics[mode].items() if values}
        if mode == "eval":
            metrics = {f"eval_{key}": value for key, value in metrics.items()}
        logs.update(metrics)
        super().log(logs, start_time)
        self._metrics[mode].clear()


__all__ = ["LossLoggingMixin"]

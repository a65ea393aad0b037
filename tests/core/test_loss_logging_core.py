"""Tests for `hf_latent/core/loss_logging.py`: per-term loss logging shared by the LaSER and LatentRAG trainers."""

from types import SimpleNamespace

import torch

from hf_latent.core import LossLoggingMixin


class _FakeTrainer:
    def __init__(self) -> None:
        self.model = SimpleNamespace(training=True)
        self.logged: list[dict[str, float]] = []

    def log(self, logs, start_time=None):
        self.logged.append(dict(logs))


class _Trainer(LossLoggingMixin, _FakeTrainer):
    pass


def test_terms_are_averaged_per_interval_and_prefixed_in_eval():
    trainer = _Trainer()
    assert trainer.can_return_loss
    trainer._store_metrics({"loss/a": torch.tensor(1.0), "n": torch.tensor([3.0])}, reduce=False)
    trainer._store_metrics({"loss/a": torch.tensor(2.0)}, reduce=False)
    trainer._store_metrics({}, reduce=False)
    trainer.log({"loss": 5.0})
    assert trainer.logged[-1] == {"loss": 5.0, "loss/a": 1.5, "n": 3.0}
    assert not trainer._metrics["train"]
    trainer.model.training = False
    trainer._store_metrics({"loss/a": torch.tensor(4.0)}, reduce=False)
    trainer.log({})
    assert trainer.logged[-1] == {"eval_loss/a": 4.0}

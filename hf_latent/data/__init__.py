"""Data: the shipped demo corpus and loaders for the real data in `shared/data`."""

from __future__ import annotations

from .bright import (
    BRIGHT_TASKS,
    STACKEXCHANGE_TASKS,
    load_bright,
    load_bright_qrels,
    load_bright_stackexchange_proxy,
)
from .demo import load_demo_corpus
from .hotpotqa import load_hotpotqa
from .ircot import load_ircot_hotpotqa
from .jsonl import DataFormatError, read_jsonl
from .multihop import MultiHopQA, split_by_id
from .paths import shared_data_dir


__all__ = [
    "BRIGHT_TASKS",
    "STACKEXCHANGE_TASKS",
    "DataFormatError",
    "MultiHopQA",
    "load_bright",
    "load_bright_qrels",
    "load_bright_stackexchange_proxy",
    "load_demo_corpus",
    "load_hotpotqa",
    "load_ircot_hotpotqa",
    "read_jsonl",
    "shared_data_dir",
    "split_by_id",
]

"""Test settings: never touch the network, keep Hub caches in a temporary folder."""

from __future__ import annotations

import os
import tempfile


# Set before transformers / huggingface_hub / evaluate are imported: they read these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="hf_latent_tests_hf_home_"))

import pytest  # noqa: E402
import torch  # noqa: E402


torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def hotpotqa():
    from hf_latent.data import load_hotpotqa

    return load_hotpotqa()

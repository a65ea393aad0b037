"""Tests for `hf_latent/core/losses.py`: the base class and checks shared by both methods' losses."""

import math

import pytest
import torch

from hf_latent.core import LossBase, check_temperature, check_tensor, check_weight
from hf_latent.laser.losses import LatentContrastiveLoss
from hf_latent.latentrag.losses import RetrievalAlignmentLoss


def test_both_methods_share_the_base_class_and_cite_their_paper():
    laser, latentrag = LatentContrastiveLoss(), RetrievalAlignmentLoss()
    assert isinstance(laser, LossBase) and isinstance(latentrag, LossBase)
    assert "2603.01425" in laser.citation and "2605.06285" in latentrag.citation
    assert repr(laser) == "LatentContrastiveLoss(temperature=0.02)"
    with pytest.raises(NotImplementedError):
        LossBase().get_config_dict()


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_scalar_checks(bad):
    assert check_temperature("tau", "0.5") == 0.5 and check_weight("w", 0) == 0.0
    with pytest.raises(ValueError, match="tau must be a positive finite number"):
        check_temperature("tau", bad)
    if bad != 0.0:
        with pytest.raises(ValueError, match="w must be a non-negative finite number"):
            check_weight("w", bad)


def test_check_tensor_names_the_expected_shape():
    check_tensor("x", torch.zeros(2, 3), 2, "(batch, hidden)")
    with pytest.raises(TypeError, match=r"MyLoss: x must be a torch.Tensor of shape \(batch, hidden\), got list"):
        check_tensor("x", [1.0], 2, "(batch, hidden)", "MyLoss")
    with pytest.raises(ValueError, match=r"x must have shape \(batch, hidden\), got \(2, 3, 4\)"):
        check_tensor("x", torch.zeros(2, 3, 4), 2, "(batch, hidden)")

"""Machinery shared by the LaSER and LatentRAG packages (loss base class and argument checks)."""

from .losses import LossBase, check_positive, check_temperature, check_tensor, check_weight


__all__ = ["LossBase", "check_positive", "check_temperature", "check_tensor", "check_weight"]

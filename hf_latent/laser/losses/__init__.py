"""LaSER loss terms as small `nn.Module`s on tensors (specs/laser.md §4 and §7; arXiv 2603.01425).

| module | term | paper |
|---|---|---|
| [`LatentContrastiveLoss`] | `L_cl^L`, latent-view InfoNCE | Eq. 8 |
| [`ExplicitContrastiveLoss`] | `L_cl^E`, explicit-view InfoNCE | Eq. 13 (λ1) |
| [`OutputDistillationLoss`] | `L_kl^out`, teacher → student KL over the in-batch scores | Eqs. 9–10 |
| [`TrajectoryAlignmentLoss`] | `L_kl^mid`, per-step KL against CoT segment states | Eq. 12 |
| [`LaserLoss`] | the weighted total and its components | Eq. 13 |

[`LOSS_VARIANTS`] maps the ablation names of paper Table 5 to [`LaserLossVariant`] settings (weights, whether
the model runs at K = 1, whether the teacher is frozen).
"""

from __future__ import annotations

from .explicit_contrastive_loss import ExplicitContrastiveLoss
from .laser_loss import LOSS_VARIANTS, LaserLoss, LaserLossOutput, LaserLossVariant
from .latent_contrastive_loss import LatentContrastiveLoss
from .output_distillation_loss import OutputDistillationLoss
from .trajectory_alignment_loss import TrajectoryAlignmentLoss


__all__ = [
    "LOSS_VARIANTS",
    "ExplicitContrastiveLoss",
    "LaserLoss",
    "LaserLossOutput",
    "LaserLossVariant",
    "LatentContrastiveLoss",
    "OutputDistillationLoss",
    "TrajectoryAlignmentLoss",
]

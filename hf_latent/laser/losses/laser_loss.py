"""The LaSER objective: the weighted sum of the four terms, plus the ablation variants (specs/laser.md §4–§7)."""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from torch import Tensor

from ._utils import LaserLossBase, check_group_size, check_temperature, check_weight
from .explicit_contrastive_loss import ExplicitContrastiveLoss
from .latent_contrastive_loss import LatentContrastiveLoss
from .output_distillation_loss import OutputDistillationLoss
from .trajectory_alignment_loss import TrajectoryAlignmentLoss


logger = logging.getLogger(__name__)


@functools.cache
def _warning_once(message: str) -> None:
    logger.warning(message)


# Keys of `LaserLossOutput.components`, in the order of Eq. 13.
LATENT_CONTRASTIVE = "latent_contrastive"
EXPLICIT_CONTRASTIVE = "explicit_contrastive"
OUTPUT_KL = "output_kl"
TRAJECTORY_KL = "trajectory_kl"


@dataclass(frozen=True)
class LaserLossVariant:
    """Loss weights and model settings of one LaSER training variant (paper Table 5; specs/laser.md §7).

    A training-arguments class can read everything it needs from here: the four weights go to [`LaserLoss`]
    (see [`LaserLoss.for_variant`]), `num_latent_steps` overrides the model's K, and the `needs_*` properties
    tell the trainer which forward passes it may skip.

    Args:
        name (`str`):
            Key in [`LOSS_VARIANTS`].
        latent_contrastive_weight (`float`):
            Weight of `L_cl^L` (1 except in stage 1 of "w/o co-learning").
        explicit_contrastive_weight (`float`):
            λ1, weight of `L_cl^E`.
        output_kl_weight (`float`):
            λ2, weight of `L_kl^out`.
        trajectory_kl_weight (`float`):
            λ3, weight of `L_kl^mid`.
        num_latent_steps (`int`, *optional*):
            `1` when the variant requires the model to run with K = 1 (a single pass, no latent tokens: the
            embedding is the last-token state); `None` to keep the configured K (3 in the paper).
        frozen_teacher (`bool`, *optional*, defaults to `False`):
            `True` when the teacher inputs must come from a separately trained, frozen explicit-view model scoring
            its *own* passage encodings (stage 2 of "w/o co-learning"); see [`LaserLoss`].
        description (`str`, *optional*, defaults to `""`):
            One line on what the variant means.
    """

    name: str
    latent_contrastive_weight: float
    explicit_contrastive_weight: float
    output_kl_weight: float
    trajectory_kl_weight: float
    num_latent_steps: int | None = None
    frozen_teacher: bool = False
    description: str = ""

    @property
    def single_pass(self) -> bool:
        """Whether the model must run with K = 1 (no latent thinking steps)."""
        return self.num_latent_steps == 1

    @property
    def needs_explicit_view(self) -> bool:
        """Whether the trainer must run the explicit (query + CoT) view to get Q* (and T)."""
        return self.explicit_contrastive_weight > 0 or self.output_kl_weight > 0 or self.trajectory_kl_weight > 0

    @property
    def needs_latent_query(self) -> bool:
        """Whether the trainer must encode the queries in the latent view (Q, and H for the trajectory term)."""
        return self.latent_contrastive_weight > 0 or self.output_kl_weight > 0 or self.trajectory_kl_weight > 0

    @property
    def needs_segment_states(self) -> bool:
        """Whether the trainer must return the latent step states H and segment targets T."""
        return self.trajectory_kl_weight > 0

    def loss_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of [`LaserLoss`] that this variant fixes (the four weights and `frozen_teacher`)."""
        return {
            "latent_contrastive_weight": self.latent_contrastive_weight,
            "explicit_contrastive_weight": self.explicit_contrastive_weight,
            "output_kl_weight": self.output_kl_weight,
            "trajectory_kl_weight": self.trajectory_kl_weight,
            "frozen_teacher": self.frozen_teacher,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Paper Table 5 as configuration (specs/laser.md §7: meaning [P], configuration [D]).
LOSS_VARIANTS: dict[str, LaserLossVariant] = {
    variant.name: variant
    for variant in (
        LaserLossVariant(
            "laser",
            1.0,
            1.0,
            10.0,
            0.1,
            description="Full LaSER: L_cl^L + L_cl^E + 10 L_kl^out + 0.1 L_kl^mid (Eq. 13).",
        ),
        LaserLossVariant(
            "basic_contrastive",
            1.0,
            0.0,
            0.0,
            0.0,
            num_latent_steps=1,
            description="Fair baseline: same data and backbone, single pass (K = 1), latent InfoNCE only.",
        ),
        LaserLossVariant(
            "no_explicit_view",
            1.0,
            0.0,
            0.0,
            0.0,
            description="w/o Explicit View: latent thinking (K kept) with latent InfoNCE only; no teacher pass.",
        ),
        LaserLossVariant(
            "no_latent_view",
            1.0,
            1.0,
            10.0,
            0.0,
            num_latent_steps=1,
            description=(
                "w/o Latent View: single pass (K = 1) co-trained with the explicit view; λ3 = 0 (undefined at K = 1)."
            ),
        ),
        LaserLossVariant(
            "no_output_distillation",
            1.0,
            1.0,
            0.0,
            0.1,
            description="w/o Output Distillation: λ2 = 0.",
        ),
        LaserLossVariant(
            "no_process_alignment",
            1.0,
            1.0,
            10.0,
            0.0,
            description="w/o Process Alignment: λ3 = 0.",
        ),
        LaserLossVariant(
            "no_co_learning_stage1",
            0.0,
            1.0,
            0.0,
            0.0,
            description="w/o Co-Learning, stage 1: train the explicit-view teacher alone with L_cl^E.",
        ),
        LaserLossVariant(
            "no_co_learning_stage2",
            1.0,
            0.0,
            10.0,
            0.1,
            frozen_teacher=True,
            description=(
                "w/o Co-Learning, stage 2: the stage-1 teacher, frozen, scores its own passage encodings; the student "
                "is trained with L_cl^L + 10 L_kl^out + 0.1 L_kl^mid."
            ),
        ),
    )
}


class LaserLossOutput(NamedTuple):
    """What [`LaserLoss`] returns; unpacks as a tuple `loss, components = laser_loss(...)`.

    Args:
        loss (`Tensor`):
            Scalar total `Σ_t weight_t · term_t` over the computed terms, with gradient. Under data parallelism,
            multiply it by [`hf_latent.laser.distributed.global_loss_scale`] before `backward`, but log it unscaled.
        components (`dict[str, Tensor]`):
            The **unweighted**, detached value of each computed term, under the keys `"latent_contrastive"`,
            `"explicit_contrastive"`, `"output_kl"` and `"trajectory_kl"`. Skipped terms are absent.
    """

    loss: Tensor
    components: dict[str, Tensor]


class LaserLoss(LaserLossBase):
    r"""The LaSER training objective: `L = L_cl^L + λ1·L_cl^E + λ2·L_kl^out + λ3·L_kl^mid`, with its components.

    Runs the four term modules ([`LatentContrastiveLoss`], [`ExplicitContrastiveLoss`], [`OutputDistillationLoss`],
    [`TrajectoryAlignmentLoss`]) and returns the weighted total plus a dict of detached per-term values for logging.

    **Skipped terms.** A term whose weight is 0, or whose inputs are `None`, is not computed at all and is absent
    from `components` (so ablations cost nothing and the trainer can skip the teacher pass). A term with a
    positive weight but missing inputs is skipped with a one-time warning; if no term can be computed, a
    `ValueError` is raised.

    Args:
        temperature (`float`, *optional*, defaults to `0.02`):
            τ of both InfoNCE terms.
        kd_temperature (`float`, *optional*, defaults to `0.02`):
            τ_kd of the output-distillation KL.
        trajectory_temperature (`float`, *optional*, defaults to `0.05`):
            τ_mid of the trajectory KL (released-code value; the paper gives none, specs/laser.md §4).
        latent_contrastive_weight (`float`, *optional*, defaults to `1.0`):
            Weight of `L_cl^L`; 1 in the paper, 0 only in stage 1 of "w/o co-learning".
        explicit_contrastive_weight (`float`, *optional*, defaults to `1.0`):
            λ1, weight of `L_cl^E`.
        output_kl_weight (`float`, *optional*, defaults to `10.0`):
            λ2, weight of `L_kl^out`.
        trajectory_kl_weight (`float`, *optional*, defaults to `0.1`):
            λ3, weight of `L_kl^mid`.
        group_size (`int`, *optional*):
            G (`train_group_size`); validates the pool size. `None` infers it from the shapes.
        frozen_teacher (`bool`, *optional*, defaults to `False`):
            Stage 2 of the "w/o co-learning" ablation (spec §7): the teacher inputs come from a frozen,
            separately trained explicit-view model. Requires `explicit_contrastive_weight == 0` (nothing may train
            the teacher), and the KL terms then score the teacher side against `teacher_passage_embeddings` (the
            frozen model's own passage encodings), which becomes required. All teacher inputs are detached. The
            stage-1 training of that teacher is the variant "no_co_learning_stage1"; freezing and copying the
            model are the trainer's job.

    References:
        - LaSER, Eq. 13 (total), Eqs. 8–12 (terms) and Table 5 (ablations), arXiv 2603.01425;
          specs/laser.md §4 and §7.

    Requirements:
        1. Q, Q*, P L2-normalised by the caller; H and T un-normalised (the trajectory term normalises them).
        2. Under data parallelism, every input gathered across processes with
           [`hf_latent.laser.distributed.gather_with_grad`] (local slice keeps its graph), so B is the global
           per-micro-step batch; the trainer multiplies `loss` by `global_loss_scale()` before `backward`.

    Inputs:
        | name | shape | meaning (terms that use it) |
        |---|---|---|
        | `query_embeddings` | `(batch, hidden)` | Q, latent-view queries (latent_contrastive, output_kl) |
        | `passage_embeddings` | `(batch * group_size, hidden)` | P, latent-view passage pool (all four) |
        | `teacher_query_embeddings` | `(batch, hidden)` | Q*, explicit-view queries (explicit_contrastive, KL) |
        | `latent_states` | `(batch, num_latent_steps, hidden)` | H, latent step states (trajectory_kl) |
        | `teacher_segment_states` | `(batch, num_latent_steps, hidden)` | T, CoT segment states (trajectory_kl) |
        | `teacher_passage_embeddings` | `(batch * group_size, hidden)` | frozen teacher's pool (`frozen_teacher`) |

        The pool is laid out `[pos_0, neg_0, ..., pos_1, neg_1, ...]`. Every input but P may be `None` (see above).

    Relations:
        - Gradient flow (spec §4): Q and H ← latent_contrastive, output_kl, trajectory_kl; P ← all four terms;
          Q* ← explicit_contrastive only; T ← none.
        - Ablations (spec §7) are weight settings, listed in [`LOSS_VARIANTS`] and built with
          [`LaserLoss.for_variant`]: "laser", "basic_contrastive", "no_explicit_view", "no_latent_view",
          "no_output_distillation", "no_process_alignment", "no_co_learning_stage1", "no_co_learning_stage2".
          "basic_contrastive" and "no_latent_view" also need the model at K = 1
          (`LOSS_VARIANTS[name].num_latent_steps == 1`).
        - There is deliberately no MSE/cosine term between Q and Q* (spec §4).

    Example:

        ```python
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from hf_latent.laser.losses import LaserLoss
        >>> B, G, K, d = 2, 2, 3, 8
        >>> q, q_star = F.normalize(torch.randn(B, d), dim=-1), F.normalize(torch.randn(B, d), dim=-1)
        >>> p = F.normalize(torch.randn(B * G, d), dim=-1)
        >>> h, t = torch.randn(B, K, d), torch.randn(B, K, d)
        >>> loss, components = LaserLoss()(
        ...     query_embeddings=q, passage_embeddings=p, teacher_query_embeddings=q_star,
        ...     latent_states=h, teacher_segment_states=t,
        ... )
        >>> sorted(components)
        ['explicit_contrastive', 'latent_contrastive', 'output_kl', 'trajectory_kl']
        >>> LaserLoss.for_variant("no_explicit_view")(query_embeddings=q, passage_embeddings=p).components.keys()
        dict_keys(['latent_contrastive'])
        ```
    """

    def __init__(
        self,
        temperature: float = 0.02,
        kd_temperature: float = 0.02,
        trajectory_temperature: float = 0.05,
        latent_contrastive_weight: float = 1.0,
        explicit_contrastive_weight: float = 1.0,
        output_kl_weight: float = 10.0,
        trajectory_kl_weight: float = 0.1,
        group_size: int | None = None,
        frozen_teacher: bool = False,
    ) -> None:
        super().__init__()
        check_temperature("temperature", temperature)
        check_temperature("kd_temperature", kd_temperature)
        check_temperature("trajectory_temperature", trajectory_temperature)
        check_group_size(group_size)
        self.weights: dict[str, float] = {
            LATENT_CONTRASTIVE: check_weight("latent_contrastive_weight", latent_contrastive_weight),
            EXPLICIT_CONTRASTIVE: check_weight("explicit_contrastive_weight", explicit_contrastive_weight),
            OUTPUT_KL: check_weight("output_kl_weight", output_kl_weight),
            TRAJECTORY_KL: check_weight("trajectory_kl_weight", trajectory_kl_weight),
        }
        if not any(weight > 0 for weight in self.weights.values()):
            raise ValueError("LaserLoss: at least one loss weight must be positive.")
        self.frozen_teacher = bool(frozen_teacher)
        if self.frozen_teacher and self.weights[EXPLICIT_CONTRASTIVE] > 0:
            raise ValueError(
                "LaserLoss: frozen_teacher=True requires explicit_contrastive_weight=0 (a frozen teacher is not "
                "trained; see the 'no_co_learning_stage2' variant)."
            )
        self.group_size = group_size
        self.variant: str | None = None
        self.latent_contrastive = LatentContrastiveLoss(temperature=temperature, group_size=group_size)
        self.explicit_contrastive = ExplicitContrastiveLoss(temperature=temperature, group_size=group_size)
        self.output_kl = OutputDistillationLoss(temperature=kd_temperature, group_size=group_size)
        self.trajectory_kl = TrajectoryAlignmentLoss(temperature=trajectory_temperature, group_size=group_size)

    @classmethod
    def for_variant(cls, name: str, **kwargs: Any) -> LaserLoss:
        """Build the loss of a variant in [`LOSS_VARIANTS`] (e.g. `"laser"`, `"no_process_alignment"`).

        `kwargs` (temperatures, `group_size`, or a weight to override) are passed on to the constructor. The
        variant's `num_latent_steps` is a *model* setting and is not applied here: read it from
        `LOSS_VARIANTS[name]`.
        """
        if name not in LOSS_VARIANTS:
            raise ValueError(f"Unknown LaSER variant {name!r}; expected one of {sorted(LOSS_VARIANTS)}.")
        loss = cls(**{**LOSS_VARIANTS[name].loss_kwargs(), **kwargs})
        loss.variant = name
        return loss

    @property
    def active_terms(self) -> list[str]:
        """Names of the terms with a positive weight, in the order of Eq. 13."""
        return [name for name, weight in self.weights.items() if weight > 0]

    def forward(
        self,
        query_embeddings: Tensor | None,
        passage_embeddings: Tensor,
        teacher_query_embeddings: Tensor | None = None,
        latent_states: Tensor | None = None,
        teacher_segment_states: Tensor | None = None,
        teacher_passage_embeddings: Tensor | None = None,
    ) -> LaserLossOutput:
        """Return `LaserLossOutput(loss, components)`; shapes as in the Inputs table of the class docstring."""
        if self.frozen_teacher:
            teacher_query_embeddings = _detach(teacher_query_embeddings)
            teacher_segment_states = _detach(teacher_segment_states)
            teacher_passage_embeddings = _detach(teacher_passage_embeddings)
        elif teacher_passage_embeddings is not None:
            raise ValueError(
                "LaserLoss: teacher_passage_embeddings is only used with frozen_teacher=True; in co-learning the "
                "teacher scores the shared passage_embeddings."
            )

        # (term, inputs it needs, how to compute it); weight 0 or a missing input skips the term (class docstring).
        terms = (
            (
                LATENT_CONTRASTIVE,
                (query_embeddings,),
                lambda: self.latent_contrastive(query_embeddings, passage_embeddings),
            ),
            (
                EXPLICIT_CONTRASTIVE,
                (teacher_query_embeddings,),
                lambda: self.explicit_contrastive(teacher_query_embeddings, passage_embeddings),
            ),
            (
                OUTPUT_KL,
                (query_embeddings, teacher_query_embeddings),
                lambda: self.output_kl(
                    query_embeddings, teacher_query_embeddings, passage_embeddings, teacher_passage_embeddings
                ),
            ),
            (
                TRAJECTORY_KL,
                (latent_states, teacher_segment_states),
                lambda: self.trajectory_kl(
                    latent_states, teacher_segment_states, passage_embeddings, teacher_passage_embeddings
                ),
            ),
        )
        total: Tensor | None = None
        components: dict[str, Tensor] = {}
        for name, inputs, compute in terms:
            weight = self.weights[name]
            if weight == 0:
                continue
            if any(tensor is None for tensor in inputs):
                _warning_once(f"LaserLoss: skipping the {name!r} term (weight {weight}) because its inputs are None.")
                continue
            if self.frozen_teacher and name in (OUTPUT_KL, TRAJECTORY_KL) and teacher_passage_embeddings is None:
                raise ValueError(
                    f"LaserLoss: frozen_teacher=True needs teacher_passage_embeddings (the frozen teacher's own "
                    f"passage encodings) for the {name!r} term."
                )
            value = compute()
            components[name] = value.detach()
            weighted = value if weight == 1 else weight * value
            total = weighted if total is None else total + weighted
        if total is None:
            raise ValueError(
                f"LaserLoss: no term could be computed; active terms {self.active_terms} all lack inputs "
                "(query_embeddings, teacher_query_embeddings, latent_states, teacher_segment_states)."
            )
        return LaserLossOutput(total, components)

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if self.variant is not None:
            config["variant"] = self.variant
        config.update(
            {
                "temperature": self.latent_contrastive.temperature,
                "kd_temperature": self.output_kl.temperature,
                "trajectory_temperature": self.trajectory_kl.temperature,
                "latent_contrastive_weight": self.weights[LATENT_CONTRASTIVE],
                "explicit_contrastive_weight": self.weights[EXPLICIT_CONTRASTIVE],
                "output_kl_weight": self.weights[OUTPUT_KL],
                "trajectory_kl_weight": self.weights[TRAJECTORY_KL],
            }
        )
        if self.group_size is not None:
            config["group_size"] = self.group_size
        if self.frozen_teacher:
            config["frozen_teacher"] = True
        return config


def _detach(tensor: Tensor | None) -> Tensor | None:
    return None if tensor is None else tensor.detach()

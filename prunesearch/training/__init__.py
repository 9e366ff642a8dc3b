"""Training: pair sampling with augmentation, tracking losses, and the budgeted fine-tune."""

from prunesearch.training.finetune import FinetuneConfig, FinetuneResult, finetune
from prunesearch.training.losses import LossWeights, tracking_loss
from prunesearch.training.pairs import AugmentConfig, PairBatch, PairSampler

__all__ = [
    "AugmentConfig",
    "FinetuneConfig",
    "FinetuneResult",
    "LossWeights",
    "PairBatch",
    "PairSampler",
    "finetune",
    "tracking_loss",
]

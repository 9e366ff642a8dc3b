"""prunesearch: hardware-aware layer-pruning search for transformer visual trackers.

The public API is re-exported here; each name lives in the module that says what it is. The search
itself (Optuna, MLflow) is in :mod:`prunesearch.search` and is imported only when used.
"""

import os as _os

# OpenMP threads (torch's intra-op pool) that wait for work sleep at once instead of spinning.
# Beside one other CPU-bound process, spinning made a fine-tune 3.4x slower; sleeping holds it to
# 1.25x, at a cost of 1.3x on an idle machine (benchmarks/results/shared_machine.md): the two cores
# here are usually shared, so sleeping is the default, and OMP_WAIT_POLICY=ACTIVE takes the idle
# machine's speed back. It keeps the thread count, so every number stays the same to the last digit.
# OpenMP reads it once, when torch loads it: so it is set here, before anything imports torch.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from prunesearch._version import __version__
from prunesearch.checkpoints import load_checkpoint, save_checkpoint
from prunesearch.data import Sequence, builtin_sequences, open_dataset
from prunesearch.errors import (
    CheckpointError,
    DeviceError,
    InputError,
    PrunesearchError,
    StorageError,
)
from prunesearch.evaluation import EvalResult, evaluate, evaluate_baseline
from prunesearch.export import OnnxTracker, export_tracker
from prunesearch.flops import ModelCost, model_macs
from prunesearch.latency import LatencyEstimate, LatencyTable, known_targets, load_table
from prunesearch.models import (
    PRESETS,
    AsyncTracker,
    JointTracker,
    StudentSpec,
    TrackerConfig,
    build_student,
    build_teacher,
    get_preset,
)
from prunesearch.pruning import block_influence, choose_blocks, prune, student_from_teacher
from prunesearch.teacher import load_shipped_teacher
from prunesearch.training import FinetuneConfig, FinetuneResult, finetune

__all__ = [
    "__version__",
    "CheckpointError",
    "DeviceError",
    "InputError",
    "StorageError",
    "PRESETS",
    "AsyncTracker",
    "EvalResult",
    "FinetuneConfig",
    "FinetuneResult",
    "JointTracker",
    "LatencyEstimate",
    "LatencyTable",
    "ModelCost",
    "OnnxTracker",
    "PrunesearchError",
    "Sequence",
    "StudentSpec",
    "TrackerConfig",
    "block_influence",
    "build_student",
    "build_teacher",
    "builtin_sequences",
    "choose_blocks",
    "evaluate",
    "evaluate_baseline",
    "export_tracker",
    "finetune",
    "get_preset",
    "known_targets",
    "load_checkpoint",
    "load_shipped_teacher",
    "load_table",
    "model_macs",
    "open_dataset",
    "prune",
    "save_checkpoint",
    "student_from_teacher",
]

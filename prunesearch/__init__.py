"""prunesearch: hardware-aware layer-pruning search for transformer visual trackers.

The public API is re-exported here; each name lives in the module that says what it is.
"""

__version__ = "0.1.0"

from prunesearch.errors import PrunesearchError
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

__all__ = [
    "PRESETS",
    "AsyncTracker",
    "JointTracker",
    "PrunesearchError",
    "StudentSpec",
    "TrackerConfig",
    "block_influence",
    "build_student",
    "build_teacher",
    "choose_blocks",
    "get_preset",
    "prune",
    "student_from_teacher",
]

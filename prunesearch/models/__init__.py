"""Tracker model families. One file per family; today the one-stream ViT trackers."""

from prunesearch.models.vit_tracker import (
    DEFAULT_PRESET,
    PRESETS,
    AsyncTracker,
    JointTracker,
    StudentSpec,
    TrackerBase,
    TrackerConfig,
    TrackerOutput,
    build_student,
    build_teacher,
    count_params,
    decode_box,
    get_preset,
)

__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "AsyncTracker",
    "JointTracker",
    "StudentSpec",
    "TrackerBase",
    "TrackerConfig",
    "TrackerOutput",
    "build_student",
    "build_teacher",
    "count_params",
    "decode_box",
    "get_preset",
]

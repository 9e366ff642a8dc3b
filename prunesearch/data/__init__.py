"""Tracking data: dataset readers, built-in synthetic sequences, crops."""

from prunesearch.data.datasets import open_dataset
from prunesearch.data.processing import CropWindow, box_window, crop_window, extract, normalize
from prunesearch.data.sequence import Sequence
from prunesearch.data.synthetic import SynthParams, builtin_sequences, generate

__all__ = [
    "CropWindow",
    "Sequence",
    "SynthParams",
    "box_window",
    "builtin_sequences",
    "crop_window",
    "extract",
    "generate",
    "normalize",
    "open_dataset",
]

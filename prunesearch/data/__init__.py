"""Tracking data: dataset readers, built-in synthetic sequences, crops."""

from prunesearch.data.datasets import open_dataset
from prunesearch.data.processing import CropWindow, box_window, crop_window, extract, normalize
from prunesearch.data.sequence import Sequence

__all__ = ["CropWindow", "Sequence", "box_window", "crop_window", "extract", "normalize", "open_dataset"]

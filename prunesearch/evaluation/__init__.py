"""Evaluation: the tracking loop, the official metrics, classical baselines, GOT-10k result files."""

from prunesearch.evaluation.backends import OnnxBackend, TorchBackend, backend_for
from prunesearch.evaluation.baselines import OpenCVTracker, available_baselines
from prunesearch.evaluation.evaluator import EvalResult, SequenceResult, evaluate, evaluate_baseline, evaluate_tracker
from prunesearch.evaluation.metrics import score_sequence, summarize
from prunesearch.evaluation.tracking_loop import NeuralTracker, TrackingParams, run_sequence

__all__ = [
    "EvalResult",
    "NeuralTracker",
    "OnnxBackend",
    "OpenCVTracker",
    "SequenceResult",
    "TorchBackend",
    "TrackingParams",
    "available_baselines",
    "backend_for",
    "evaluate",
    "evaluate_baseline",
    "evaluate_tracker",
    "run_sequence",
    "score_sequence",
    "summarize",
]

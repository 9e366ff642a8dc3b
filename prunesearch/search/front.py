"""The end of a stage: the study's trained candidates as results, and the front members exported.

Results are built from the study and the price book through the same run layout
(:mod:`~prunesearch.search.mlflow_runs.schema`) that ``prunesearch pareto`` reads from MLflow, so
``run`` and ``pareto`` show one candidate alike.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import optuna

from prunesearch.checkpoints import load_checkpoint
from prunesearch.mlflow_log.tracker_model import TrackerModel
from prunesearch.search.candidate import export_onnx
from prunesearch.search.mlflow_runs import schema
from prunesearch.search.mlflow_runs.log import SearchLog
from prunesearch.search.plot import FULL_SCALE
from prunesearch.search.pricing import PriceBook
from prunesearch.search.results import CandidateResult, same_students
from prunesearch.search.space import Candidate
from prunesearch.search.study.state import trained


def trained_results(study: optuna.Study, book: PriceBook, accuracy_scale: str) -> list[CandidateResult]:
    """Every candidate the study trained to the end (or settled from its student's fine-tune),
    latest trial per candidate, priced from ``book``; each names the others of its student."""
    results = []
    for key, r in sorted(trained(study).items()):
        fields = schema.study_fields(Candidate(**r.params), r, book, accuracy_scale)
        results.append(schema.candidate_result(fields, r.run_id or "", r.sequences))
    return same_students(results)


def export_front(log: SearchLog, fronts: dict[str, list[CandidateResult]], checkpoints: dict[str, str],
                 primary: str) -> list[str]:
    """Every front member not yet logged, as an MLflow model (ONNX pair and checkpoint) in its child
    run; returns those whose checkpoint is not on this machine."""
    info = log.info
    missing = []
    members = {r.key: r for front in fronts.values() for r in front}
    for key, r in sorted(members.items()):
        if log.models([r]):
            continue
        checkpoint = checkpoints.get(key)
        if not checkpoint or not Path(checkpoint).is_file():
            missing.append(key)
            continue
        cfg = load_checkpoint(checkpoint).cfg
        with tempfile.TemporaryDirectory() as tmp:
            template, frame = export_onnx(checkpoint, Path(tmp))
            log.log_model(r.run_id, TrackerModel(
                experiment=info.experiment, candidate=key, checkpoint=Path(checkpoint), template_onnx=template,
                frame_onnx=frame, template_size=cfg.template_size, search_size=cfg.search_size,
                stand_in=info.accuracy_scale != FULL_SCALE,
                config={**dataclasses.asdict(cfg), **r.row(primary), "accuracy_scale": info.accuracy_scale},
            ))
    return missing

"""Latency tables for devices we cannot profile, fitted to end-to-end speeds: published, or the user's own.

Two sources of whole-model figures: the LiteTrack paper's columns (:func:`derive`), and a file
of figures a user measured on their own device (:func:`read_measured`, :func:`derive_measured`).

The LiteTrack paper gives per-frame fps of four students and of OSTrack-256 on a few devices.
Four end-to-end figures cannot separate seven part costs, so the kinds' *relative* costs are tied
to something counted or measured, and only the overall scale is fitted:

* ``tie="flops"`` (the shipped tables): each part costs in proportion to its multiply-adds
  (:func:`prunesearch.flops.part_macs`);
* a measured table: each part costs in proportion to its entry in that table.

Students: ``ms = fixed + s * (sum of w[kind] times its count per frame)``, the counts those of
:func:`prunesearch.models.phases.phase_parts` (``w[search_embed] + (N-M) w[search_block] + M
w[interaction_block] + w[head]``), with ``fixed, s >= 0`` fitted by non-negative least squares. The teacher row is
OSTrack-256 with candidate elimination: its 12 joint blocks run on fewer search tokens after
blocks 3, 6 and 9; each block is weighted by its MACs at its actual token counts, and a separate
scale for joint blocks is solved from that one row (so it absorbs the elimination's own cost).
Leave-one-out errors show how well each figure is predicted without it; the teacher's prediction
without its row uses the students' scale.

Published speeds exclude the template branch (its features are precomputed there), so template
entries are priced from the same tie and scale, never fitted to anything.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prunesearch._version import __version__
from prunesearch.configfile import parse_yaml, read_text
from prunesearch.errors import InputError, PrunesearchWarning
from prunesearch.flops import part_macs
from prunesearch.latency.parts import FIXED, part_shapes
from prunesearch.latency.table import Entry, LatencyTable, build_table
from prunesearch.models.names import TEACHER, parse_student_name
from prunesearch.models.phases import phase_parts
from prunesearch.models.vit_tracker import TrackerConfig, get_preset

# A fitted figure predicted this far off without its own row: the fit is shown, with a warning line.
LOO_WARN_PCT = 25.0
_TORCH_TIMING = (
    "PyTorch FP32, batch 1, template features precomputed (template branch not timed), "
    "200 warm-up and 500 timed runs, fps = 1 / mean latency; cropping and pre/post-processing not timed"
)
_ONNX_TIMING = (
    "per-frame graph exported to ONNX and converted to FP16, onnxruntime CUDA provider, batch 1, "
    "template features precomputed, 50 warm-up and 100 timed runs, host<->device copies included, "
    "fps = 1 / mean latency"
)


@dataclass(frozen=True)
class DerivedTarget:
    """One column of the published table and what it was measured on."""

    column: str
    device: str
    runtime: str
    provider: str
    precision: str
    timing: str


TARGETS: dict[str, DerivedTarget] = {
    "2080ti": DerivedTarget("2080ti", "NVIDIA GeForce RTX 2080 Ti", "pytorch", "CUDA (PyTorch eager)", "fp32", _TORCH_TIMING),
    "orin-nx": DerivedTarget("orin-nx-onnx", "NVIDIA Jetson Orin NX", "onnxruntime", "CUDAExecutionProvider", "fp16", _ONNX_TIMING),
    "orin-nx-torch": DerivedTarget("orin-nx-torch", "NVIDIA Jetson Orin NX", "pytorch", "CUDA (PyTorch eager)", "fp32", _TORCH_TIMING),
    "xavier-nx": DerivedTarget("xavier-nx-onnx", "NVIDIA Jetson Xavier NX", "onnxruntime", "CUDAExecutionProvider", "fp16", _ONNX_TIMING),
    "xavier-nx-torch": DerivedTarget("xavier-nx-torch", "NVIDIA Jetson Xavier NX", "pytorch", "CUDA (PyTorch eager)", "fp32", _TORCH_TIMING),
}

#: OSTrack's candidate elimination: after the attention of these blocks, keep ceil(ratio * n) search tokens.
CE_BLOCKS = (3, 6, 9)
CE_KEEP = 0.7
#: The part kinds a student's per-frame figure prices (those its fitted scale is fitted to).
STUDENT_KINDS = tuple(phase_parts(2, 1).frame)

#: What a published-figures file holds (``--published FILE``; the shipped tables record the LiteTrack paper's).
PUBLISHED_FORMAT = (
    "'architecture' (the vit-b preset's embed_dim, heads, mlp_ratio, patch, template_size, search_size, teacher_depth) and "
    "'variants' (NAME: {depth, ai_layers (null: the teacher), fps: {COLUMN: frames per second}}, COLUMN one of "
    f"{', '.join(t.column for t in TARGETS.values())}); a '# Source:' comment line says where the figures come from"
)


@dataclass(frozen=True)
class Variant:
    """One published row: a student (``ai_layers`` set) or the teacher (``ai_layers`` None)."""

    name: str
    depth: int
    ai_layers: int | None
    fps: dict[str, float]

    @property
    def candidate_elimination(self) -> bool:
        return self.ai_layers is None and self.name.upper().endswith("-CE")


@dataclass(frozen=True)
class Published:
    cfg: TrackerConfig
    variants: list[Variant]
    path: str
    sha256: str
    source: str


def read_published(path: str | Path) -> Published:
    """Read a published-figures file: :data:`PUBLISHED_FORMAT` (an example in docs/latency.md, "Published-figures file")."""
    path = Path(path)
    text = read_text(path, "published figures")
    data = parse_yaml(text, str(path))
    if not isinstance(data, dict) or not isinstance(data.get("variants"), dict) or not isinstance(data.get("architecture"), dict):
        raise InputError(f"{path} needs {PUBLISHED_FORMAT}")
    cfg = _published_architecture(data["architecture"], path)
    variants = []
    for name, row in data["variants"].items():
        try:
            variants.append(Variant(name, int(row["depth"]), row.get("ai_layers"), {k: float(v) for k, v in row["fps"].items()}))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}: variant {name} needs depth, ai_layers and an fps mapping") from None
    source = next((line[1:].strip() for line in text.splitlines() if line.startswith("# Source:")), "not stated")
    return Published(cfg, variants, str(path), hashlib.sha256(text.encode()).hexdigest(), source)


def recorded_figures(tables: list[LatencyTable]) -> Published:
    """The published figures that derived tables recorded in their provenance, merged back into one set.

    Lets an installed prunesearch re-derive its tables (e.g. with another tie) without the source file.
    """
    tables = [t for t in tables if t.meta["method"] == "derived" and "source" in t.provenance]
    rows: dict[str, dict[str, Any]] = {}
    for table in tables:
        source = table.provenance["source"]
        for r in table.provenance.get("variants", []):
            row = rows.setdefault(r["name"], {"depth": r["depth"], "ai_layers": r["ai_layers"], "fps": {}})
            row["fps"][source["column"]] = r["published_fps"]
    if not rows:
        raise InputError("no derived table with recorded figures found; pass --published FILE")
    first = tables[0].provenance["source"]
    variants = [Variant(name, r["depth"], r["ai_layers"], r["fps"]) for name, r in rows.items()]
    return Published(tables[0].architecture, variants, first["file"], first["sha256"], first["figures"])


def _published_architecture(arch: dict[str, Any], path: Path) -> TrackerConfig:
    """The published architecture must be the ViT-B preset the tables price; say so if not."""
    cfg = get_preset("vit-b")
    given = {
        "embed_dim": arch.get("embed_dim"),
        "num_heads": arch.get("heads"),
        "mlp_ratio": arch.get("mlp_ratio"),
        "patch_size": arch.get("patch"),
        "template_size": arch.get("template_size"),
        "search_size": arch.get("search_size"),
        "depth": arch.get("teacher_depth"),
    }
    differ = [k for k, v in given.items() if v is None or float(v) != float(getattr(cfg, k))]
    if differ:
        raise InputError(f"{path}: architecture differs from the vit-b preset in {', '.join(differ)}")
    return cfg


def _block_macs_at(cfg: TrackerConfig, tokens_in: int, tokens_out: int) -> int:
    """MACs of one joint block whose attention sees ``tokens_in`` and whose MLP sees ``tokens_out``.

    Same convention as :mod:`prunesearch.flops`: qkv and output projections, the two attention
    products, and the MLP.
    """
    c, d = cfg.embed_dim, cfg.mlp_dim
    return tokens_in * c * c * 4 + 2 * tokens_in * tokens_in * c + tokens_out * c * d * 2


def teacher_joint_blocks(cfg: TrackerConfig, variant: Variant) -> float:
    """The teacher row's joint-block work, in units of one plain joint block (by MACs)."""
    if not variant.candidate_elimination:
        return float(variant.depth)
    nz, keep = cfg.template_tokens, cfg.search_tokens
    total = 0
    for i in range(variant.depth):
        kept = math.ceil(CE_KEEP * keep) if i in CE_BLOCKS else keep
        total += _block_macs_at(cfg, nz + keep, nz + kept)
        keep = kept
    return total / part_macs(cfg)["joint_block"]


def tie_weights(cfg: TrackerConfig, tie: str | LatencyTable) -> tuple[dict[str, float], str, str]:
    """Relative cost per part kind, its unit, and a sentence saying what it is tied to."""
    if isinstance(tie, LatencyTable):
        costs = tie.costs(cfg)
        what = f"measured table {tie.name!r} (sha256 {tie.sha256[:12]}): each part costs in proportion to its entry there"
        return {k: v for k, v in costs.items() if k != FIXED}, "x that table", what
    if tie != "flops":
        raise InputError(f"--tie must be 'flops' or a measured latency table, got {tie!r}")
    what = "FLOPs: each part costs in proportion to its multiply-adds (prunesearch.flops.part_macs)"
    return {k: v / 1e9 for k, v in part_macs(cfg).items()}, "ms per GMAC", what


def _nnls(units: np.ndarray, ms: np.ndarray) -> tuple[float, float]:
    from scipy.optimize import nnls

    (fixed, scale), _ = nnls(np.stack([np.ones_like(units), units], axis=1), ms)
    return float(fixed), float(scale)


@dataclass(frozen=True)
class ColumnFit:
    """One device's figures fitted: the entries, each figure's fit and leave-one-out report, and the fit's record."""

    entries: list[Entry]
    report: list[dict[str, Any]]
    provenance: dict[str, Any]


def fit_column(cfg: TrackerConfig, rows: list[Variant], column: str, tie: str | LatencyTable) -> ColumnFit:
    """Fit fixed cost and scale to the students' figures in ``column`` and a joint scale to the teacher's."""
    w, unit, tie_text = tie_weights(cfg, tie)
    students = [v for v in rows if v.ai_layers is not None]
    if len(students) < 3:
        raise InputError(f"column {column} has {len(students)} student figures; at least 3 are needed to fit and leave one out")

    def units(v: Variant) -> float:
        return sum(n * w[kind] for kind, n in phase_parts(v.depth, v.ai_layers).frame.items())

    x = np.array([units(v) for v in students])
    y = np.array([1000.0 / v.fps[column] for v in students])
    fixed, scale = _nnls(x, y)
    if scale <= 0:
        raise InputError(
            f"column {column}: the figures do not grow with the work they price (deeper students are not slower), so "
            f"the fit gives blocks no cost and would price every model at {fixed:.2f} ms; check the figures and their unit"
        )
    report = []
    for i, v in enumerate(students):
        keep = np.arange(len(students)) != i
        f_i, s_i = _nnls(x[keep], y[keep])
        report.append(_row(v, y[i], fixed + scale * x[i], f_i + s_i * x[i], "fit"))

    joint_scale, joint_note = scale, "tied to the students' scale (no teacher figure in this column)"
    teacher = next((v for v in rows if v.ai_layers is None), None)
    if teacher is not None:
        ms = 1000.0 / teacher.fps[column]
        base = fixed + scale * (w["search_embed"] + w["head"])
        blocks = teacher_joint_blocks(cfg, teacher) * w["joint_block"]
        joint_scale = max(ms - base, 0.0) / blocks
        ce = (
            f" with candidate elimination (search tokens cut to {CE_KEEP:.0%} after blocks {', '.join(map(str, CE_BLOCKS))})"
            if teacher.candidate_elimination else ""
        )
        joint_note = f"scale solved from {teacher.name}{ce}; includes that variant's extra operations"
        report.append(_row(teacher, ms, base + joint_scale * blocks, base + scale * blocks, "teacher"))

    loo = [abs(r["loo_error_pct"]) for r in report]
    student_loo = [abs(r["loo_error_pct"]) for r in report if r["role"] == "fit"]
    provenance = {
        "tie": tie_text,
        "model": "students: fixed + s * (w_search_embed + (N-M) w_search_block + M w_interaction_block + w_head); "
        "teacher: fixed + s * (w_search_embed + w_head) + s_joint * w_joint_block * blocks; "
        "template branch: fixed + s * (w_template_embed + N w_template_block)",
        "fit": {"fixed_ms": round(fixed, 6), "scale": round(scale, 6), "joint_scale": round(joint_scale, 6), "unit": unit},
        "variants": report,
        "max_abs_loo_error_pct": round(max(loo), 2),
        "students_max_abs_loo_error_pct": round(max(student_loo), 2),
        "loo_within_10pct": all(e <= 10 for e in loo),
    }
    if provenance["max_abs_loo_error_pct"] > LOO_WARN_PCT:
        worst = max(report, key=lambda r: abs(r["loo_error_pct"]))
        warnings.warn(f"column {column}: {worst['name']} is predicted {worst['loo_error_pct']:+.0f}% off without its own figure "
                      f"(over {LOO_WARN_PCT:g}%): the figures do not fit one cost model; the table's prices are rough",
                      PrunesearchWarning, 2)
    return ColumnFit(_entries(cfg, w, fixed, scale, joint_scale, joint_note), report, provenance)


def derive(published: Published, target: str, tie: str | LatencyTable = "flops") -> LatencyTable:
    """Fit one target's table to its published column; records residuals and leave-one-out errors."""
    if target not in TARGETS:
        raise InputError(f"unknown derived target {target!r}; known: {', '.join(TARGETS)}")
    spec = TARGETS[target]
    rows = [v for v in published.variants if spec.column in v.fps]
    fit = fit_column(published.cfg, rows, spec.column, tie)
    prov = fit.provenance
    provenance = {
        "how": f"derived by prunesearch {__version__} ('prunesearch latency derive') from published end-to-end figures",
        "source": {
            "file": Path(published.path).name,
            "sha256": published.sha256,
            "column": spec.column,
            "figures": published.source,
            "timing": spec.timing,
        },
        "tie": prov["tie"],
        "model": prov["model"],
        "fit": prov["fit"],
        "teacher": "prunesearch's teacher is plain OSTrack-256 (no candidate elimination): "
        "its per-frame price is 12 joint blocks at 320 tokens",
        **{k: prov[k] for k in ("variants", "max_abs_loo_error_pct", "students_max_abs_loo_error_pct", "loo_within_10pct")},
    }
    return build_table(target, _meta(spec), published.cfg, fit.entries, provenance)


def _entries(
    cfg: TrackerConfig, w: dict[str, float], fixed: float, scale: float, joint_scale: float, joint_note: str
) -> list[Entry]:
    entries = []
    for kind, shape in part_shapes(cfg).items():
        if kind == FIXED:
            entries.append(Entry(kind, shape, fixed, None, "fitted (non-negative least squares)"))
        elif kind == "joint_block":
            entries.append(Entry(kind, shape, joint_scale * w[kind], None, joint_note))
        elif kind in STUDENT_KINDS:
            entries.append(Entry(kind, shape, scale * w[kind], None, "fitted scale"))
        else:
            entries.append(Entry(kind, shape, scale * w[kind], None, "not in the published timing; priced from the tie and fitted scale"))
    return entries


def _meta(spec: DerivedTarget) -> dict[str, Any]:
    return {
        "device": spec.device,
        "runtime": spec.runtime,
        "runtime_version": "unpublished",
        "provider": spec.provider,
        "precision": spec.precision,
        "threads": None,
        "power_mode": "unpublished",
        "method": "derived",
        "statistic": "mean (published fps = 1 / mean latency)",
        "date": dt.date.today().isoformat(),
        "machine_fingerprint": None,
    }


def _row(v: Variant, ms: float, fitted: float, loo: float, role: str) -> dict[str, Any]:
    ms, fitted, loo = float(ms), float(fitted), float(loo)
    return {
        "name": v.name,
        "depth": v.depth,
        "ai_layers": v.ai_layers,
        "role": role,
        "published_fps": round(1000.0 / ms, 4),
        "published_ms": round(ms, 4),
        "fitted_ms": round(fitted, 4),
        "residual_pct": round(100 * (fitted - ms) / ms, 2),
        "loo_ms": round(loo, 4),
        "loo_error_pct": round(100 * (loo - ms) / ms, 2),
    }


MEASURED_STATS = ("mean", "p50", "p90", "p99", "min")
MEASURED_UNITS = ("ms", "fps")


@dataclass(frozen=True)
class Measured:
    """Whole-model per-frame figures a user measured on one device, converted to ms per frame."""

    cfg: TrackerConfig
    preset: str
    device: str
    runtime: str
    provider: str
    precision: str
    statistic: str
    variants: list[Variant]
    path: str
    sha256: str


def read_measured(path: str | Path) -> Measured:
    """Read a measured-figures file; each problem is one line naming the file and the key.

    The file holds ``device``, ``runtime``, ``precision``, ``statistic`` (mean, p50, ...), ``unit``
    (ms or fps; default ms), optionally ``provider`` and ``preset`` (default vit-b), and ``models``:
    ``B{N}-{M}`` or ``teacher`` mapped to that model's per-frame figure.
    """
    path = Path(path)
    text = read_text(path, "measured figures")
    data = parse_yaml(text, str(path))
    if not isinstance(data, dict):
        raise InputError(f"{path} must be a mapping with device, runtime, precision, statistic, unit and models")
    for key in ("device", "runtime", "precision"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise InputError(f"{path}: missing '{key}' (the device, runtime and precision the figures were measured with)")
    statistic = data.get("statistic")
    if statistic not in MEASURED_STATS:
        what = "missing 'statistic'" if statistic is None else f"statistic {statistic!r} is not one of them"
        raise InputError(f"{path}: {what}; say which statistic the figures are: {', '.join(MEASURED_STATS)}")
    unit = data.get("unit", "ms")
    if unit not in MEASURED_UNITS:
        raise InputError(f"{path}: unit must be ms or fps, got {unit!r}")
    preset = str(data.get("preset", "vit-b"))
    cfg = get_preset(preset)
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise InputError(f"{path}: 'models' must map model names (B{{N}}-{{M}} or teacher) to per-frame {unit}")
    variants = [_measured_variant(path, str(name), value, unit, cfg.depth) for name, value in models.items()]
    return Measured(cfg, preset, data["device"], data["runtime"], str(data.get("provider", "not stated")), data["precision"],
                    statistic, variants, str(path), hashlib.sha256(text.encode()).hexdigest())


def _measured_variant(path: Path, name: str, value: Any, unit: str, depth: int) -> Variant:
    numbers = parse_student_name(name)
    ok = name == TEACHER or (numbers is not None and 1 <= numbers[1] <= numbers[0] <= depth)
    if not ok:
        raise InputError(
            f"{path}: models.{name} is not a model name: use B{{N}}-{{M}} with 1 <= M <= N <= {depth} (e.g. B4-2) or 'teacher'"
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{path}: models.{name} must be a positive number of {unit} per frame, got {value!r}")
    fps = float(value) if unit == "fps" else 1000.0 / float(value)
    if numbers is None:
        return Variant(TEACHER, depth, None, {"measured": fps})
    return Variant(name, *numbers, {"measured": fps})


def derive_measured(measured: Measured, name: str, tie: str | LatencyTable = "flops") -> LatencyTable:
    """A table for the user's device, fitted to their figures; the tie is a measured table or MACs."""
    if isinstance(tie, LatencyTable) and tie.meta.get("method") != "measured":
        raise InputError(f"--tie {tie.name}: a tie must be a measured table (prunesearch profile), not a derived one")
    students = sum(v.ai_layers is not None for v in measured.variants)
    if students < 3:
        raise InputError(f"{measured.path}: models has {students} student figures; at least 3 are needed to fit and leave one out")
    fit = fit_column(measured.cfg, measured.variants, "measured", tie)
    prov = fit.provenance
    provenance = {
        "how": f"derived by prunesearch {__version__} ('prunesearch latency derive --measured') from the user's "
        "whole-model per-frame figures",
        "source": {"file": Path(measured.path).name, "sha256": measured.sha256, "column": "measured",
                   "figures": f"measured by the user ({measured.statistic})"},
        "preset": measured.preset,
        **prov,
    }
    if isinstance(tie, LatencyTable):
        same = tie.meta.get("runtime") == measured.runtime
        provenance["tie_runtime"] = f"{tie.meta.get('runtime')} {tie.meta.get('provider')} ({'same' if same else 'another'} runtime family)"
    meta = {
        "device": measured.device,
        "runtime": measured.runtime,
        "runtime_version": "as measured by the user",
        "provider": measured.provider,
        "precision": measured.precision,
        "threads": None,
        "power_mode": "as measured by the user",
        "method": "derived",
        "statistic": measured.statistic,
        "date": dt.date.today().isoformat(),
        "machine_fingerprint": None,
    }
    return build_table(name, meta, measured.cfg, fit.entries, provenance)

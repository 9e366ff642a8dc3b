"""A latency lookup table: one device, one runtime, one precision; what it prices and how.

A table holds one entry per priced part (patch embeddings, the four block kinds, the head, and a
fixed per-graph-run overhead), each keyed by its kind and shape, so a table can only price the
architectures whose parts it actually holds. An estimate is, per graph run, ``fixed`` plus each
part's entry times how many of it the model runs in that phase
(:func:`prunesearch.models.phases.phase_parts`; e.g. student B{N}-{M} per frame: ``fixed +
search_embed + (N - M) * search_block + M * interaction_block + head``). ``fixed`` is paid once per
graph run (a frame, or a template update). With ``template_update=K`` the template branch is
amortised over K frames (:func:`prunesearch.models.phases.amortised`). A table may carry a
calibration fitted to whole graphs (:mod:`prunesearch.latency.calibrate`); its estimates are then
the corrected sums.

Tables are hand-editable, so reading one checks every value a price depends on (finite,
non-negative times, one entry per part and shape, typed architecture fields) and names the file
and entry of the first problem in one line.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from prunesearch.configfile import parse_yaml, read_text
from prunesearch.errors import InputError, PrunesearchError
from prunesearch.latency.calibrate import Calibration
from prunesearch.latency.parts import BLOCK_KINDS, FIXED, part_shapes
from prunesearch.models.names import TEACHER, student_name
from prunesearch.models.phases import PART_KINDS, PhaseParts, amortised, check_template_update, phase_parts
from prunesearch.models.vit_tracker import TrackerConfig
from prunesearch.outputs import output_file

FORMAT = "prunesearch-latency/1"
ENTRY_KINDS = (FIXED, *PART_KINDS)
METHODS = ("measured", "derived")
REQUIRED_META = ("device", "runtime", "runtime_version", "provider", "precision", "method", "date")
STATS = ("mean", "p50", "p90", "p99", "runs")
# Far beyond any device (tables priced in multiply-adds use the same format, hence not a minute), yet sums of
# entries stay finite: 1e308 would price every model at inf ms and 0 fps. An architecture field over 4096 is a typing error.
MAX_MS = 1e12
MAX_ARCHITECTURE_INT = 4096
# What printing and checking a derived table reads from its provenance.
DERIVED_PROVENANCE = ("source", "tie", "fit", "variants", "max_abs_loo_error_pct")
VARIANT_KEYS = ("name", "role", "published_ms", "fitted_ms", "residual_pct", "loo_error_pct")

_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass(frozen=True)
class Entry:
    """The cost of one part at one shape. ``ms`` is what estimates add up."""

    kind: str
    shape: dict[str, Any]
    ms: float
    stats: dict[str, float] | None = None
    note: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, _shape_key(self.shape)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "shape": dict(self.shape), "ms": round(self.ms, 6)}
        if self.stats is not None:
            out["stats"] = rounded_stats(self.stats)
        if self.note:
            out["note"] = self.note
        return out


def rounded_stats(stats: dict[str, float]) -> dict[str, float]:
    """Timing statistics as stored: milliseconds to 6 decimals, run counts as integers."""
    return {k: (int(v) if k == "runs" else round(float(v), 6)) for k, v in stats.items()}


def _shape_key(shape: dict[str, Any]) -> str:
    return ",".join(f"{k}={shape[k]}" for k in sorted(shape))


@dataclass(frozen=True)
class LatencyEstimate:
    """Priced latency of one model on one table. Times in milliseconds.

    ``parts`` are the table's raw entries times their counts; ``raw_ms`` is their sum.
    ``per_frame_ms`` is the steady per-frame work (the calibrated sum when the table has one); ``template_ms`` the template branch, paid once
    per template update; ``amortised_ms`` adds ``template_ms / template_update`` when the template
    is updated every K frames. ``fps`` and ``speedup`` (teacher time / this time) use the
    amortised figure, so both models are compared under the same template schedule.
    """

    name: str
    per_frame_ms: float
    template_ms: float
    template_update: int | None
    teacher_ms: float
    parts: dict[str, float] = field(default_factory=dict)

    @property
    def raw_ms(self) -> float:
        return sum(self.parts.values())

    @property
    def amortised_ms(self) -> float:
        return amortised(self.per_frame_ms, self.template_ms, self.template_update)

    @property
    def fps(self) -> float:
        return 1000.0 / self.amortised_ms

    @property
    def speedup(self) -> float:
        return self.teacher_ms / self.amortised_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "per_frame_ms": self.per_frame_ms,
            "raw_ms": self.raw_ms,
            "template_ms": self.template_ms,
            "template_update": self.template_update,
            "amortised_ms": self.amortised_ms,
            "fps": self.fps,
            "speedup": self.speedup,
            "parts": dict(self.parts),
        }


@dataclass(frozen=True)
class LatencyTable:
    """A loaded lookup table. Build one with :func:`load_table` or the profiler / derivation."""

    name: str
    meta: dict[str, Any]
    architecture: TrackerConfig
    entries: tuple[Entry, ...]
    provenance: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    sha256: str = ""
    calibration: Calibration | None = None
    _index: dict[tuple[str, str], Entry] = field(init=False, repr=False, compare=False)
    _own: dict[str, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen: the lookups are computed once here, so pricing a whole space is dictionary reads.
        object.__setattr__(self, "_index", {e.key: e for e in self.entries})
        object.__setattr__(self, "_own", self._costs(self.architecture))

    @property
    def teacher_depth(self) -> int:
        return self.architecture.depth

    def missing(self, cfg: TrackerConfig) -> list[str]:
        """Entries ``cfg`` needs that this table lacks, described as ``kind(shape)``."""
        return [
            f"{kind}({_shape_key(shape)})"
            for kind, shape in part_shapes(cfg).items()
            if (kind, _shape_key(shape)) not in self._index
        ]

    def check_covers(self, cfg: TrackerConfig) -> None:
        """Raise a one-line error naming the missing entries and how to measure them."""
        missing = self.missing(cfg)
        if missing:
            raise InputError(
                f"latency table {self.name!r} has no entries for this architecture "
                f"(width {cfg.embed_dim}, {cfg.num_heads} heads, crops {cfg.template_size}/{cfg.search_size} px): "
                f"missing {'; '.join(missing)}; measure them on the device with "
                f"'prunesearch profile --name NAME' for this architecture (e.g. --preset), never extrapolate"
            )

    def _costs(self, cfg: TrackerConfig) -> dict[str, float]:
        self.check_covers(cfg)
        return {kind: self._index[(kind, _shape_key(shape))].ms for kind, shape in part_shapes(cfg).items()}

    def costs(self, cfg: TrackerConfig | None = None) -> dict[str, float]:
        """Milliseconds per entry kind for ``cfg`` (default: the table's own architecture)."""
        return dict(self._own if cfg is None else self._costs(cfg))

    def estimate(
        self,
        depth: int,
        ai_layers: int,
        template_update: int | None = None,
        cfg: TrackerConfig | None = None,
    ) -> LatencyEstimate:
        """Price student ``B{depth}-{ai_layers}``; the template branch amortised over ``template_update`` frames."""
        if depth < 1 or not 1 <= ai_layers <= depth:
            raise InputError(f"no student B{depth}-{ai_layers}: need depth >= 1 and 1 <= interaction layers <= depth")
        check_template_update(template_update)
        c = self._own if cfg is None else self._costs(cfg)
        teacher = self._price(c, TEACHER, self._teacher_parts(cfg), template_update)
        return self._price(c, student_name(depth, ai_layers), phase_parts(depth, ai_layers), template_update, teacher.amortised_ms)

    def estimate_teacher(self, template_update: int | None = None, cfg: TrackerConfig | None = None) -> LatencyEstimate:
        """Price the joint teacher (``cfg.depth`` joint blocks; default: the table's architecture)."""
        check_template_update(template_update)
        c = self._own if cfg is None else self._costs(cfg)
        return self._price(c, TEACHER, self._teacher_parts(cfg), template_update)

    def _teacher_parts(self, cfg: TrackerConfig | None) -> PhaseParts:
        return phase_parts(self.teacher_depth if cfg is None else cfg.depth, None)

    def _price(
        self, c: dict[str, float], name: str, parts: PhaseParts, template_update: int | None, teacher_ms: float | None = None
    ) -> LatencyEstimate:
        """One model's estimate from the entries ``c``; ``teacher_ms`` None: this is the teacher."""
        frame = _run_parts(c, parts.frame)
        per_frame, template = self._sum(frame), self._sum(_run_parts(c, parts.template))
        if teacher_ms is None:
            teacher_ms = amortised(per_frame, template, template_update)
        return LatencyEstimate(name, per_frame, template, template_update, teacher_ms, frame)

    def _sum(self, parts: dict[str, float]) -> float:
        """A graph run's price: the sum of its parts, corrected by the calibration if there is one."""
        if self.calibration is None:
            return sum(parts.values())
        blocks = sum(v for k, v in parts.items() if k in BLOCK_KINDS)
        return self.calibration.apply(blocks, sum(parts.values()) - blocks)

    def uncalibrated(self) -> "LatencyTable":
        """The same entries without the calibration: the raw sum of parts."""
        return LatencyTable(self.name, self.meta, self.architecture, self.entries, self.provenance, self.path, self.sha256)

    def warning(self) -> str | None:
        """One line when this table's calibrated prices do not hold (see :mod:`~prunesearch.latency.calibrate`)."""
        return self.calibration.warning(self.name) if self.calibration else None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "format": FORMAT,
            "name": self.name,
            "meta": dict(self.meta),
            "architecture": self.architecture.to_dict(),
            "entries": [e.to_dict() for e in self.entries],
        }
        if self.calibration is not None:
            out["calibration"] = self.calibration.to_dict()
        out["provenance"] = self.provenance
        return out

    def to_yaml(self) -> str:
        return yaml.dump(self.to_dict(), Dumper=_Dumper, sort_keys=False, width=100)

    def save(self, path: str | Path, flag: str = "--out") -> Path:
        """Write the table as YAML, whole or not at all (:func:`prunesearch.outputs.output_file`);
        the written file's hash identifies it. ``flag`` is the option that named the place, for errors."""
        text = self.to_yaml()
        with output_file(path, flag, estimate=len(text)) as tmp:
            tmp.write_text(text)
        return Path(path)


def _run_parts(c: dict[str, float], counts: dict[str, int]) -> dict[str, float]:
    """One graph run's parts in milliseconds: its fixed cost, then each part's entry times how many run."""
    return {FIXED: c[FIXED], **{kind: n * c[kind] for kind, n in counts.items()}}


def build_table(
    name: str,
    meta: dict[str, Any],
    architecture: TrackerConfig,
    entries: list[Entry],
    provenance: dict[str, Any],
    calibration: Calibration | None = None,
) -> LatencyTable:
    """A table made in memory (by the profiler or the derivation), read back exactly as its file will be."""
    text = LatencyTable(name, meta, architecture, tuple(entries), provenance, calibration=calibration).to_yaml()
    return parse_table(parse_yaml(text, f"latency table {name}"), hashlib.sha256(text.encode()).hexdigest(), None)


def read_table(path: str | Path) -> LatencyTable:
    """Load and check one table file; any problem is a one-line error naming the file."""
    path = Path(path)
    text = read_text(path, "latency table")  # bounded, repeated keys refused: a table is edited by hand
    return parse_table(parse_yaml(text, str(path)), hashlib.sha256(text.encode()).hexdigest(), path)


def parse_table(data: Any, sha256: str, path: Path | None) -> LatencyTable:
    where = str(path) if path else "latency table"
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{where} is not a prunesearch latency table (expected 'format: {FORMAT}')")
    meta = data.get("meta")
    if not isinstance(meta, dict):
        raise InputError(f"{where}: missing the 'meta' mapping")
    lacking = [k for k in REQUIRED_META if k not in meta]
    if lacking:
        raise InputError(f"{where}: meta lacks {', '.join(lacking)}")
    if meta["method"] not in METHODS:
        raise InputError(f"{where}: meta.method must be one of {', '.join(METHODS)}, got {meta['method']!r}")
    arch = _architecture(data.get("architecture"), where)
    entries: list[Entry] = []
    seen: dict[tuple[str, str], int] = {}
    for i, raw in enumerate(data.get("entries") or []):
        entry = _entry(raw, i, where)
        if entry.key in seen:
            raise InputError(
                f"{where}: entry {i} ({entry.kind}, {_shape_key(entry.shape)}) repeats entry {seen[entry.key]}; "
                "each part and shape may appear once (delete one of them)"
            )
        seen[entry.key] = i
        entries.append(entry)
    calibration = Calibration.from_dict(data["calibration"], where) if data.get("calibration") is not None else None
    name = str(data.get("name") or (path.stem if path else "table"))
    provenance = data.get("provenance") or {}
    if meta["method"] == "derived":
        _check_derived_provenance(provenance, where)
    return LatencyTable(name, meta, arch, tuple(entries), provenance, path, sha256, calibration)


def _check_derived_provenance(prov: Any, where: str) -> None:
    """A derived table says what it was fitted to and how well (read by ``latency show`` and the fit checks)."""
    if not isinstance(prov, dict) or (lacking := [k for k in DERIVED_PROVENANCE if k not in prov]):
        lacking = list(DERIVED_PROVENANCE) if not isinstance(prov, dict) else lacking
        raise InputError(f"{where}: a derived table needs provenance.{', provenance.'.join(lacking)} (re-derive it with "
                         "'prunesearch latency derive')")
    source, variants = prov["source"], prov["variants"]
    if not isinstance(source, dict) or not all(k in source for k in ("file", "column", "figures")):
        raise InputError(f"{where}: provenance.source must map file, column and figures")
    for i, v in enumerate(variants if isinstance(variants, list) else [None]):
        if not isinstance(v, dict) or not all(k in v for k in VARIANT_KEYS) or not all(
                _number(v[k]) for k in VARIANT_KEYS[2:]):
            raise InputError(f"{where}: provenance.variants[{i}] must map {', '.join(VARIANT_KEYS)} (figures as numbers)")
    if not _number(prov["max_abs_loo_error_pct"]):
        raise InputError(f"{where}: provenance.max_abs_loo_error_pct must be a number")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _finite_ms(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= MAX_MS


def _entry(raw: Any, i: int, where: str) -> Entry:
    if not isinstance(raw, dict) or raw.get("kind") not in ENTRY_KINDS or not isinstance(raw.get("shape"), dict):
        raise InputError(f"{where}: entry {i} needs a kind (one of {', '.join(ENTRY_KINDS)}) and a shape")
    kind, ms = raw["kind"], raw.get("ms")
    if not _finite_ms(ms) or (kind in BLOCK_KINDS and ms == 0):
        raise InputError(f"{where}: entry {i} ({kind}) needs a finite, non-negative 'ms' (above 0 for a block, at most "
                         f"{MAX_MS:g}: MAX_MS), got {str(ms)[:40]}")
    stats = raw.get("stats")
    if stats is not None and (not isinstance(stats, dict) or not all(k in STATS and _finite_ms(v) for k, v in stats.items())):
        raise InputError(
            f"{where}: entry {i} ({kind}) 'stats' must map {', '.join(STATS)} to finite, non-negative numbers, got {stats!r}"
        )
    return Entry(kind, raw["shape"], float(ms), stats, raw.get("note"))


def _architecture(raw: Any, where: str) -> TrackerConfig:
    """The architecture mapping with every field of the type :class:`TrackerConfig` declares."""
    if not isinstance(raw, dict):
        raise InputError(f"{where}: missing the 'architecture' mapping")
    kinds = {f.name: f.type for f in fields(TrackerConfig)}
    for key, value in raw.items():
        kind = kinds.get(key)
        if kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            allowed = "a positive integer"
            if ok and value > MAX_ARCHITECTURE_INT:
                raise InputError(f"{where}: architecture.{key} must be at most {MAX_ARCHITECTURE_INT} (MAX_ARCHITECTURE_INT), got {value}")
        elif kind == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
            allowed = "a positive number"
        elif kind == "bool":
            ok, allowed = isinstance(value, bool), "true or false"
        elif kind is not None:  # head_channels
            ok = isinstance(value, list) and bool(value) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
            allowed = "a list of positive integers"
        else:
            continue  # TrackerConfig.from_dict names unknown keys
        if not ok:
            raise InputError(f"{where}: architecture.{key} must be {allowed}, got {value!r}")
    try:
        return TrackerConfig.from_dict(raw)
    except PrunesearchError as err:
        raise InputError(f"{where}: architecture: {err}") from None

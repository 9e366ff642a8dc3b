"""Measure a latency table on the machine this runs on, as a deployment runs the model.

Each part kind is built on its own at the architecture's shapes, prepared by a timing runtime
(onnxruntime or PyTorch, :mod:`prunesearch.latency.backends`) and timed in interleaved rounds
(see :mod:`prunesearch.latency.runtime`). Two effects would make a naive sum of isolated parts
disagree with a whole graph, and both are measured rather than assumed away:

* every graph run has a fixed cost (binding inputs, allocating outputs, waking the thread pool,
  launching). It is measured on a graph with the per-frame graph's inputs and outputs and no work,
  is subtracted from each part, and becomes the table's ``fixed`` entry, paid once per graph run;
* a block timed alone, again and again, finds its weights in cache; inside a tracker each block
  has its own weights. Blocks are therefore timed as a chain of ``chain`` distinct blocks, and the
  entry is the chain's time less the run cost, over ``chain``. On a GPU the chain is the teacher's
  depth, so launch gaps between blocks weigh on an entry as they do in a whole model.

What remains (on a GPU: launch and scheduling effects across part boundaries) is measured too: a
few whole per-frame graphs are timed in the same rounds, and a small correction of the sum of
parts is fitted to them (:mod:`prunesearch.latency.calibrate`).
"""

from __future__ import annotations

import datetime as dt
import math
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from prunesearch.errors import PrunesearchWarning
from prunesearch.latency.backends import OnnxRuntimeSettings, TimingRuntime
from prunesearch.latency.calibrate import WholeGraph, fit_calibration
from prunesearch.latency.parts import BLOCK_KINDS, FIXED, part_graph, part_shapes, whole_graph
from prunesearch.latency.runtime import Timing, TimingPlan, machine_fingerprint, machine_info, time_graphs
from prunesearch.latency.table import STATS, Entry, LatencyTable, build_table, rounded_stats
from prunesearch.models.vit_tracker import TrackerConfig
from prunesearch.models.names import model_name

#: ``progress(stage, done, total)``: stage is "export" or "time".
Progress = Callable[[str, int, int], None]

#: Chained blocks stop once their weights surely overflow the caches of any CPU we target.
CHAIN_BYTES = 64 * 2**20


def default_chain(cfg: TrackerConfig, on_gpu: bool = False) -> int:
    """Blocks per timed chain: on a GPU the teacher's depth; on a CPU as many, fewer once their weights exceed 64 MiB."""
    if on_gpu:
        return max(2, cfg.depth)
    block_bytes = 4 * cfg.embed_dim * (4 * cfg.embed_dim + 2 * cfg.mlp_dim)
    return max(2, min(cfg.depth, math.ceil(CHAIN_BYTES / block_bytes)))


@dataclass(frozen=True)
class ProfileRequest:
    """What to measure and how; ``device`` and ``power_mode`` are the user's description of the machine.

    ``chain`` is the number of distinct blocks per timed block graph (None: :func:`default_chain`).
    ``calibrate`` also times whole graphs of the teacher and a few students and fits a correction.
    """

    name: str
    cfg: TrackerConfig
    runtime: TimingRuntime = OnnxRuntimeSettings()
    plan: TimingPlan = TimingPlan()
    chain: int | None = None
    device: str | None = None
    power_mode: str | None = None
    preset: str | None = None
    calibrate: bool = True

    @property
    def blocks_per_chain(self) -> int:
        return self.chain or default_chain(self.cfg, self.runtime.on_gpu)


def calibration_models(depth: int) -> list[tuple[int, int | None]]:
    """The teacher and students spread over the space (shallow to full depth, few to many interaction layers)."""
    picks = [(1, 1), (depth // 3, depth // 6), (depth // 2, depth // 4), (3 * depth // 4, depth // 4), (depth, depth // 2)]
    students = sorted({(max(n, 1), min(max(m, 1), max(n, 1))) for n, m in picks})
    return [*students, (depth, None)]


def _whole_name(depth: int, ai: int | None) -> str:
    return model_name(depth, ai)


def profile(request: ProfileRequest, progress: Progress | None = None, workdir: Path | None = None) -> LatencyTable:
    """Prepare, time and tabulate every part kind (and the calibration graphs); the caller saves the table."""
    runtime, cfg = request.runtime, request.cfg
    runtime.check(request.plan.clock)
    tick = progress or (lambda stage, done, total: None)
    builds = {kind: (lambda k=kind: part_graph(cfg, k, request.blocks_per_chain if k in BLOCK_KINDS else 1)) for kind in part_shapes(cfg)}
    wholes = calibration_models(cfg.depth) if request.calibrate else []
    builds.update({f"whole:{_whole_name(n, m)}": (lambda n=n, m=m: whole_graph(cfg, n, m)) for n, m in wholes})
    with tempfile.TemporaryDirectory(prefix="prunesearch-profile-") as tmp:
        folder = Path(workdir or tmp)
        runs = {}
        for i, (name, build) in enumerate(builds.items()):
            module, args, inputs, outputs = build()
            runs[name] = runtime.prepare(module, args, (inputs, outputs), folder / f"{name.replace(':', '-')}.onnx")
            tick("export", i + 1, len(builds))
        timings = time_graphs(runs, request.plan, runtime.timer(request.plan.clock), lambda r: tick("time", r, request.plan.rounds))
    return _tabulate(request, timings, wholes)


def _net_stats(timing: Timing, overhead_ms: float, per: int) -> dict[str, float]:
    """A graph's statistics less one run's overhead, per block of a chain."""
    raw = timing.stats()
    out = {k: max(raw[k] - overhead_ms, 0.0) / per for k in STATS if k != "runs"}
    out["runs"] = raw["runs"]
    return out


def _tabulate(request: ProfileRequest, timings: dict[str, Timing], wholes: list[tuple[int, int | None]]) -> LatencyTable:
    shapes = part_shapes(request.cfg)
    overhead = timings[FIXED].median
    entries = []
    for kind, shape in shapes.items():
        if kind == FIXED:
            stats = timings[FIXED].stats()
            note = "one graph run with the per-frame graph's inputs and outputs and no work"
        elif kind in BLOCK_KINDS:
            stats = _net_stats(timings[kind], overhead, request.blocks_per_chain)
            note = f"chain of {request.blocks_per_chain} distinct blocks, less one run's fixed cost, per block"
        else:
            stats = _net_stats(timings[kind], overhead, 1)
            note = "less one run's fixed cost"
        entries.append(Entry(kind, shape, stats["p50"], stats, note))
    info = machine_info()
    gpu = info.get("gpu") if request.runtime.on_gpu else None
    meta = {
        "device": request.device or (gpu["name"] if gpu else f"{info['cpu']} ({info['cores']} cores)"),
        **request.runtime.describe(),
        "power_mode": request.power_mode or (gpu or {}).get("nvpmodel"),
        "method": "measured",
        "statistic": "p50",
        "clock": request.plan.clock,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine_fingerprint": machine_fingerprint(),
        "machine": info,
    }
    provenance = {
        "how": f"prunesearch profile: each part built from the tracker's modules and timed with {request.runtime.describe()['runtime']} "
        "in interleaved rounds; entries are medians (p50) in milliseconds",
        "preset": request.preset,
        "chain": request.blocks_per_chain,
        "timing": asdict(request.plan),
        "graphs": {kind: rounded_stats(t.stats()) for kind, t in timings.items()},
    }
    raw = build_table(request.name, meta, request.cfg, entries, provenance)
    if not wholes:
        return raw
    calibration = fit_calibration([_whole(raw, n, m, timings[f"whole:{_whole_name(n, m)}"].median) for n, m in wholes])
    if calibration.block_scale <= 0:
        # The whole graphs did not grow with their blocks: timing noise (a busy machine, too few
        # rounds) swamped them. A calibration that prices every depth alike is worse than none.
        warnings.warn(f"{request.name}: the whole-graph timings do not grow with depth (calibration would give blocks "
                      "no cost); the table keeps its measured parts uncalibrated: profile again on a quiet machine "
                      "or with more --rounds to calibrate it", PrunesearchWarning, stacklevel=2)
        return raw
    return build_table(request.name, meta, request.cfg, entries, provenance, calibration)


def _whole(table: LatencyTable, depth: int, ai: int | None, measured_ms: float) -> WholeGraph:
    """A timed whole graph beside its raw sum of parts, split into blocks and the rest."""
    est = table.estimate_teacher() if ai is None else table.estimate(depth, ai)
    blocks = sum(v for k, v in est.parts.items() if k in BLOCK_KINDS)
    return WholeGraph(_whole_name(depth, ai), blocks, est.raw_ms - blocks, measured_ms)


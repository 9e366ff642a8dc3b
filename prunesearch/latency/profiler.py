"""Measure a latency table on the machine this runs on, with onnxruntime.

Each part kind is exported on its own at the architecture's shapes and timed in interleaved
rounds (see :mod:`prunesearch.latency.runtime`). Two effects would make a naive sum of isolated
parts disagree with a whole graph, and both are measured rather than assumed away:

* every ``session.run`` has a fixed cost (binding inputs, allocating outputs, waking the thread
  pool). It is measured on a graph with the per-frame graph's inputs and outputs and no work, is
  subtracted from each part, and becomes the table's ``fixed`` entry, paid once per graph run;
* a block timed alone, again and again, finds its weights in cache; inside a tracker each block
  has its own weights. Blocks are therefore timed as a chain of ``chain`` distinct blocks, and the
  entry is the chain's time less the run cost, over ``chain``.
"""

from __future__ import annotations

import datetime as dt
import math
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from prunesearch.latency.parts import BLOCK_KINDS, FIXED, part_graph, part_shapes
from prunesearch.latency.runtime import (
    RuntimeSettings,
    Timing,
    TimingPlan,
    export_graph,
    machine_fingerprint,
    machine_info,
    open_session,
    time_graphs,
)
from prunesearch.latency.table import STATS, Entry, LatencyTable, build_table, rounded_stats
from prunesearch.models.vit_tracker import TrackerConfig

#: ``progress(stage, done, total)``: stage is "export" or "time".
Progress = Callable[[str, int, int], None]

#: Chained blocks stop once their weights surely overflow the caches of any CPU we target.
CHAIN_BYTES = 64 * 2**20


def default_chain(cfg: TrackerConfig) -> int:
    """Blocks per timed chain: as many as the teacher holds, fewer once their weights exceed 64 MiB."""
    block_bytes = 4 * cfg.embed_dim * (4 * cfg.embed_dim + 2 * cfg.mlp_dim)
    return max(2, min(cfg.depth, math.ceil(CHAIN_BYTES / block_bytes)))


@dataclass(frozen=True)
class ProfileRequest:
    """What to measure and how; ``device`` and ``power_mode`` are the user's description of the machine.

    ``chain`` is the number of distinct blocks per timed block graph (None: :func:`default_chain`).
    """

    name: str
    cfg: TrackerConfig
    settings: RuntimeSettings
    plan: TimingPlan = TimingPlan()
    chain: int | None = None
    device: str | None = None
    power_mode: str | None = None
    preset: str | None = None

    @property
    def blocks_per_chain(self) -> int:
        return self.chain or default_chain(self.cfg)


def profile(request: ProfileRequest, progress: Progress | None = None, workdir: Path | None = None) -> LatencyTable:
    """Export, time and tabulate every part kind; returns the table (the caller saves it)."""
    request.settings.check()
    request.plan.check(request.settings)
    tick = progress or (lambda stage, done, total: None)
    kinds = list(part_shapes(request.cfg))
    with tempfile.TemporaryDirectory(prefix="prunesearch-profile-") as tmp:
        folder = Path(workdir or tmp)
        graphs = {}
        for i, kind in enumerate(kinds):
            repeat = request.blocks_per_chain if kind in BLOCK_KINDS else 1
            module, args, inputs, outputs = part_graph(request.cfg, kind, repeat)
            path, feeds = export_graph(module, args, folder / f"{kind}.onnx", inputs, outputs, request.settings)
            graphs[kind] = (open_session(path, request.settings), feeds)
            tick("export", i + 1, len(kinds))
        timings = time_graphs(graphs, request.plan, lambda r: tick("time", r, request.plan.rounds))
    return _tabulate(request, timings)


def _net_stats(timing: Timing, overhead_ms: float, per: int) -> dict[str, float]:
    """A graph's statistics less one run's overhead, per block of a chain."""
    raw = timing.stats()
    out = {k: max(raw[k] - overhead_ms, 0.0) / per for k in STATS if k != "runs"}
    out["runs"] = raw["runs"]
    return out


def _tabulate(request: ProfileRequest, timings: dict[str, Timing]) -> LatencyTable:
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
    meta = {
        "device": request.device or f"{info['cpu']} ({info['cores']} cores)",
        **request.settings.describe(),
        "power_mode": request.power_mode,
        "method": "measured",
        "statistic": "p50",
        "clock": request.plan.clock,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine_fingerprint": machine_fingerprint(),
        "machine": info,
    }
    provenance = {
        "how": "prunesearch profile: each part exported with prunesearch.export.export_module and timed "
        "with onnxruntime in interleaved rounds; entries are medians (p50) in milliseconds",
        "preset": request.preset,
        "chain": request.blocks_per_chain,
        "timing": asdict(request.plan),
        "graphs": {kind: rounded_stats(t.stats()) for kind, t in timings.items()},
    }
    return build_table(request.name, meta, request.cfg, entries, provenance)


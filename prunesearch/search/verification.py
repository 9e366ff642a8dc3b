"""Re-pricing what a search trained with any table of its architecture, and timing its front on the device.

Accuracy does not depend on the device, so a trained candidate's accuracy (from its MLflow run)
can be priced on any table of the architecture the search priced for: :func:`reprice` computes
each price from the table and the candidate's recorded depth and interaction layers (never from the
prices the run recorded), so a new device, or a corrected table, needs no new fine-tune.

:func:`verify` times the members' exported graphs and the teacher's where the table says they run
(:mod:`prunesearch.verify`: this machine, or a device over SSH) and sets the figures beside the
prices. It raises before returning when the device run fails, so :func:`record` never writes
partial figures. :func:`derive_table` fits a table to the figures (``latency derive --measured``)
so the front can be re-priced with what the device measured.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunesearch.errors import InputError, StorageError
from prunesearch.latency.registry import LOCAL_DIRNAME, load_table
from prunesearch.latency.table import LatencyTable
from prunesearch.mlflow_log.store import answered
from prunesearch.models.names import TEACHER
from prunesearch.models.phases import amortised
from prunesearch.models.vit_tracker import StudentSpec, TrackerConfig, build_student, build_teacher
from prunesearch.outputs import check_name
from prunesearch.search.budget import parse_budget
from prunesearch.search.mlflow_runs import schema as s
from prunesearch.search.mlflow_runs.read import StoredResult, accuracy_pool, latest_search_run, pick_stage, \
    read_results
from prunesearch.search.plot import FULL_SCALE
from prunesearch.search.pricing import check_table_architecture, table_price
from prunesearch.search.results import CandidateResult, fronts_and_ties, same_students, statuses
from prunesearch.verify import DeviceReport, Job, ModelGraphs, fact_warnings, run_local, run_ssh

MEMBER_CHOICES = ("front", "tied", "all")
TEACHER_STATUS = "teacher"


@dataclass(frozen=True)
class Repricing:
    """Every trained candidate of a search priced by one table: ``results`` carry only ``target``'s prices."""

    table: LatencyTable
    arch: TrackerConfig
    architecture: str
    results: list[CandidateResult]
    stored: dict[str, StoredResult]  # by candidate key
    searched: tuple[str, ...]  # the targets the runs were priced on

    @property
    def target(self) -> str:
        return self.table.name

    def line(self) -> str:
        """What was done, in one line: ``re-priced with T (table sha …) …; the search priced on orin-nx``."""
        verb = "priced" if self.target in self.searched else "re-priced"
        return (f"{verb} with {self.target} (table sha {self.table.sha256[:12]}) from each candidate's recorded depth and "
                f"interaction layers; the search priced on {', '.join(self.searched) or 'no target'}")

    def teacher_ms(self, template_update: int | None) -> tuple[float, float]:
        """The joint teacher's per-frame (amortised with ``template_update``) and template prices on this table."""
        price = table_price(self.table, self.arch, self.arch.depth, None, template_update)
        return price.priced_ms, price.template_ms


def reprice(stored: list[StoredResult], table: LatencyTable, experiment: str, allow_mixed: bool = False) -> Repricing:
    """``stored``'s newest run per candidate priced by ``table``; a table of another architecture is one line."""
    pool = accuracy_pool(stored, allow_mixed)
    architectures = sorted({x.architecture for x in pool})
    if len(architectures) != 1 or not architectures[0]:
        raise InputError(f"the runs of {experiment!r} record architectures {architectures or 'none'}; re-pricing needs one "
                         "(pick one study with --study)")
    arch = check_table_architecture(table, architectures[0], experiment)
    results = []
    for x in pool:
        r = x.result
        price = table_price(table, arch, r.depth, r.ai_layers, x.template_update)
        results.append(dataclasses.replace(r, latency_ms={table.name: price.priced_ms},
                                           template_ms={table.name: price.template_ms}))
    searched = tuple(sorted({t for x in stored for t in x.result.latency_ms}))
    return Repricing(table, arch, architectures[0], same_students(results), {x.result.key: x for x in pool}, searched)


@dataclass(frozen=True)
class DeviceAccess:
    """Where the graphs are timed: this machine (``host`` None) or ``[user@]HOST[:PORT]`` over the user's ssh.

    ``python`` is the device's python command (``python3`` there by default, this interpreter here);
    ``identity``, ``ssh_options`` and ``remote_tmp`` go to :func:`prunesearch.verify.run_ssh`.
    """

    host: str | None = None
    python: str | None = None
    identity: str | None = None
    ssh_options: tuple[str, ...] = ()
    remote_tmp: str | None = None
    timeout_s: float | None = None

    def run(self, job: Job) -> DeviceReport:
        if self.host is None:
            return run_local(job, self.timeout_s)
        return run_ssh(self.host, job, identity=self.identity, options=self.ssh_options, remote_tmp=self.remote_tmp,
                       timeout_s=self.timeout_s)


@dataclass(frozen=True)
class VerifyRequest:
    """``prunesearch verify``'s command line: which runs, which table, which members, how many timed runs."""

    experiment: str  # its name (the MLflow experiment's) or file
    target: str
    members: str = "front"  # front, tied, all, or candidate keys separated by commas
    runs: int = 200
    warmup: int = 20
    budget: str | None = None  # default: the search's
    study: str | None = None
    allow_mixed: bool = False
    device: DeviceAccess = field(default_factory=DeviceAccess)
    derive: str | None = None  # the table to fit from the figures: checked before anything is timed


@dataclass(frozen=True)
class ModelFigures:
    """One timed model beside its price: ms per frame (the template amortised where the search priced it so)."""

    name: str
    status: str  # front, tied, dominated, or teacher
    priced_ms: float
    p50: float
    p90: float
    p99: float
    template_ms: float  # measured, per template
    priced_template_ms: float
    budget_ms: float | None  # None for the teacher, which is no candidate
    run_id: str = ""

    @property
    def within_budget(self) -> bool | None:
        """Whether p99 holds the budget (None for the teacher)."""
        return None if self.budget_ms is None else self.p99 <= self.budget_ms

    @property
    def drift(self) -> float:
        """measured p50 / priced - 1: positive where the device is slower than the table says."""
        return self.p50 / self.priced_ms - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.name, "status": self.status, "priced_ms": self.priced_ms, "p50_ms": self.p50,
                "p90_ms": self.p90, "p99_ms": self.p99, "template_ms": self.template_ms,
                "priced_template_ms": self.priced_template_ms, "budget_ms": self.budget_ms,
                "within_budget_p99": self.within_budget, "drift": self.drift, "run_id": self.run_id}


@dataclass(frozen=True)
class Verification:
    """A complete device run of the members and the teacher, with the prices they are checked against."""

    experiment: str
    repricing: Repricing
    budget_ms: float
    models: list[ModelFigures]  # members in price order, then the teacher
    report: DeviceReport
    warnings: list[str]  # the device against the table's meta, one line each
    notes: list[str]  # how the graphs were made where that is not the obvious way

    @property
    def members(self) -> list[ModelFigures]:
        return [m for m in self.models if m.status != TEACHER_STATUS]

    @property
    def median_drift(self) -> float:
        return statistics.median(m.drift for m in self.models)

    @property
    def kendall_tau(self) -> float:
        """Rank agreement of priced and measured (p50) order over every timed model; NaN below two models."""
        if len(self.models) < 2:
            return float("nan")
        from scipy.stats import kendalltau

        return float(kendalltau([m.priced_ms for m in self.models], [m.p50 for m in self.models]).statistic)

    def over_budget(self, status: str = "front") -> list[ModelFigures]:
        """The members of ``status`` whose p99 is over the budget."""
        return [m for m in self.members if m.status == status and m.within_budget is False]

    def to_dict(self) -> dict[str, Any]:
        table = self.repricing.table
        return {"experiment": self.experiment, "target": table.name, "table_sha256": table.sha256,
                "repriced": self.repricing.line(), "budget_ms": self.budget_ms, "where": self.report.where,
                "device": self.report.device, "settings": self.report.settings, "warnings": self.warnings,
                "notes": self.notes, "models": [m.to_dict() for m in self.models],
                "median_drift": self.median_drift, "kendall_tau": _finite(self.kendall_tau),
                "front_over_budget": [m.name for m in self.over_budget()]}


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def experiment_name(ref: str) -> str:
    """An experiment file's name (``tiny.yaml`` -> ``tiny``), as ``run`` names its MLflow experiment; a name as given."""
    path = Path(ref)
    return path.stem if path.suffix in (".yaml", ".yml") else ref


def load_repricing(uri: str, experiment: str, target: str, study: str | None, allow_mixed: bool) -> Repricing:
    """The trained candidates of ``experiment`` in the store ``uri`` (never created), priced by the table ``target``."""
    table = load_table(target)
    stored = pick_stage(read_results(uri, experiment, study), None, experiment)
    return reprice(stored, table, experiment, allow_mixed)


def verify(req: VerifyRequest, uri: str) -> Verification:
    """Time the chosen members and the teacher on the device; every figure or none (a failure raises)."""
    name = experiment_name(req.experiment)
    rep = load_repricing(uri, name, req.target, req.study, req.allow_mixed)
    budget_ms = parse_budget(req.budget).ms if req.budget else max(rep.results, key=_start(rep)).budget_ms
    target = rep.target
    fronts, ties = fronts_and_ties(rep.results, [target], budget_ms)
    status = statuses(rep.results, fronts[target], ties[target])
    chosen = _choose(req.members, rep, status)
    if req.derive:
        _check_derivable(req.derive, rep.table, [r.key for r in chosen])
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="prunesearch-verify-graphs-") as tmp:
        graphs = [_member_graphs(rep.stored[r.key], rep.arch, rep.architecture, uri, notes, Path(tmp)) for r in chosen]
        graphs.append(_teacher_graphs(req.experiment, rep, notes))
        job = Job.from_meta(graphs, rep.table.meta, runs=req.runs, warmup=req.warmup, python=req.device.python)
        report = req.device.run(job)
    models = []
    for r in chosen:
        update = rep.stored[r.key].template_update
        models.append(_figures(report, r.key, status[r.key], r.latency_ms[target], r.template_ms[target], update,
                               budget_ms, r.run_id))
    update = rep.stored[chosen[0].key].template_update if chosen else None
    teacher_ms, teacher_template = rep.teacher_ms(update)
    models.append(_figures(report, TEACHER, TEACHER_STATUS, teacher_ms, teacher_template, update, None))
    return Verification(name, rep, budget_ms, models, report, fact_warnings(report, rep.table.meta), notes)


def _start(rep: Repricing):  # noqa: ANN202 - a sort key
    return lambda r: rep.stored[r.key].start_time


def _choose(members: str, rep: Repricing, status: dict[str, str]) -> list[CandidateResult]:
    """The members asked for, in price order: front, front and tied, all, or named candidates."""
    by_price = sorted(rep.results, key=lambda r: (r.latency_ms[rep.target], r.key))
    if members == "front":
        chosen = [r for r in by_price if status[r.key] == "front"]
    elif members == "tied":
        chosen = [r for r in by_price if status[r.key] in ("front", "tied")]
    elif members == "all":
        chosen = by_price
    else:
        names = [n.strip() for n in members.split(",") if n.strip()]
        unknown = [n for n in names if n not in status]
        if unknown or not names:
            raise InputError(f"--members {members!r}: no trained candidate {unknown[0] if unknown else members!r}; give "
                             f"{', '.join(MEMBER_CHOICES)} or candidates of {', '.join(sorted(status))}")
        chosen = [r for r in by_price if r.key in names]
    if not chosen:
        raise InputError(f"no {members} member fits the budget on {rep.target}: pass --members all or a larger --budget")
    return chosen


def _figures(report: DeviceReport, name: str, status: str, priced_ms: float, priced_template_ms: float,
             update: int | None, budget_ms: float | None, run_id: str = "") -> ModelFigures:
    t = report.model(name)
    return ModelFigures(name, status, priced_ms, *(amortised(getattr(t, k), t.template_ms, update) for k in ("p50", "p90", "p99")),
                        t.template_ms, priced_template_ms, budget_ms, run_id)


def _member_graphs(x: StoredResult, arch: TrackerConfig, architecture: str, uri: str, notes: list[str],
                   tmp: Path) -> ModelGraphs:
    """A member's two graphs: its logged model's, else exported from its checkpoint here (kept in the graph cache).

    Where the accuracy came from a stand-in of another architecture (the small preset), its graphs
    are not the deployment architecture the table prices: the member's shape is exported at that
    architecture with untrained weights, which time the same (latency does not depend on the weights).
    """
    r = x.result
    if r.accuracy_scale != FULL_SCALE:
        if not notes:
            notes.append(f"accuracy scale {r.accuracy_scale}: the trained weights are a stand-in of another architecture, "
                         "so each member is timed at the priced architecture with untrained weights of its shape "
                         "(latency does not depend on the weights)")
        key = {"untrained": architecture, "depth": r.depth, "ai_layers": r.ai_layers}
        return _cached_graphs(r.key, key, lambda out: _export(build_student(arch, StudentSpec(r.depth, r.ai_layers)), out))
    if x.model_uri:
        import mlflow

        folder = tmp / r.key.replace("/", "-")
        with answered(uri):  # a server that does not answer is one line here too
            path = Path(mlflow.artifacts.download_artifacts(artifact_uri=x.model_uri, dst_path=str(folder), tracking_uri=uri))
        return ModelGraphs.from_dir(r.key, path / "artifacts")
    if not x.checkpoint or not Path(x.checkpoint).is_file():
        raise InputError(f"{r.key} has no logged model and its checkpoint {x.checkpoint or '(none recorded)'} is not on this "
                         "machine (trained elsewhere?): copy it to that path, or verify --members front")
    from prunesearch.search.candidate import export_onnx
    from prunesearch.search.reproducibility import file_sha256

    return _cached_graphs(r.key, {"weights": file_sha256(x.checkpoint)}, lambda out: export_onnx(x.checkpoint, out))


def _teacher_graphs(experiment: str, rep: Repricing, notes: list[str]) -> ModelGraphs:
    """The teacher of ``experiment`` (a name or file) where its file is here and of the priced architecture; else that
    architecture with untrained weights."""
    from prunesearch.errors import PrunesearchError
    from prunesearch.search.experiment import load_experiment
    from prunesearch.search.reproducibility import file_sha256
    from prunesearch.search.setup import load_teacher, same_architecture
    from prunesearch.teacher import SHIPPED_TEACHER

    try:
        exp = load_experiment(experiment)
    except PrunesearchError:
        exp = None
    if exp is not None:
        key = {"teacher": file_sha256(exp.teacher_checkpoint or SHIPPED_TEACHER), "architecture": rep.architecture}
        graphs = _cached_graphs(TEACHER, key)
        if graphs is not None:
            return graphs
        model = load_teacher(exp)[0].model
        if same_architecture(model.cfg, rep.arch):
            return _cached_graphs(TEACHER, key, lambda out: _export(model, out))
    notes.append(f"the teacher is timed at {rep.architecture} with untrained weights (the experiment's teacher of that "
                 "architecture is not here; latency does not depend on the weights)")
    return _cached_graphs(TEACHER, {"untrained": rep.architecture}, lambda out: _export(build_teacher(rep.arch), out))


GRAPH_CACHE = "verify-graphs"


def _cached_graphs(name: str, key: dict[str, Any], export: Callable[[Path], object] | None = None) -> ModelGraphs | None:
    """A model's exported pair from the graph cache, exported into it by ``export(folder)`` if missing.

    Exporting is most of a verification's time (seconds per model); the same weights at the same
    prunesearch and torch versions export the same graphs, so a second verification (another
    device, a corrected table) reuses them. ``key`` names the weights. None when missing and no ``export``.
    """
    import hashlib
    import json

    import torch

    from prunesearch._version import __version__
    from prunesearch.export import FRAME_FILE, TEMPLATE_FILE
    from prunesearch.paths import cache_dir

    text = json.dumps({**key, "prunesearch": __version__, "torch": torch.__version__}, sort_keys=True)
    folder = cache_dir(GRAPH_CACHE) / hashlib.sha256(text.encode()).hexdigest()[:24]
    graphs = ModelGraphs(name, folder / TEMPLATE_FILE, folder / FRAME_FILE)
    if graphs.template.is_file() and graphs.frame.is_file():
        return graphs
    if export is None:
        return None
    try:
        export(folder)  # written whole or not at all (prunesearch.outputs.output_folder)
    except StorageError:
        if not (graphs.template.is_file() and graphs.frame.is_file()):  # else another process won the race
            raise
    return graphs


def _export(model, folder: Path) -> None:  # noqa: ANN001 - a tracker module
    from prunesearch.export import export_tracker

    export_tracker(model.eval(), folder)


def record(v: Verification, uri: str) -> str | None:
    """The figures on each member's run and, on the search's latest parent run, the table, plot and measured file.

    Returns the parent run's id (None when the store holds no parent run of the experiment).
    """
    import matplotlib.pyplot as plt
    import yaml

    from prunesearch.mlflow_log.writer import MlflowWriter

    writer = MlflowWriter(uri)
    target = v.repricing.target
    facts = {k: val for k, val in s.flat(s.VERIFY_DEVICE, v.report.device).items() if val is not None}
    for m in v.members:
        writer.log(m.run_id, metrics={s.VERIFY_P50_MS: m.p50, s.VERIFY_P99_MS: m.p99},
                   tags={s.VERIFY_WITHIN_BUDGET: str(m.within_budget).lower(), s.VERIFY_TARGET: target,
                         s.VERIFY_WHERE: v.report.where, **facts})
    exp_id = writer.experiment_of(v.members[0].run_id)
    studies = {v.repricing.stored[m.name].study for m in v.members}
    parent = latest_search_run(writer.client, exp_id, studies.pop() if len(studies) == 1 else None)
    if parent is None:
        return None
    table_file, plot_file, measured_file = s.verify_files(target)
    writer.log_table(parent, [m.to_dict() for m in v.models], table_file)
    fig = verification_figure(v)
    writer.log_figure(parent, fig, plot_file)
    plt.close(fig)
    writer.log_text(parent, yaml.safe_dump(v.report.measured_figures(preset=v.repricing.architecture), sort_keys=False),
                    measured_file)
    metrics = {s.per(s.VERIFY_MEDIAN_DRIFT, target): v.median_drift, s.per(s.VERIFY_OVER_BUDGET, target): len(v.over_budget())}
    if math.isfinite(v.kendall_tau):
        metrics[s.per(s.VERIFY_KENDALL_TAU, target)] = v.kendall_tau
    writer.log(parent, metrics=metrics)
    return parent


def verification_figure(v: Verification):  # noqa: ANN201 - a matplotlib Figure
    """Measured p50 (bar to p99) against priced ms per model, the diagonal where they agree, the budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    for m in v.models:
        colour = "tab:grey" if m.status == TEACHER_STATUS else "tab:red" if m.within_budget is False else "tab:blue"
        ax.errorbar(m.priced_ms, m.p50, yerr=[[0], [m.p99 - m.p50]], fmt="o", color=colour, capsize=3)
        ax.annotate(m.name, (m.priced_ms, m.p50), xytext=(4, 4), textcoords="offset points", fontsize=8)
    top = max(max(m.p99 for m in v.models), max(m.priced_ms for m in v.models), v.budget_ms) * 1.08
    ax.plot([0, top], [0, top], color="black", linewidth=0.8, label="measured = priced")
    ax.axhline(v.budget_ms, color="tab:red", linestyle="--", linewidth=0.8, label=f"budget {v.budget_ms:.2f} ms")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel(f"priced ms per frame ({v.repricing.target})")
    ax.set_ylabel(f"measured ms per frame, p50 (bar to p99) on {v.report.device.get('name')}")
    tau = v.kendall_tau
    ax.set_title(f"{v.experiment}: median drift {100 * v.median_drift:+.1f}%"
                 + (f", Kendall tau {tau:.2f}" if math.isfinite(tau) else ""), fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def _check_derivable(name: str, table: LatencyTable, members: list[str]) -> None:
    """``name`` is a plain file name other than the table being verified's, and the ``members``
    (candidate keys) give three student shapes to fit."""
    check_name(name, "--derive")
    if name == table.name or (table.path is not None and (Path(LOCAL_DIRNAME) / f"{name}.yaml").resolve() == table.path.resolve()):
        raise InputError(f"--derive {name}: that is the table being verified; give the corrected table a new name")
    shapes = {key.split("/")[0] for key in members}
    if len(shapes) < 3:
        raise InputError(f"--derive needs at least 3 student shapes (B{{N}}-{{M}}) to fit and leave one out; the members "
                         f"have {len(shapes)} ({', '.join(sorted(shapes))}): pass --members all or name more candidates")


@dataclass(frozen=True)
class Derived:
    """A table fitted to a verification's figures, where it and the figures were written, and what tied its parts."""

    table: LatencyTable
    path: Path
    measured: Path
    tie: str


def derive_table(v: Verification, name: str, statistic: str = "p50") -> Derived:
    """Fit ``name`` to the figures as ``latency derive --measured`` does, written to ./latency_models/NAME.yaml.

    The part kinds' relative costs are tied to the verified table's own entries where it is a
    measured onnxruntime table (verify times onnxruntime), to their MACs otherwise.
    """
    from prunesearch.latency.derive import derive_measured, read_measured

    table = v.repricing.table
    _check_derivable(name, table, [m.name for m in v.members])
    out = Path(LOCAL_DIRNAME) / f"{name}.yaml"
    measured = v.report.write_measured(Path(LOCAL_DIRNAME) / "measured" / f"{name}.yaml", statistic, v.repricing.architecture,
                                       flag="--derive")
    own = table.meta.get("method") == "measured" and table.meta.get("runtime") == "onnxruntime"
    tie_line = (f"tie: {table.name}'s own part costs (a measured onnxruntime table, as verify times)" if own else
                f"tie: MACs ({table.name} is {table.meta.get('method')} with {table.meta.get('runtime')}, not a measured "
                "onnxruntime table)")
    derived = derive_measured(read_measured(measured), name, table if own else "flops")
    path = derived.save(out, "--derive")
    return Derived(load_table(path), path, measured, tie_line)

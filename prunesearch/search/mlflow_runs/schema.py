"""Every tag, param, metric and artifact name a search writes to MLflow, and the layout of a
candidate's child run, for the writer (:mod:`.log`) and the reader (:mod:`.read`) alike.

A search has one parent run (``kind=search``) per invocation and one child run
(``kind=candidate``) per fine-tune. A child run holds:

* at its start: the search's common params and tags (:class:`SearchInfo`), the candidate's
  params (``depth``, ``ai_layers``, ``rule``) and its prices (:func:`priced_metrics`);
* at its end: :func:`settled_fields` of its trial record (accuracy, timings, blocks, outcome,
  training key), the accuracy intervals, ``status`` and, off the front, the ``reason``.

A :class:`~prunesearch.search.results.CandidateResult` is built from that layout in one place,
:func:`candidate_result`, whether the layout comes from a run (``pareto``) or from the study and
the price book (the end of ``run``). Logging one more value per candidate: name it here, put it in
the layout where it is produced (a trainer's ``accuracy``, a price), and read it in
:func:`candidate_result` if results should carry it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from prunesearch.evaluation.uncertainty import SequenceStats, bootstrap_intervals
from prunesearch.search.budget import Budget
from prunesearch.search.pricing import PriceBook
from prunesearch.search.results import ACCURACY_KEYS, CandidateResult
from prunesearch.search.space import Candidate
from prunesearch.search.stage import BRIEF
from prunesearch.search.study.record import Outcome, TrialRecord
from prunesearch.mlflow_log.store import filter_value

# Tags of every run of a search.
KIND = "kind"
SEARCH, CANDIDATE_RUN = "search", "candidate"  # the values of KIND
STUDY = "study"
WORKER = "worker"  # the process that opened the run, so a lost one's open runs can be ended
ACCURACY_SCALE = "accuracy_scale"
DATA_FINGERPRINT = "data_fingerprint"
TEACHER_FINGERPRINT = "teacher_fingerprint"
TRAINING_IDENTITY = "training_identity"  # see prunesearch.search.identity
NOTE = "mlflow.note.content"  # the run's description (Markdown) on its MLflow page
RUN_NAME = "mlflow.runName"

# Tags of the parent run.
STRATEGY = "strategy"
GIT_COMMIT = "git_commit"
FRONT_STAGE = "front_stage"

# Tags of a child run.
STAGE = "stage"
CANDIDATE = "candidate"
TRIAL = "trial"
OUTCOME = "outcome"  # an Outcome value
STATUS = "status"  # Outcome.label, or why an unsettled fine-tune ended
REASON = "reason"
MESSAGE = "message"
STEPS = "steps"
CHECKPOINT = "checkpoint"
TRAINING_KEY = "training_key"  # see prunesearch.search.identity
REUSED_FROM = "reused_from"  # settled from this fine-tune (study, trial, candidate, run), without one of its own
SAME_AS = "same_as"  # the other candidates of the search that are the same student (space-separated)
PARETO = "pareto"  # "true" on any target's front
MODEL_URI = "model_uri"
REGISTERED_MODEL = "registered_model"

# Params.
STORAGE = "storage"  # parent run only
BUDGET_MS = "budget_ms"
ARCHITECTURE = "architecture"  # the deployment architecture's preset name: what every price is for
TEMPLATE_UPDATE = "template_update"  # K, or ONCE_PER_SEQUENCE
ONCE_PER_SEQUENCE = "once per sequence"
BLOCKS = "blocks"
FINETUNE = "finetune"  # prefix of the fine-tune settings, flattened: finetune.augment.scale

# Metrics.
RUNG_LOSS = "early_stop.rung_loss"

# Artifacts.
SEQUENCES_FILE = "sequences.json"  # per-sequence scores of a trained candidate: what `pareto` resamples
CONFIG_FILE = "config.json"
REPRODUCIBILITY_FILE = "reproducibility.json"
PRICING_CSV, PRICING_TABLE = "pricing.csv", "pricing.json"  # every candidate of the space, priced


def front_files(target: str) -> tuple[str, str, str, str]:
    """The parent run's front on ``target``: CSV, JSON, MLflow table, plot."""
    return f"front/{target}.csv", f"front/{target}.json", f"front_{target}.json", f"front/pareto_{target}.png"


# Names per target or per part: ``per(LATENCY_MS, "orin-nx")`` is ``latency_ms.orin-nx``.
LATENCY_TABLE = "latency_table"  # tag: the hash of the target's latency table
FEASIBLE, PARETO_ON, TIED_ON = "feasible", "pareto", "tied"  # child-run tags per target
LATENCY_MS, FPS, TEMPLATE_MS = "latency_ms", "fps", "template_ms"  # child-run metrics per target
SECONDS, TRIALS = "seconds", "trials"  # parent-run metrics per part of the run, per outcome
FRONT_SIZE, BEST_AO, BEST_AO_PCT = "front_size", "best_ao", "best_ao_pct"  # parent-run metrics per target


# What `prunesearch verify` records. On each timed member's child run: the measured figures
# (metrics), whether it holds the budget at p99 (tag) and the device as measured (tags under
# VERIFY_DEVICE). On the search's latest parent run, per target: a table, a plot and the figures in
# the `latency derive --measured` format, and the overall drift and rank agreement (metrics).
VERIFY_P50_MS, VERIFY_P99_MS = "verify.p50_ms", "verify.p99_ms"
VERIFY_WITHIN_BUDGET = "verify.within_budget"  # "true" / "false"
VERIFY_TARGET, VERIFY_WHERE, VERIFY_DEVICE = "verify.target", "verify.where", "verify.device"  # tags; VERIFY_DEVICE a prefix
VERIFY_MEDIAN_DRIFT, VERIFY_KENDALL_TAU, VERIFY_OVER_BUDGET = "verify.median_drift", "verify.kendall_tau", "verify.over_budget"


def verify_files(target: str) -> tuple[str, str, str]:
    """The parent run's verification on ``target``: MLflow table, measured-vs-priced plot, measured figures."""
    return f"verify_{target}.json", f"verify/measured_vs_priced_{target}.png", f"verify/measured_{target}.yaml"


def per(prefix: str, key: str) -> str:
    return f"{prefix}.{key}"


def percent(accuracy: dict[str, float]) -> dict[str, float]:
    """``ao_pct`` and so on beside the fractions: the UI then shows what the CLI shows."""
    return {f"{k}_pct": 100 * v for k, v in accuracy.items() if k in ACCURACY_KEYS and v is not None}


def flat(prefix: str, mapping: dict[str, object]) -> dict[str, object]:
    """Nested settings as MLflow params: ``finetune.augment.scale`` and so on."""
    out: dict[str, object] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(flat(f"{prefix}.{key}", value))
        else:
            out[f"{prefix}.{key}"] = value
    return out


@dataclass(frozen=True)
class SearchInfo:
    """What every run of one search shares; tags and params of parent and children come from here."""

    experiment: str
    study: str
    storage: str
    targets: tuple[str, ...]
    budget: Budget
    architecture: str
    teacher: str
    teacher_fingerprint: str
    data: str
    data_fingerprint: str
    seed: int
    accuracy_scale: str
    finetune: dict[str, object]
    table_hashes: dict[str, str]
    template_update: int | None = None
    workdir: str = ""  # where this machine keeps the fine-tuned checkpoints
    training_identity: str = ""

    def common_params(self) -> dict[str, object]:
        return {
            "targets": ",".join(self.targets),
            "budget": self.budget.text,
            BUDGET_MS: self.budget.ms,
            ARCHITECTURE: self.architecture,
            "teacher": self.teacher,
            "data": self.data,
            "seed": self.seed,
            TEMPLATE_UPDATE: self.template_update or ONCE_PER_SEQUENCE,
            **flat(FINETUNE, self.finetune),
        }

    def common_tags(self) -> dict[str, str]:
        return {
            STUDY: self.study,
            ACCURACY_SCALE: self.accuracy_scale,
            DATA_FINGERPRINT: self.data_fingerprint,
            TEACHER_FINGERPRINT: self.teacher_fingerprint,
            TRAINING_IDENTITY: self.training_identity,
            **{per(LATENCY_TABLE, t): h for t, h in self.table_hashes.items()},
        }


@dataclass
class RunFields:
    """Params, metrics and tags of (part of) a run."""

    params: dict[str, object] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, object] = field(default_factory=dict)

    def plus(self, other: "RunFields") -> "RunFields":
        return RunFields({**self.params, **other.params}, {**self.metrics, **other.metrics}, {**self.tags, **other.tags})


def priced_metrics(cand: Candidate, book: PriceBook) -> dict[str, float]:
    """What a candidate costs: its price on every target, its MACs and params."""
    metrics: dict[str, float] = {}
    for target, price in book.prices[cand.key].items():
        metrics[per(LATENCY_MS, target)] = price.priced_ms
        metrics[per(FPS, target)] = price.fps
        metrics[per(TEMPLATE_MS, target)] = price.template_ms
    metrics.update(asdict(book.costs[cand.key]))
    return metrics


def settled_fields(record: TrialRecord) -> RunFields:
    """What a settled trial adds to its child run (the accuracy intervals apart: :func:`interval_metrics`)."""
    params = {BLOCKS: " ".join(str(b) for b in record.blocks)}
    metrics = {**record.accuracy, **percent(record.accuracy), **{per(SECONDS, k): v for k, v in record.seconds.items()}}
    tags: dict[str, object] = {OUTCOME: record.outcome, STEPS: record.steps}
    if record.checkpoint:
        tags[CHECKPOINT] = record.checkpoint
    if record.training_key:
        tags[TRAINING_KEY] = record.training_key
    if record.reused_from:
        f = record.reused_from
        tags[REUSED_FROM] = f"{f['candidate']}: trial {f['trial']} of study {f['study']} (run {f['run_id'] or 'none'})"
    return RunFields(params, metrics, tags)


def interval_metrics(sequences: dict | None) -> dict[str, float]:
    """The 95% bootstrap interval of each accuracy metric over the scored sequences."""
    if sequences is None:
        return {}
    out = {}
    for key, iv in bootstrap_intervals(SequenceStats.from_dict(sequences)).items():
        if math.isfinite(iv.low):
            out.update({f"{key}_ci_low": iv.low, f"{key}_ci_high": iv.high})
    return out


def study_fields(cand: Candidate, record: TrialRecord, book: PriceBook, accuracy_scale: str) -> RunFields:
    """The layout a trained trial's child run has, from the study and the price book alone."""
    start = RunFields({**cand.params, BUDGET_MS: book.budget.ms}, priced_metrics(cand, book),
                      {CANDIDATE: cand.key, ACCURACY_SCALE: accuracy_scale, TRIAL: record.number})
    return start.plus(settled_fields(record))


def candidate_result(run: RunFields, run_id: str, sequences: dict | None) -> CandidateResult:
    """The one place a :class:`CandidateResult` is built: from a child run's layout."""
    p, m, t = run.params, run.metrics, run.tags
    targets = [k.split(".", 1)[1] for k in m if k.startswith(per(LATENCY_MS, ""))]
    return CandidateResult(
        key=str(t[CANDIDATE]),
        depth=int(p["depth"]),
        ai_layers=int(p["ai_layers"]),
        rule=str(p["rule"]),
        accuracy={k: m[k] for k in ACCURACY_KEYS if k in m},
        latency_ms={x: m[per(LATENCY_MS, x)] for x in targets},
        template_ms={x: m.get(per(TEMPLATE_MS, x), float("nan")) for x in targets},
        budget_ms=float(p[BUDGET_MS]),
        gmacs_per_frame=m.get("gmacs_per_frame", float("nan")),
        params_m=m.get("params_m", float("nan")),
        accuracy_scale=str(t.get(ACCURACY_SCALE, "unknown")),
        blocks=[int(b) for b in str(p.get(BLOCKS, "")).split()],
        run_id=run_id,
        trial=int(t.get(TRIAL, -1)),
        sequences=sequences,
        training_key=str(t.get(TRAINING_KEY, "")),
    )


def fingerprints(tags: dict[str, str], targets: list[str]) -> dict[str, str]:
    """What must match for two runs to be comparable: data, teacher, and each target's latency table."""
    prints = {"data": tags.get(DATA_FINGERPRINT, ""), "teacher": tags.get(TEACHER_FINGERPRINT, "")}
    prints.update({per(LATENCY_TABLE, x): tags.get(per(LATENCY_TABLE, x), "") for x in targets})
    return prints


def stage_of(tags: dict[str, str]) -> str:
    return tags.get(STAGE, BRIEF)  # runs logged before stages existed are brief


def candidate_runs(outcome: Outcome, study: str | None) -> str:
    """The filter string of a study's (or an experiment's) child runs with ``outcome``."""
    query = f"tags.{KIND} = {filter_value(CANDIDATE_RUN)} AND tags.{OUTCOME} = {filter_value(outcome.value)}"
    return query + (f" AND tags.{STUDY} = {filter_value(study)}" if study else "")


def search_runs(study: str | None) -> str:
    """The filter string of a study's (or an experiment's) parent runs."""
    query = f"tags.{KIND} = {filter_value(SEARCH)}"
    return query + (f" AND tags.{STUDY} = {filter_value(study)}" if study else "")


def summary_metrics(times: dict[str, float], outcomes: dict[str, int], work: dict[str, float], steps: int) -> dict[str, float]:
    """The parent run's timings (wall seconds per part) and counts (trials per outcome, fine-tune work)."""
    out: dict[str, float] = {per(SECONDS, k): v for k, v in times.items()}
    out.update({per(TRIALS, k): v for k, v in outcomes.items()})
    out.update({per(SECONDS, k): v for k, v in work.items()})
    out["finetune_steps"] = steps
    return out

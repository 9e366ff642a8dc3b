"""Fine-tunes to the front: every strategy replayed against the tabular benchmark of the whole space.

    python -m benchmarks.search_front_efficiency [--table FILE] [--seeds 20] [--setting orin-nx:12ms ...]

The table (benchmarks/space_table.py, benchmarks/results/space_table.json) holds every distinct
student of the LiteTrack space fine-tuned with real training, once per seed. For each (target,
budget) setting whose fitting students the table holds, every strategy searches against it through
the controller's Trainer seam (:class:`ReplayTrainer`: a fine-tune answers with a recorded one,
its seed drawn at random per fine-tune so seed noise is part of the replay), with a fresh in-memory
study per replay seed. A student's true AO is its mean over the table's seeds; the true front is
the front of those. After k fine-tunes we score the hypervolume of the trained students' true
(latency, AO) points, relative to the true front's, with the reference point (budget, lowest
true AO of the fitting students), and note when the whole true front is held.

Strategies: enumeration fastest first (the product's ``enumerate``) and in random order; Optuna's
random, TPE, NSGA-II and GP samplers (``strategy: sample``); prunesearch's model planner with a
fixed count (the whole space: its order) and with ``trials: auto`` (where it stops).
Comparisons follow Optuna's sampler benchmarks: medians over seeds, one-sided Mann-Whitney U at 0.10.
Writes benchmarks/results/search_front_efficiency.md and a JSON of every replay beside it.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from tests.support import REPO

TABLE = REPO / "benchmarks" / "results" / "space_table.json"
OUT = REPO / "benchmarks" / "results" / "search_front_efficiency.md"
TEACHER_DEPTH = 12  # the shipped small teacher the table was built on
MIN_STUDENTS = 15
HV_GOAL = 0.99
SAMPLERS = ("random", "tpe", "nsga2", "gp")
EARLY = "model, trials: auto, early stopping"  # the default experiment's settings: b4-b9's early_stop
STRATEGIES = ("enumerate (fastest first)", "enumerate (random order)", *(f"sample ({s})" for s in SAMPLERS),
              "model", "model, trials: auto", EARLY)


@dataclass(frozen=True)
class Recorded:
    """One student of the table: its blocks and split, and each seed's fine-tune."""

    blocks: tuple[int, ...]
    ai_layers: int
    names: tuple[str, ...]
    seeds: dict[str, dict]  # seed -> {"accuracy", "reports", ...}

    @property
    def true_ao(self) -> float:
        return statistics.mean(s["accuracy"]["ao"] for s in self.seeds.values())


def load_table(path: Path) -> tuple[dict[str, Recorded], dict]:
    """Candidate key -> its student, and the table's header (with ``covered``: seed -> the
    candidates that seed's searches settled). A candidate is the student its rule yields under the
    first seed; every seed's fine-tune of those blocks and split is that student's. The influence
    rule's blocks depend on the seed (its calibration batch), so a student it yields under one seed
    only has that seed's fine-tune: the replay draws from the seeds a student has."""
    table = json.loads(path.read_text())
    first = table["seeds"][0]
    by_name: dict[str, Recorded] = {}
    table["covered"] = {seed: set() for seed in table["seeds"]}
    for row in table["students"]:
        rec = Recorded(tuple(row["blocks"]), row["ai_layers"], tuple(row["names"].get(first, [])), row["seeds"])
        by_name.update({name: rec for name in rec.names})
        for seed, names in row["names"].items():
            table["covered"][seed].update(names)
    return by_name, table


class ReplayTrainer:
    """The controller's Trainer, answering with a recorded fine-tune of the student, its seed
    drawn per fine-tune; ``order`` lists the fine-tunes in order: (student, steps spent, trained to the end)."""

    def __init__(self, table: dict[str, Recorded], steps: int, seeds: list[str], rng: random.Random,
                 one_seed: bool = False) -> None:
        self.table, self.steps, self.seeds, self.rng = table, steps, seeds, rng
        # Early stopping compares losses at equal steps, which a search makes fair by giving every
        # fine-tune its seed: replayed so, one seed is drawn per search (the first-drawn one).
        self.fixed = rng.choice(seeds) if one_seed else None
        self.order: list[tuple[Recorded, int, bool]] = []

    def blocks(self, cand):  # noqa: ANN001, ANN201 - the Trainer protocol
        if cand.key in self.table:
            return self.table[cand.key].blocks
        # Over the setting's budget and never trained: any blocks do for its (unused) training key.
        from prunesearch.pruning import choose_blocks

        return choose_blocks(TEACHER_DEPTH, cand.depth, "first", None)

    def run(self, cand, on_step):  # noqa: ANN001, ANN201 - the Trainer protocol
        from prunesearch.search.controller import TrainResult

        rec = self.table[cand.key]
        has = [s for s in self.seeds if s in rec.seeds]
        fine_tune = rec.seeds[self.fixed if self.fixed in has else self.rng.choice(has)]
        for step, loss in fine_tune["reports"]:
            if on_step(step, {"loss": loss}) and step < self.steps:
                self.order.append((rec, step, False))
                return TrainResult("stopped")
        self.order.append((rec, self.steps, True))
        return TrainResult("ok", accuracy=dict(fine_tune["accuracy"]))


@dataclass
class Setting:
    target: str
    budget: str
    book: object  # PriceBook
    students: list[Recorded]  # distinct, fitting
    latency: dict[int, float]  # id(student) -> priced ms
    front: list[Recorded]
    reference: tuple[float, float]  # (budget ms, lowest true AO)
    steps: int  # of one fine-tune
    true_hv: float = 0.0
    runs: dict[str, list[dict]] = field(default_factory=dict)


def hypervolume(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by (latency, AO) points (lower latency, higher AO) up to the reference point."""
    from prunesearch.search.planner import Front

    front = Front(points, reference[0], floor=reference[1])
    if not front.steps:
        return 0.0
    return sum(width * (level - reference[1]) for width, level in front.segments(front.steps[0][0]))


def make_setting(table: dict[str, Recorded], target: str, budget: str, covered: dict[str, set[str]], steps: int) -> Setting | None:
    """The setting's fitting students, or None until every seed's searches have settled every
    fitting candidate (``covered``, from :func:`load_table`)."""
    from prunesearch.models.vit_tracker import PRESETS
    from prunesearch.search.budget import parse_budget
    from prunesearch.search.pareto import pareto_front
    from prunesearch.search.pricing import LatencyTablePricer, PriceBook
    from prunesearch.search.space import load_space

    space = load_space("litetrack")
    book = PriceBook(space.candidates(TEACHER_DEPTH), LatencyTablePricer((target,), PRESETS["vit-b"]), parse_budget(budget),
                     PRESETS["vit-b"])
    feasible = book.feasible()
    if any(c.key not in names for c in feasible for names in covered.values()):
        return None
    students = list({id(table[c.key]): table[c.key] for c in feasible}.values())
    latency = {id(table[c.key]): book.prices[c.key][target].priced_ms for c in feasible}
    front = pareto_front(students, lambda r: r.true_ao, lambda r: latency[id(r)])
    reference = (book.budget.ms, min(r.true_ao for r in students))
    setting = Setting(target, budget, book, students, latency, front, reference, steps)
    setting.true_hv = hypervolume([(latency[id(r)], r.true_ao) for r in front], reference)
    return setting


Order = list[tuple[Recorded, int, bool]]  # (student, steps spent, trained to the end), per fine-tune


def curve(setting: Setting, order: Order) -> list[float]:
    """Relative hypervolume of the students trained to the end after each fine-tune (a fine-tune
    stopped early adds nothing)."""
    out, trained = [], []
    for rec, _, full in order:
        if full:
            trained.append((setting.latency[id(rec)], rec.true_ao))
        out.append(hypervolume(trained, setting.reference) / setting.true_hv if trained else 0.0)
    return out


def front_held_after(setting: Setting, order: Order) -> int | None:
    wanted = {id(r) for r in setting.front}
    seen: set[int] = set()
    for k, (rec, _, full) in enumerate(order, 1):
        if full:
            seen.add(id(rec))
        if wanted <= seen:
            return k
    return None


def controller_order(setting: Setting, table: dict[str, Recorded], strategy: str, sampler: str, trials: int | None,
                     seed: int, seeds: list[str], steps: int, early: bool = False) -> tuple[Order, str | None]:
    """One replayed search: the students it fine-tuned in order, and why it stopped (trials: auto)."""
    from prunesearch.data.processing import CropGeometry
    from prunesearch.search.controller import NoSink, SearchController, SilentProgress, plan_search, training_keys
    from prunesearch.search.experiment import DataSpec, EarlyStop, SearchSettings
    from prunesearch.search.identity import TrainingIdentity
    from prunesearch.search.samplers import make_sampler
    from prunesearch.search.space import load_space
    from prunesearch.search.study.record import DIRECTIONS
    from prunesearch.training.finetune import FinetuneConfig

    n = len(setting.students)
    settings = SearchSettings(trials=trials, strategy=strategy, sampler=sampler, seeds=(), early_stop=EarlyStop() if early else None)
    study = optuna.create_study(directions=DIRECTIONS, sampler=make_sampler(sampler, seed, n // 2), study_name="replay")
    trainer = ReplayTrainer(table, steps, seeds, random.Random(seed), one_seed=early)
    identity = TrainingIdentity("replay", "replay", DataSpec(), FinetuneConfig(), CropGeometry(), real_data=False)
    book = setting.book
    plan = plan_search(study, book, settings, training_keys(trainer, identity, book.candidates))  # type: ignore[attr-defined]
    controller = SearchController(study, book, load_space("litetrack"), TEACHER_DEPTH, settings, plan, trainer,  # type: ignore[arg-type]
                                  NoSink(), SilentProgress(), identity)
    controller.work()
    return trainer.order, controller.stopped


def replay(setting: Setting, table: dict[str, Recorded], name: str, seed: int, seeds: list[str], steps: int) -> dict:
    n = len(setting.students)
    stopped = None
    if name.startswith("enumerate"):
        students = sorted(setting.students, key=lambda r: (setting.latency[id(r)], r.names))
        if "random" in name:
            random.Random(seed).shuffle(students)
        order = [(r, steps, True) for r in students]
    elif name.startswith("sample"):
        order, _ = controller_order(setting, table, "sample", name[8:-1], n, seed, seeds, steps)
    else:
        auto = "auto" in name
        order, stopped = controller_order(setting, table, "model", "random", None if auto else n, seed, seeds, steps,
                                          early=name == EARLY)
    hv = curve(setting, order)
    return {"seed": seed, "order": [r.names[0] for r, _, _ in order], "steps": sum(used for _, used, _ in order),
            "hv": hv, "front_after": front_held_after(setting, order),
            "goal_after": next((k for k, v in enumerate(hv, 1) if v >= HV_GOAL), None), "stopped": stopped}


def mann_whitney_less(a: list[float], b: list[float]) -> float:
    """One-sided p-value that ``a`` tends to be smaller than ``b``."""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(a, b, alternative="less").pvalue)


def _median(values: list[float | None], missing: float) -> float:
    return statistics.median(missing if v is None else v for v in values)


def report(settings: list[Setting], args: argparse.Namespace, header: dict, wall: float, names: list[str]) -> list[str]:
    from benchmarks.search_default_time import machine

    lines = [
        "# Fine-tunes to the front: strategies replayed against the whole space",
        "",
        f"Command: `python -m benchmarks.search_front_efficiency --seeds {args.seeds}"
        + "".join(f" --setting {s.target}:{s.budget}" for s in settings) + f"`; {wall:.0f} s on {machine()}.",
        "",
        f"Table: {args.table.resolve().relative_to(REPO) if args.table.resolve().is_relative_to(REPO) else args.table} ({header['what']}; {header['finetune_steps']}-step fine-tunes, "
        f"{header['val_sequences']} validation sequences, seeds {', '.join(header['seeds'])}; built with "
        f"`{header['command']}` on {header['machine']}). A replayed fine-tune draws one of the recorded seeds.",
        "Hypervolume: of the trained students' true (mean over seeds) AO and priced latency, relative to the true front's,",
        "reference point (budget, lowest true AO of the fitting students). Goal: "
        f"{100 * HV_GOAL:.0f}% of the true front's hypervolume within 30% of the fitting students' fine-tunes.",
        "",
    ]
    for s in settings:
        n = len(s.students)
        lines += [
            f"## {s.target} at {s.budget}: {n} distinct students fit, {len(s.front)} on the true front",
            "",
            f"{sum(len(r.seeds) == len(header['seeds']) for r in s.students)} of the {n} have a fine-tune of every seed; the "
            "others are students the influence rule keeps under one seed only (its blocks follow the seed's calibration batch).",
            "",
            "True front: " + ", ".join(f"{r.names[0]} (AO {100 * r.true_ao:.1f}, {s.latency[id(r)]:.2f} ms)" for r in s.front) + ".",
            "",
            f"| strategy | fine-tunes to {100 * HV_GOAL:.0f}% HV: median [worst] | to the whole front: median [worst] | "
            f"HV after {max(1, round(0.1 * n))} / {max(1, round(0.3 * n))} / {max(1, round(0.5 * n))} fine-tunes (median) | "
            f"steps spent (median; all {n} x {s.steps} = {n * s.steps}) | stopped after (median) [missed a front member] |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for name in names:
            runs = s.runs[name]
            goal = [r["goal_after"] for r in runs]
            held = [r["front_after"] for r in runs]
            at = [statistics.median(r["hv"][min(len(r["hv"]), max(1, round(f * n))) - 1] for r in runs) for f in (0.1, 0.3, 0.5)]
            stop = "-"
            if "auto" in name:
                lengths = [len(r["order"]) for r in runs]
                missed = sum(r["front_after"] is None for r in runs)
                stop = f"{statistics.median(lengths):.0f} ({100 * statistics.median(lengths) / n:.0f}%) [{missed} of {len(runs)}]"
            lines.append(
                f"| {name} | {_median(goal, n + 1):.0f} ({100 * _median(goal, n + 1) / n:.0f}%) [{max(g or n + 1 for g in goal)}] | "
                f"{_median(held, n + 1):.0f} [{max(h or n + 1 for h in held)}] | {' / '.join(f'{100 * v:.1f}%' for v in at)} | "
                f"{statistics.median(r['steps'] for r in runs):.0f} | {stop} |")
        samplers = [k for k in names if k.startswith("sample")]
        if "model" not in names or not samplers:
            continue
        model = [r["goal_after"] or n + 1 for r in s.runs["model"]]
        best = min(samplers, key=lambda k: statistics.median(r["goal_after"] or n + 1 for r in s.runs[k]))
        other = [r["goal_after"] or n + 1 for r in s.runs[best]]
        ratio = statistics.median(other) / statistics.median(model)
        lines += [
            "",
            f"Model vs the best Optuna sampler here ({best}), fine-tunes to {100 * HV_GOAL:.0f}% HV: "
            f"{ratio:.2f}x fewer (median), one-sided Mann-Whitney U p = {mann_whitney_less(model, other):.3g}.",
            "",
        ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--seeds", type=int, default=20, help="replays per strategy and setting")
    parser.add_argument("--setting", action="append", metavar="TARGET:BUDGET",
                        help="a (target, budget) to replay (default: every listed one the table holds with 15+ students)")
    parser.add_argument("--strategy", action="append", choices=STRATEGIES, help="replay only this one; repeat for several")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    table, header = load_table(args.table)
    seeds = header["seeds"]
    # Cuts after depths 6, 7, 8, 10 and none on orin-nx (space_table.py's budgets), and after depth 6 on the
    # 2080 Ti, whose latencies spread the same students otherwise.
    wanted = args.setting or ["orin-nx:12.2ms", "2080ti:4.3ms", "orin-nx:13.3ms", "orin-nx:14.4ms", "orin-nx:16.7ms",
                              "orin-nx:1000ms"]
    settings = []
    for text in wanted:
        target, _, budget = text.partition(":")
        s = make_setting(table, target, budget, header["covered"], header["finetune_steps"])
        if s is None or len(s.students) < MIN_STUDENTS:
            print(f"{text}: not in the table yet" if s is None else f"{text}: {len(s.students)} students, fewer than {MIN_STUDENTS}")
            continue
        settings.append(s)
    names = args.strategy or list(STRATEGIES)
    start = time.perf_counter()
    for s in settings:
        for name in names:
            clock = time.perf_counter()
            s.runs[name] = [replay(s, table, name, seed, seeds, header["finetune_steps"]) for seed in range(args.seeds)]
            print(f"{s.target}:{s.budget} {name}: {time.perf_counter() - clock:.1f} s", flush=True)
    wall = time.perf_counter() - start
    lines = report(settings, args, header, wall, names)
    args.out.write_text("\n".join(lines) + "\n")
    raw = {f"{s.target}:{s.budget}": s.runs for s in settings}
    args.out.with_suffix(".json").write_text(json.dumps(raw) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

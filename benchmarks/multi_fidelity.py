"""How far the brief fine-tune can be trusted, and what the confirmation stage buys.

Run from the repository root (about 40 minutes on 2 cores; resumable):

    python -m benchmarks.multi_fidelity
    python -m benchmarks.multi_fidelity --report-only     # re-render the report from the JSON

The problem is the default search's (experiment b4-b9, orin-nx, 10 ms): its six fitting
candidates. For each candidate and each of ``--seeds`` seeds, the product's own trainers run: the
brief fine-tune (:class:`~prunesearch.search.candidate.CandidateTrainer`, ``--brief`` steps),
then the confirmation's continued fine-tune from that checkpoint
(:class:`~prunesearch.search.candidate.ConfirmTrainer`, up to 5x the brief budget in all), each
scored on the first ``--val`` built-in validation sequences. Two questions:

1. Ranking: Kendall tau between the brief and the 5x AO (each the mean over seeds 0-2, all
   ``--val`` sequences), with a bootstrap interval (sequences and seeds resampled together for
   every candidate), and which discordant pairs the brief fine-tune could not tell apart anyway
   (paired bootstrap, 95%).
2. Search: for each seed as one search, the brief stage as ``prunesearch run`` sees it (that
   seed's brief scores on the experiment's 8 validation sequences), its front and tied candidates,
   their confirmation (5x budget, 32 sequences: the defaults), and whether the confirmed front, or
   the brief front, equals the front of every candidate fine-tuned at the 5x budget (same seed,
   same 32 sequences). The confirmation's cost is its fine-tune steps against training every
   candidate at the 5x budget.

Each (candidate, seed) job runs in its own worker process with one torch thread; finished jobs
are kept in benchmarks/results/multi_fidelity.json, so an interrupted run continues.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from prunesearch.evaluation.uncertainty import DEFAULT_LEVEL, SequenceStats, paired_difference, resampled_metric
from prunesearch.search.experiment import load_experiment
from prunesearch.search.reproducibility import file_sha256
from prunesearch.search.results import CandidateResult, front_for, fronts_and_ties
from prunesearch.search.space import Candidate
from prunesearch.teacher import SHIPPED_TEACHER

RESULTS = Path(__file__).parent / "results"
RAW = RESULTS / "multi_fidelity.json"
TARGET, BUDGET, EXPERIMENT = "orin-nx", "10ms", "b4-b9"
LONG_FACTOR = 5
TAU_SEEDS = 3
LEVELS = (0.8, 0.95, 0.99)
SEARCH_VAL, CONFIRM_VAL = 8, 32  # the experiment's val_sequences, and the confirmation's default (4x)


def _job(cand_key: str, seed: int, brief: int, val: int) -> dict:
    """One candidate, one seed: brief fine-tune, then continued to LONG_FACTOR x; per-sequence stats of both."""
    import torch

    from prunesearch.data.synthetic import builtin_sequences
    from prunesearch.search.candidate import CandidateTrainer, ConfirmTrainer
    from prunesearch.teacher import load_shipped_teacher

    torch.set_num_threads(1)
    exp = load_experiment(EXPERIMENT)
    config = dataclasses.replace(exp.finetune_config(), steps=brief, seed=seed, device="cpu")
    teacher = load_shipped_teacher()
    train, sequences = builtin_sequences("train"), builtin_sequences("val", count=val)
    cand = Candidate.parse(cand_key)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        first = CandidateTrainer(teacher, train, sequences, config, Path(tmp)).run(cand, lambda s, m: False)
        more = dataclasses.replace(config, steps=brief * (LONG_FACTOR - 1))
        longer = ConfirmTrainer({cand.key: first.checkpoint}, 1, teacher, train, sequences, more, Path(tmp)).run(
            cand, lambda s, m: False)
    return {"candidate": cand_key, "seed": seed, "brief": first.sequences, "long": longer.sequences,
            "seconds": time.perf_counter() - start}


def _stats(jobs: list[dict], key: str, stage: str, seeds: list[int], names: int) -> SequenceStats:
    """One candidate's scores at ``stage`` over ``seeds`` (rows) and its first ``names`` sequences."""
    rows = [SequenceStats.from_dict(j[stage]) for s in seeds for j in jobs if j["candidate"] == key and j["seed"] == s]
    first = rows[0].names[:names]
    rows = [r.restrict(first) for r in rows]
    return SequenceStats(first, *(np.concatenate([getattr(r, f) for r in rows]) for f in
                                  ("iou_sum", "frames", "hits50", "hits75", "auc")))


def _search(book, brief: list[CandidateResult], long: list[CandidateResult],
            level: float) -> tuple[set[str], set[str], set[str], set[str]]:
    """One search at a tie level: the brief front, the shortlist (front and ties), the front of the
    shortlist's long results (confirmed), and the front of every long result (the truth)."""
    fronts, ties = fronts_and_ties(brief, [TARGET], book.budget.ms, level)
    members = {r.key for r in fronts[TARGET] + ties[TARGET]}
    confirmed = {r.key for r in front_for([r for r in long if r.key in members], TARGET, book.budget.ms)}
    truth = {r.key for r in front_for(long, TARGET, book.budget.ms)}
    return {r.key for r in fronts[TARGET]}, members, confirmed, truth


def _results(book, stats: dict[str, SequenceStats]) -> list[CandidateResult]:
    out = []
    for key, st in stats.items():
        cand = Candidate.parse(key)
        price = book.prices[key][TARGET]
        out.append(CandidateResult(key, cand.depth, cand.ai_layers, cand.rule, st.point(), {TARGET: price.priced_ms},
                                   {TARGET: price.template_ms}, book.budget.ms, 0.0, 0.0, "small", sequences=st.to_dict()))
    return out


def _book():
    from prunesearch.search.setup import RunRequest, prepare

    with tempfile.TemporaryDirectory() as tmp:
        return prepare(RunRequest(targets=(TARGET,), budget=BUDGET, experiment=EXPERIMENT), f"sqlite:///{tmp}/x.db").book


def report(raw: dict) -> str:
    jobs, meta = raw["jobs"], raw["meta"]
    book = _book()
    keys = [c.key for c in book.feasible()]
    seeds = sorted({j["seed"] for j in jobs})
    lines = [
        "# Brief against longer fine-tunes, and the confirmation stage", "",
        "Command: `python -m benchmarks.multi_fidelity` (raw per-sequence scores: `multi_fidelity.json` beside this file).", "",
        f"Experiment {EXPERIMENT} on {TARGET} at {BUDGET}: its {len(keys)} fitting candidates; shipped small teacher "
        f"(sha256 {meta['teacher'][:12]}); built-in data. Brief: {meta['brief']} steps x batch 16; long: "
        f"{LONG_FACTOR * meta['brief']} steps ({LONG_FACTOR}x, continued from the brief checkpoint as the confirmation "
        f"stage does). {len(seeds)} seeds per candidate, first {meta['val']} built-in validation sequences. "
        f"Machine: {meta['machine']}; {sum(j['seconds'] for j in jobs) / 60:.0f} worker-minutes in all.", "",
        "Scaled down to fit a 2-core machine: the default experiment's brief budget is 200 steps; the ratio of "
        "the two budgets (5x) is the issue's.", "",
    ]
    # 1. Ranking
    tau_seeds = seeds[:TAU_SEEDS]
    brief = {k: _stats(jobs, k, "brief", tau_seeds, meta["val"]) for k in keys}
    long = {k: _stats(jobs, k, "long", tau_seeds, meta["val"]) for k in keys}
    b_ao, l_ao = [brief[k].point()["ao"] for k in keys], [long[k].point()["ao"] for k in keys]
    tau = kendalltau(b_ao, l_ao).statistic
    rng = np.random.default_rng(0)
    taus = []
    n, k_seeds = len(brief[keys[0]].names), len(tau_seeds)
    for _ in range(1000):
        seqs, draw = rng.integers(0, n, n), rng.integers(0, k_seeds, k_seeds)
        aos = [[float(resampled_metric(st[k], "ao", draw[None], seqs[None])[0]) for k in keys] for st in (brief, long)]
        taus.append(kendalltau(*aos).statistic)
    low, high = np.nanpercentile(taus, [2.5, 97.5])
    lines += [f"## 1. Ranking: brief against {LONG_FACTOR}x budget ({len(tau_seeds)} seeds, {n} sequences)", "",
              f"**Kendall tau over {len(keys)} candidates: {tau:.2f} (95% bootstrap interval {low:.2f} .. {high:.2f}).**", "",
              "| candidate | AO brief | AO long | gain |", "| --- | ---: | ---: | ---: |"]
    for k, b, long in zip(keys, b_ao, l_ao):
        lines.append(f"| {k} | {100 * b:.1f} | {100 * long:.1f} | {100 * (long - b):+.1f} |")
    discordant, noise_brief, noise_long = [], 0, 0
    for i in range(len(keys)):
        for j in range(i + 1, len(keys)):
            if (b_ao[i] - b_ao[j]) * (l_ao[i] - l_ao[j]) < 0:
                pair = (keys[i], keys[j])
                at_brief = paired_difference(brief[keys[i]], brief[keys[j]], pair)
                at_long = paired_difference(long[keys[i]], long[keys[j]], pair)
                noise_brief += not at_brief.significant
                noise_long += not at_long.significant
                discordant.append(f"{keys[i]} vs {keys[j]}: brief {100 * at_brief.difference.value:+.1f} "
                                  f"({'significant' if at_brief.significant else 'within noise'}), long "
                                  f"{100 * at_long.difference.value:+.1f} ({'significant' if at_long.significant else 'within noise'})")
    pairs = len(keys) * (len(keys) - 1) // 2
    lines += ["", f"Discordant pairs: {len(discordant)} of {pairs}; the brief fine-tune could not tell {noise_brief} of them "
              f"apart anyway, the long one {noise_long} (paired bootstrap, 95%):", ""]
    lines += [f"- {d}" for d in discordant] + [""]
    # 2. Search
    lines += [f"## 2. The search, once per seed ({len(seeds)} seeds): brief front, confirmed front, and the {LONG_FACTOR}x front", "",
              f"Brief stage: each seed's brief scores on {SEARCH_VAL} sequences; confirmation and the {LONG_FACTOR}x front: that "
              f"seed's long scores on {CONFIRM_VAL} sequences.", "",
              "| seed | brief front | tied | confirmed front | 5x front (every candidate) | confirmed = 5x | brief = 5x | confirmation steps |",
              "| ---: | --- | --- | --- | --- | :---: | :---: | ---: |"]
    per_seed = {s: (_results(book, {k: _stats(jobs, k, "brief", [s], SEARCH_VAL) for k in keys}),
                    _results(book, {k: _stats(jobs, k, "long", [s], CONFIRM_VAL) for k in keys})) for s in seeds}
    agree_confirmed = agree_brief = steps_confirm = 0
    for s in seeds:
        brief_front, members, confirmed, truth = _search(book, *per_seed[s], DEFAULT_LEVEL)
        agree_confirmed += confirmed == truth
        agree_brief += brief_front == truth
        steps = len(members) * (LONG_FACTOR - 1) * meta["brief"]
        steps_confirm += steps
        lines.append(f"| {s} | {', '.join(sorted(brief_front))} | {', '.join(sorted(members - brief_front)) or '-'} | "
                     f"{', '.join(sorted(confirmed))} | {', '.join(sorted(truth))} | {'yes' if confirmed == truth else 'no'} | "
                     f"{'yes' if brief_front == truth else 'no'} | {steps} |")
    every = len(seeds) * len(keys) * (LONG_FACTOR - 1) * meta["brief"]
    lines += ["", f"**The confirmed front equals the {LONG_FACTOR}x front in {agree_confirmed} of {len(seeds)} searches; the brief "
              f"front in {agree_brief} of {len(seeds)}.** The confirmation's fine-tune steps: {steps_confirm} against {every} "
              f"to train every fitting candidate at the {LONG_FACTOR}x budget ({100 * steps_confirm / every:.0f}%).", "",
              "The same searches with other levels of the tie test that builds the shortlist (the default is 0.95; "
              "`pareto --level` shows ties at any level):", "",
              f"| level | shortlisted (mean of {len(keys)}) | confirmed = 5x | steps, share of training all long |",
              "| ---: | ---: | ---: | ---: |"]
    for level in LEVELS:
        searches = [_search(book, *per_seed[s], level) for s in seeds]
        agree = sum(confirmed == truth for _, _, confirmed, truth in searches)
        shortlisted = sum(len(members) for _, members, _, _ in searches)
        lines.append(f"| {level} | {shortlisted / len(seeds):.1f} | {agree} of {len(seeds)} | {100 * shortlisted / (len(seeds) * len(keys)):.0f}% |")
    return "\n".join(lines + [""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brief", type=int, default=30, help="brief fine-tune steps (the long one is 5x)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--val", type=int, default=50, help="validation sequences scored (at least 32)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, one torch thread each")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    import platform

    meta = {"teacher": file_sha256(SHIPPED_TEACHER), "brief": args.brief, "val": args.val,
            "machine": f"{multiprocessing.cpu_count()} CPUs ({platform.processor() or platform.machine()})"}
    raw = json.loads(RAW.read_text()) if RAW.is_file() else {"meta": meta, "jobs": []}
    if {k: raw["meta"][k] for k in ("teacher", "brief", "val")} != {k: meta[k] for k in ("teacher", "brief", "val")}:
        raw = {"meta": meta, "jobs": []}  # other settings: start over
    if not args.report_only:
        keys = [c.key for c in _book().feasible()]
        done = {(j["candidate"], j["seed"]) for j in raw["jobs"]}
        todo = [(k, s) for s in range(args.seeds) for k in keys if (k, s) not in done]
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_job, k, s, args.brief, args.val) for k, s in todo]
            for future in as_completed(futures):
                raw["jobs"].append(future.result())
                RAW.write_text(json.dumps(raw))
                print(f"{len(raw['jobs'])}/{len(todo) + len(done)} jobs", file=sys.stderr, flush=True)
    text = report(raw)
    (RESULTS / "multi_fidelity.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

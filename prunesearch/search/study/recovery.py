"""Ending a lost worker's trials, and queueing their candidates again once.

A worker is lost when :class:`~.liveness.Liveness` says so. Its RUNNING trials are ended: one that
had settled (its worker died while logging) is completed from its record, so its candidate is
never trained again; any other is failed, and its candidate queued again once. A worker that only
missed beats and finishes later finds its trial failed and discards its result
(:meth:`TrialWriter.settle <.record.TrialWriter.settle>` refuses it).

Why not Optuna's ``fail_stale_trials`` and ``RetryFailedTrialCallback`` (now
``RetryHeartbeatStaleTrialCallback``): the first fails every stale trial, also one whose result is
already in its record, and finds only trials that beat through Optuna's per-trial heartbeat (see
:mod:`.liveness`); the second copies the failed trial's user attributes (its worker, its claim,
its MLflow run) into the queued copy and re-queues whether or not another trial already holds or
has settled the candidate, and counts only stale trials, not fine-tunes that raised, against its
retry limit. Here the candidate, not the trial, is what is retried: at most once per failed
trial, never while another trial holds or queues it, and given up after ``search.retries``
failures (:attr:`StudyState.given_up <.state.StudyState.given_up>`).
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from prunesearch.search.study.liveness import Liveness
from prunesearch.search.study.record import Outcome, TrialRecord, enqueue, records
from prunesearch.search.study.state import StudyState

# A worker records itself on its trial milliseconds after asking for it; a trial without a worker
# this much older was asked by a process killed in between (waiting a whole grace period for it
# would let a resume finish with it still RUNNING).
ORPHAN_S = 10.0


def fail_lost(study: optuna.Study, live: Liveness) -> list[TrialRecord]:
    """End the RUNNING trials of lost workers; returns the records of the trials ended."""
    ended = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        rec = TrialRecord.of(t)
        orphan = rec.worker is None and rec.started is not None and (
            live.now - rec.started.timestamp() > min(live.grace_s, ORPHAN_S)
        )
        if not (orphan or (rec.worker is not None and not live.alive(rec.worker))):
            continue
        end_as_recorded(study, rec)
        ended.append(rec)
    return ended


def end_as_recorded(study: optuna.Study, rec: TrialRecord) -> None:
    """Tell a trial that will not be told its objectives the usual way as its record says: completed
    with them when it trained, pruned when stopped early, else failed. A result already stored is
    never thrown away (as a failed trial, other studies could not reuse it)."""
    if rec.outcome == Outcome.TRAINED and rec.values:
        study.tell(rec.number, list(rec.values), skip_if_finished=True)
    elif rec.outcome == Outcome.EARLY_STOPPED:
        study.tell(rec.number, state=TrialState.PRUNED, skip_if_finished=True)
    else:
        study.tell(rec.number, state=TrialState.FAIL, skip_if_finished=True)


def recover(study: optuna.Study, live: Liveness, retries: int) -> list[str]:
    """Fail lost trials, then queue every unfinished candidate of a failed trial again, once.

    Returns the candidates queued. A candidate whose fine-tune raised more than ``retries``
    times is not queued again (see :attr:`StudyState.given_up <.state.StudyState.given_up>`).
    """
    fail_lost(study, live)
    recs = records(study)
    state = StudyState.of(recs, retries)
    retried = {r.retry_of for r in recs if r.retry_of is not None}
    again = []
    for r in recs:
        if r.state != TrialState.FAIL or r.settled or not r.candidate or r.number in retried:
            continue
        if r.candidate in state.claimed | state.queued:
            continue
        enqueue(study, r.params, retry_of=r.number)
        state.queued.add(r.candidate)
        again.append(r.candidate)
    return again

"""The Optuna study behind a search: the only state its workers share.

Modules: ``record`` (what a trial holds: :class:`~.record.TrialRecord`, its one reader;
:class:`~.record.TrialWriter`, its one writer; the :class:`~.record.Outcome` vocabulary),
``storage`` (opening the storage and the study, and which storage goes with which MLflow store),
``liveness`` (which worker processes are alive: ids and heartbeats), ``recovery`` (ending a lost
worker's trials and queueing their candidates again), ``state`` (what the trials add up to:
candidates settled, running, queued or given up; counts of an invocation; checkpoints), ``reuse``
(settled fine-tunes a candidate of the same student settles from, in this study or any other of
the storage).

One reader, one writer: trial and study user attributes are named only in this package. A trial's
are read only by :meth:`TrialRecord.of <.record.TrialRecord.of>` and written only through
:class:`~.record.TrialWriter`, :func:`~.record.enqueue` and :func:`~.record.set_strategy`; the
workers' ``alive.*`` beats only in ``liveness``. Everything above (the controller, the MLflow
runs, the runner) works with records.
"""

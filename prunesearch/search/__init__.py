"""The search: from an experiment file, a device and a budget to a Pareto front of students.

Modules, in the order data flows, by layer; a module imports only from its own layer or those
above it in this list (nothing imports upward):

Inputs (what a search is about, priced before anything is trained):

* ``budget``: the latency budget (``10ms``, ``100fps``).
* ``constraints``, ``space``: the candidate space (B{N}-{M} per block-choice rule) and its rules.
* ``samplers``: the registry of Optuna samplers by name (``search.sampler``).
* ``stage``: the stage names (brief, confirm).
* ``experiment``: experiment files (space, teacher, data, fine-tune, search settings).
* ``pricing``: every candidate priced on every target (latency tables, MACs, params).
* ``identity``: the training identity (what a fine-tune's result depends on), the pricing
  identity, the study's name, a candidate's training key.
* ``early_stop``: Pareto successive halving on the fine-tunes' losses.
* ``pareto``, ``results``, ``plot``: fronts, the result of one candidate, the Pareto plot.
* ``planner``: the model of AO over what students keep; the next student to fine-tune (expected
  front-hypervolume gain) and when to stop (``trials: auto``).
* ``reproducibility``: fingerprints and the record kept with every search.

Study (the Optuna study, the only state workers share): ``study/`` (``record``: trials and the
``Outcome`` vocabulary; ``storage``; ``liveness``; ``recovery``; ``state``).

Controller: ``controller`` (one worker's loop: ask, skip or claim, train, settle; the ``Trainer``
and ``TrialSink`` seams).

Stages (the parts the controller is wired to, and what a run does with them):

* ``candidate``: the product trainers (prune, fine-tune, evaluate one candidate; continue one).
* ``mlflow_runs/``: ``schema`` (every MLflow name, the layout of a child run), ``log`` (the
  writer, the controller's ``TrialSink``), ``read`` (the reader behind ``prunesearch pareto``).
* ``front``: a study's trained candidates as results; the front members exported as models.
* ``setup``: a run's command line read, checked, priced and loaded (each worker does it).
* ``confirm``: the confirmation stage (the brief front fine-tuned further, on more sequences).
* ``verification``: what was trained re-priced with any table of its architecture; the front timed on
  the device (``prunesearch verify``), recorded, and a corrected table derived from the figures.
* ``workers``: what every worker does; the worker processes, their progress and signals.

Runner: ``runner`` (``prunesearch run`` end to end: wiring only).
"""

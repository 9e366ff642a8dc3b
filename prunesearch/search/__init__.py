"""The search: from an experiment file, a device and a budget to a Pareto front of students.

Modules, in the order data flows: ``space`` and
``experiment`` (the files), ``budget``, ``pricing`` (latency tables, MACs, params for every
candidate), ``controller`` (the Optuna study), ``early_stop``, ``candidate`` (prune, fine-tune,
evaluate one candidate with the real parts), ``pareto``/``results``/``plot`` (fronts and their
outputs), ``record`` (reproducibility) and ``runner`` (``prunesearch run`` end to end).
"""

"""The MLflow store: where it is (:mod:`.store`) and recording runs in it (:mod:`.writer`).

One MLflow experiment per prunesearch experiment; a parent run per ``prunesearch run``; a child run
per fine-tuned candidate (what goes in them: :mod:`prunesearch.search.tracking`). The store is
MLflow's own default (``sqlite:///mlflow.db`` in the working folder) unless ``MLFLOW_TRACKING_URI``
says otherwise. Nothing here imports the search.
"""

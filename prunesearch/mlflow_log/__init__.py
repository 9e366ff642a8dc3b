"""MLflow logging of searches, and reading them back for ``prunesearch pareto``.

One MLflow experiment per prunesearch experiment; a parent run per ``prunesearch run``; a child run
per fine-tuned candidate. The store is MLflow's own default (``sqlite:///mlflow.db`` in the working
folder) unless ``MLFLOW_TRACKING_URI`` says otherwise.
"""

"""What a search records in MLflow and reads back: ``schema`` (the name of every tag, param and
metric, and how a :class:`~prunesearch.search.results.CandidateResult` maps to them), ``log`` (the
writer: parent run, child runs, fronts) and ``read`` (the reader behind ``prunesearch pareto``).
Both sides go through the schema, so what is written is what is read."""

"""Latency models: per-device lookup tables, how they are made, and how they are checked.

* :mod:`~prunesearch.latency.table`: the table format, loading, and estimates for a candidate;
* :mod:`~prunesearch.latency.registry`: where tables live (``./latency_models`` and shipped ones);
* :mod:`~prunesearch.latency.profiler`: measuring a table on this machine with onnxruntime;
* :mod:`~prunesearch.latency.derive`: fitting a table to published end-to-end figures;
* :mod:`~prunesearch.latency.validate`: timing whole graphs against a measured table.
"""

from prunesearch.latency.registry import known_targets, load_table
from prunesearch.latency.table import LatencyEstimate, LatencyTable

__all__ = ["LatencyEstimate", "LatencyTable", "known_targets", "load_table"]

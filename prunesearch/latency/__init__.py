"""Latency models: per-device lookup tables, how they are made, and how they are checked.

* :mod:`~prunesearch.latency.table`: the table format, loading (checked), and estimates for a candidate;
* :mod:`~prunesearch.latency.registry`: where tables live (``./latency_models`` and shipped ones);
* :mod:`~prunesearch.latency.parts`: the priced parts and whole per-frame graphs as modules;
* :mod:`~prunesearch.latency.runtime`: interleaved timing behind a timer seam, and machine facts;
* :mod:`~prunesearch.latency.backends`: what runs a graph (onnxruntime, PyTorch; CPU or GPU), by ``--runtime`` name;
* :mod:`~prunesearch.latency.profiler`: measuring a table on this machine;
* :mod:`~prunesearch.latency.calibrate`: correcting the sum of parts against whole graphs;
* :mod:`~prunesearch.latency.derive`: fitting a table to published or user-measured end-to-end figures;
* :mod:`~prunesearch.latency.validate`: timing whole graphs against a measured table.
"""

from prunesearch.latency.registry import known_targets, load_table
from prunesearch.latency.table import LatencyEstimate, LatencyTable

__all__ = ["LatencyEstimate", "LatencyTable", "known_targets", "load_table"]

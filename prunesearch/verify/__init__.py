"""Timing the exported graphs on the device a table prices, here or over SSH, as the tracker runs them.

* :mod:`~prunesearch.verify.device_runner`: the one file the device runs (python3, numpy and
  onnxruntime only): times each model's template step and per-frame graph, reads the device's facts;
* :mod:`~prunesearch.verify.job`: what to time (:class:`Job`, :class:`ModelGraphs`), settings from a table's meta;
* :mod:`~prunesearch.verify.transport`: :func:`run_local` and :func:`run_ssh` (the user's own OpenSSH client);
* :mod:`~prunesearch.verify.report`: the figures and facts (:class:`DeviceReport`), and the
  ``latency derive --measured`` file they make;
* :mod:`~prunesearch.verify.facts`: the device as measured against a table's meta, as warning lines.
"""

from prunesearch.verify.facts import fact_warnings
from prunesearch.verify.job import Job, ModelGraphs
from prunesearch.verify.report import DeviceReport, ModelTiming
from prunesearch.verify.transport import SshTarget, run_local, run_ssh

__all__ = ["DeviceReport", "Job", "ModelGraphs", "ModelTiming", "SshTarget", "fact_warnings", "run_local", "run_ssh"]

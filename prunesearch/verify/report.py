"""What a device run returns: each model's figures, the device as measured, the settings that ran.

The runner's JSON becomes a :class:`DeviceReport` only when it is a complete report; an error
document, or anything that is not the runner's JSON, is one :class:`~prunesearch.errors.DeviceError`
line naming what to fix on the device, so partial figures are never returned.

:meth:`DeviceReport.write_measured` writes the figures in the format ``prunesearch latency derive
--measured`` reads (:func:`prunesearch.latency.derive.read_measured`), so a table can be fitted to them.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from prunesearch.errors import DeviceError, InputError
from prunesearch.fields import clip
from prunesearch.latency.derive import MEASURED_STATS
from prunesearch.models.names import TEACHER, parse_student_name
from prunesearch.outputs import output_file
from prunesearch.verify.device_runner import RUNNER_VERSION

FIGURES = ("p50", "p90", "p99", "mean")


@dataclass(frozen=True)
class ModelTiming:
    """One model on the device: per-frame percentiles and mean, the template step, in milliseconds."""

    name: str
    template_ms: float
    p50: float
    p90: float
    p99: float
    mean: float
    runs: int
    session: dict[str, Any] = field(default_factory=dict)  # provider and precision that ran this model
    graph_model: str | None = None  # the model name the graph's own metadata gives

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "template_ms": self.template_ms, **{k: getattr(self, k) for k in FIGURES},
                "runs": self.runs, "session": dict(self.session), "graph_model": self.graph_model}


@dataclass(frozen=True)
class DeviceReport:
    """A complete device run: ``models`` in job order, ``device`` facts, ``settings`` that ran, ``where`` it ran."""

    where: str
    models: tuple[ModelTiming, ...]
    device: dict[str, Any]
    settings: dict[str, Any]

    def model(self, name: str) -> ModelTiming:
        found = next((m for m in self.models if m.name == name), None)
        if found is None:
            raise InputError(f"no model {name!r} in this device run; timed: {', '.join(m.name for m in self.models)}")
        return found

    @property
    def session(self) -> dict[str, Any]:
        """The provider and precision that ran (the first model's; :attr:`ModelTiming.session` per model)."""
        return self.models[0].session

    def to_dict(self) -> dict[str, Any]:
        return {"where": self.where, "device": self.device, "settings": self.settings,
                "models": [m.to_dict() for m in self.models]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DeviceReport":
        return cls(data["where"], tuple(ModelTiming(**m) for m in data["models"]), data["device"], data["settings"])

    def measured_figures(self, statistic: str = "p50", preset: str = "vit-b") -> dict[str, Any]:
        """The figures as ``latency derive --measured`` reads them: per-frame ms of each model.

        A search candidate's name carries its block rule after a slash (``B4-2/first``); its figure
        counts for ``B4-2``, the shape a table prices, and several candidates of one shape give
        their median. Models that are neither a student nor the teacher are left out.
        """
        if statistic not in MEASURED_STATS or statistic == "min":
            raise InputError(f"statistic must be one of {', '.join(FIGURES)}, got {statistic!r}")
        by_shape: dict[str, list[float]] = {}
        for m in self.models:
            shape = m.name.split("/", 1)[0]
            if shape == TEACHER or parse_student_name(shape) is not None:
                by_shape.setdefault(shape, []).append(getattr(m, statistic))
        if not by_shape:
            raise InputError(f"none of the timed models ({', '.join(m.name for m in self.models)}) is B{{N}}-{{M}} or teacher")
        session = self.session
        return {
            "device": self.device["name"],
            "runtime": "onnxruntime",
            "provider": session.get("provider", self.settings.get("provider")),
            "precision": session.get("precision", self.settings.get("precision")),
            "statistic": statistic,
            "unit": "ms",
            "preset": preset,
            "models": {name: round(statistics.median(v), 6) for name, v in by_shape.items()},
            "measured": {"by": "prunesearch verify", "where": self.where, "date": dt.date.today().isoformat(),
                         "runs": self.settings.get("runs"), "threads": self.settings.get("threads_used"), "clock": self.settings.get("clock"),
                         "onnxruntime": self.device.get("onnxruntime")},
        }

    def write_measured(self, path: str | Path, statistic: str = "p50", preset: str = "vit-b", flag: str = "--out") -> Path:
        """Write :meth:`measured_figures` as YAML at ``path`` (input to ``latency derive --measured``),
        whole or not at all; ``flag`` names the option that chose the place, for errors."""
        text = yaml.safe_dump(self.measured_figures(statistic, preset), sort_keys=False)
        with output_file(path, flag, estimate=len(text)) as tmp:
            tmp.write_text(text)
        return Path(path)


# What to do about each failure the runner reports, by its ``kind``.
def _fix(kind: str, doc: dict[str, Any], where: str, python: str) -> str:
    if kind == "module":
        module = doc.get("module", "onnxruntime")
        install = "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA, TensorRT)" if module == "onnxruntime" else f"pip install {module}"
        return f"{module} cannot be imported by {doc.get('python') or python} on {where} ({doc['error']}): {install} for that python"
    if kind == "provider":
        return (f"{doc['error']} on {where}: install the onnxruntime build with it there (onnxruntime-gpu for CUDA and "
                "TensorRT; on a Jetson NVIDIA's wheel), or verify against a table measured with one of those")
    if kind == "python":
        return f"{python} on {where} is python {doc.get('python')}; the runner needs python >= 3.8: install a newer python3 there"
    if kind == "graph":
        return f"{doc['error']} on {where}: re-export the graphs (prunesearch export) with this prunesearch's onnxruntime opset"
    return f"the runner failed on {where}: {doc['error']}"


def parse_output(stdout: str, where: str, python: str, returncode: int, stderr: str = "") -> DeviceReport:
    """The runner's one JSON document as a report; an error document or anything else is one DeviceError line."""
    text = stdout.strip()
    try:
        doc = json.loads(text) if text else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get("runner") != RUNNER_VERSION:
        shown = text.splitlines()[0] if text else (last_line(stderr) or f"no output, exit status {returncode}")
        what = "its JSON report" if not isinstance(doc, dict) or "runner" not in doc else f"runner format {RUNNER_VERSION}"
        raise DeviceError(f"the runner on {where} printed something that is not {what} ({clip(shown)}); "
                          "nothing was recorded: check the device's python and run again")
    if "error" in doc:
        raise DeviceError(_fix(str(doc.get("kind")), doc, where, python))
    try:
        models = tuple(_timing(m) for m in doc["models"])
        return DeviceReport(where, models, dict(doc["device"]), dict(doc["settings"]))
    except (KeyError, TypeError, ValueError) as err:
        raise DeviceError(f"the runner on {where} returned an incomplete report ({clip(str(err))}); nothing was recorded") from None


def _timing(m: dict[str, Any]) -> ModelTiming:
    figures = {k: float(m[k]) for k in ("template_ms", *FIGURES)}
    if not all(math.isfinite(v) and v >= 0 for v in figures.values()) or int(m["runs"]) < 1:
        raise ValueError(f"model {m.get('name')} has figures {figures}")
    return ModelTiming(str(m["name"]), runs=int(m["runs"]), session=dict(m.get("session") or {}),
                       graph_model=m.get("graph_model"), **figures)


def last_line(text: str) -> str:
    """The last line of a tool's stderr that says something (ssh's own warnings skipped)."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip() and not ln.startswith("Warning: Permanently added")]
    return lines[-1] if lines else ""

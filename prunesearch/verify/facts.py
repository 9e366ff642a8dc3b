"""The device as measured against the latency table's meta: one warning line per difference that moves latency.

A table's figures hold for the device, runtime, provider, threads, precision and power mode it
records (:mod:`prunesearch.latency.table`; a measured table also records the machine it ran on).
Where the device verified differs, its figures are expected to differ, and the warning says by
roughly how much, before any figure is read. Fields a table leaves open (``null``,
``unpublished``) are not compared. Some things are wrong on a device whatever the table says and
are warned about too: clocks not locked on a Jetson, TensorRT building fp32 when fp16 was asked,
and a load average above the core count while wall time is measured.
"""

from __future__ import annotations

import re
from typing import Any

from prunesearch.verify.device_runner import parse_nvpmodel
from prunesearch.verify.report import DeviceReport

# Words that name a vendor or a product line, not the device: "AMD EPYC (2 cores)" names an EPYC.
_GENERIC = {"nvidia", "amd", "intel", "jetson", "geforce", "rtx", "gtx", "tesla", "core", "cores", "cpu", "gpu", "processor",
            "developer", "kit", "module", "with", "the", "r", "tm", "apple", "arm"}
_CLOCK = {"wall": "elapsed (wall) time", "cpu": "the calling thread's CPU time"}
_UNKNOWN = {"", "none", "null", "unknown", "unpublished", "not stated", "as measured by the user"}


def _known(value: Any) -> bool:
    return value is not None and str(value).strip().lower() not in _UNKNOWN


def _words(name: str) -> set[str]:
    """The identifying words of a device name (parenthesised notes and vendor words dropped)."""
    return {w for w in re.findall(r"[a-z0-9]+", re.sub(r"\(.*?\)", " ", name.lower())) if w not in _GENERIC}


def _table_power_mode(meta: dict[str, Any]) -> str | None:
    """The power mode a table records: ``power_mode``, or the ``nvpmodel -q`` text a profile on a Jetson stored."""
    if _known(meta.get("power_mode")):
        parsed = parse_nvpmodel(str(meta["power_mode"]))
        return parsed["mode"] if parsed else str(meta["power_mode"]).strip()
    gpu = (meta.get("machine") or {}).get("gpu") or {}
    parsed = parse_nvpmodel(gpu.get("nvpmodel")) if isinstance(gpu, dict) else None
    return parsed["mode"] if parsed else None


def fact_warnings(report: DeviceReport, meta: dict[str, Any]) -> list[str]:
    """One line per way the device and session that ran differ from ``meta``, and per hazard on the device."""
    device, session, settings = report.device, report.session, report.settings
    lines = []
    jetson = device.get("jetson") or {}
    power = jetson.get("power_mode")
    table_power = _table_power_mode(meta)
    if power and table_power and power.lower() != table_power.lower():
        lines.append(f"power mode {power} on the device, {table_power} in the table: latency can differ 2x "
                     f"(set it with 'sudo nvpmodel -m <id>' to match, or verify against a table measured in {power})")
    clocks = jetson.get("clocks")
    if clocks and not clocks.get("locked"):
        lines.append(f"clocks are not locked on the device ({', '.join(clocks.get('unlocked', [])[:4])} below their maximum "
                     "at rest): latency varies run to run; run 'sudo jetson_clocks' before verifying")

    if _known(meta.get("device")):
        identity = " ".join(str(v) for v in (device.get("name"), device.get("cpu"), (device.get("gpu") or {}).get("name"),
                                             jetson.get("model")) if v)
        wanted = _words(str(meta["device"]))
        if wanted and not wanted <= _words(identity):
            lines.append(f"device {device.get('name')} is not the table's {meta['device']}: its figures price another device")
    machine = meta.get("machine") if isinstance(meta.get("machine"), dict) else {}
    if isinstance(machine.get("cores"), int) and machine["cores"] != device.get("cores"):
        lines.append(f"{device.get('cores')} CPU cores on the device, {machine['cores']} on the machine the table was measured on")

    runtime = meta.get("runtime")
    if _known(runtime) and runtime != "onnxruntime":
        lines.append(f"the table was timed with {runtime} ({meta.get('provider')}); verify times onnxruntime: "
                     "part of any gap is the runtime, not the device")
    elif _known(meta.get("runtime_version")) and re.match(r"\d", str(meta["runtime_version"])) and \
            str(meta["runtime_version"]) != device.get("onnxruntime"):
        lines.append(f"onnxruntime {device.get('onnxruntime')} on the device, {meta['runtime_version']} in the table: "
                     "kernels and graph fusions change between versions")
    requested, ran = settings.get("provider"), session.get("provider")
    if ran and requested and ran != requested:
        lines.append(f"{ran} ran, not the requested {requested} (onnxruntime fell back: check that the device's onnxruntime "
                     "build and its CUDA/TensorRT libraries load)")
    elif runtime == "onnxruntime" and _known(meta.get("provider")) and ran and ran != meta["provider"]:
        lines.append(f"{ran} ran on the device, the table was measured with {meta['provider']}")
    if session.get("fp16_honoured") is False:
        lines.append("TensorRT ran without fp16 although fp16 was asked (trt_fp16_enable off): the engine is fp32, "
                     "expect it up to 2x slower; check the device's onnxruntime-gpu and TensorRT")
    precision = session.get("precision")
    if _known(meta.get("precision")) and precision and precision != meta["precision"]:
        lines.append(f"precision {precision} ran on the device, {meta['precision']} in the table")
    clock, table_clock = settings.get("clock", "wall"), meta.get("clock", "wall")
    if _known(meta.get("clock")) and clock != table_clock:
        lines.append(f"the table counts {_CLOCK[table_clock]}, the device run {_CLOCK.get(clock, clock)}: on a busy device "
                     "wall time is the higher")
    load, cores = device.get("loadavg_1m"), device.get("cores")
    if clock == "wall" and isinstance(load, (int, float)) and isinstance(cores, int) and load > cores:
        lines.append(f"load average {load} on {cores} cores when the timing started: other work on the device inflates "
                     "wall-clock figures (stop it, or time with clock cpu at 1 thread)")
    threads = meta.get("threads")
    if isinstance(threads, int) and not isinstance(threads, bool) and threads != settings.get("threads_used"):
        lines.append(f"{settings.get('threads_used')} intra-op threads on the device, {threads} in the table")
    return lines

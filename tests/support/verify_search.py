"""The folder of a tiny search that ``prunesearch verify`` can check on this machine, for the tests and the benchmark.

Small architecture (its graphs time in milliseconds on a CPU, and the shipped CPU table
``epyc-ort-fp32-1t-small`` prices it), a random small teacher, generated data, six fine-tunes of four
steps. Beside it, ``latency_models/epyc-opt.yaml``: that measured table with every time x0.7, a
deliberately optimistic table for this machine, which the search prices on.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from prunesearch.latency.registry import load_table

MEASURED = "epyc-ort-fp32-1t-small"
OPTIMISTIC = "epyc-opt"
BUDGET = "2ms"
RUN = ["run", "--experiment", "tiny.yaml", "--target", OPTIMISTIC, "--budget", BUDGET]


def optimistic_copy(folder: Path, factor: float = 0.7) -> Path:
    """``folder/latency_models/epyc-opt.yaml``: the measured table with every time scaled by ``factor``."""
    data = yaml.safe_load(load_table(MEASURED).path.read_text())
    for entry in data["entries"]:
        entry["ms"] *= factor
        entry["stats"] = {k: v if k == "runs" else v * factor for k, v in (entry.get("stats") or {}).items()}
    data["name"] = OPTIMISTIC
    out = folder / "latency_models" / f"{OPTIMISTIC}.yaml"
    out.parent.mkdir(exist_ok=True)
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def verify_search_folder(root: Path) -> Path:
    """``root/tiny.yaml`` (small architecture, six trials), its teacher and data, and the optimistic table."""
    from tests.support.search_support import TINY_EXPERIMENT, tiny_search_folder

    tiny_search_folder(root, "tiny")
    experiment = root / "tiny.yaml"
    experiment.write_text((TINY_EXPERIMENT % "").replace("architecture: vit-b", "architecture: small")
                          .replace("trials: 4", "trials: 6"))
    optimistic_copy(root)
    return experiment

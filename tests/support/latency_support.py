"""Shared test helpers for the latency tests: published-figure files made from the shipped tables."""

import yaml

from prunesearch.latency import load_table
from prunesearch.latency.derive import TARGETS, recorded_figures

ARCH = {"embed_dim": 768, "heads": 12, "mlp_ratio": 4, "patch": 16, "template_size": 128,
        "search_size": 256, "teacher_depth": 12}


def write_published(path, variants):
    path.write_text("# Source: a test\n" + yaml.safe_dump({"architecture": ARCH, "variants": variants}, sort_keys=False))
    return path


def shipped_figures():
    """The published figures as copied into the shipped tables' provenance, as a published-file mapping."""
    published = recorded_figures([load_table(t) for t in TARGETS])
    return {v.name: {"depth": v.depth, "ai_layers": v.ai_layers, "fps": v.fps} for v in published.variants}

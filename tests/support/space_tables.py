"""Hand-made tables of the whole LiteTrack space in benchmarks/space_table.py's format, with a
known answer: every student's AO is a formula of what it keeps, plus seed noise, so a test (or a
replay run before the real table exists) knows the true front."""

from __future__ import annotations

import math
import random

from prunesearch.pruning import choose_blocks
from prunesearch.search.space import load_space

TEACHER_DEPTH = 12


def true_ao(blocks: tuple[int, ...], ai_layers: int) -> float:
    """More blocks and later blocks help, with diminishing returns; interaction layers cost a little."""
    reach = (max(blocks) + 1) / TEACHER_DEPTH
    return 0.45 + 0.25 * (1 - math.exp(-len(blocks) / 4)) + 0.04 * reach - 0.004 * ai_layers


def make_table(seeds: int = 2, noise: float = 0.01, steps: int = 200, seed: int = 0) -> dict:
    """Every distinct student of spaces/litetrack.yaml on a 12-block teacher (influence keeps the first blocks)."""
    rng = random.Random(seed)
    students: dict[tuple, dict] = {}
    for cand in load_space("litetrack").candidates(TEACHER_DEPTH):
        rule = "first" if cand.rule == "influence" else cand.rule
        blocks = tuple(choose_blocks(TEACHER_DEPTH, cand.depth, rule, None))
        row = students.setdefault((blocks, cand.ai_layers), {
            "depth": cand.depth, "ai_layers": cand.ai_layers, "blocks": list(blocks), "names": [], "seeds": {}})
        row["names"].append(cand.key)
    for (blocks, ai), row in students.items():
        ao = true_ao(blocks, ai)
        for s in range(seeds):
            got = ao + rng.gauss(0, noise)
            reports = [(k, 2.0 - got + 0.5 * (1 - k / steps)) for k in range(10, steps + 1, 10)]
            row["seeds"][str(s)] = {"accuracy": {"ao": got, "sr50": got, "sr75": got, "auc": got}, "reports": reports}
        row["names"] = {str(s): sorted(row["names"]) for s in range(seeds)}
    return {
        "what": "a hand-made table (tests/support/space_tables.py)", "command": "tests.support.space_tables.make_table()",
        "machine": "none", "finetune_steps": steps, "val_sequences": 0,
        "seeds": [str(s) for s in range(seeds)], "students": list(students.values()),
    }

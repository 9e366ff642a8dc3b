"""The candidate space: which students ``B{N}-{M}`` (and block-choice rules) a search may build.

A space file (``spaces/*.yaml``) bounds the depth N (up to the teacher's depth), the interaction
layers M (1..N), lists the block-choice rules, and may add constraints between them as small
expressions (``"depth - ai_layers >= 2"``). Spaces are small and discrete, so every candidate is
listed up front; that is what lets the controller price them all before fine-tuning any.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from prunesearch.errors import PrunesearchError
from prunesearch.pruning import rule_names
from prunesearch.search.constraints import Constraint, parse_constraint
from prunesearch.configfile import Section, locate, read_yaml
from prunesearch.models.names import parse_student_name, student_name

SPACE_KEYS = ("description", "depth", "ai_layers", "rules", "constraints")
# Names a constraint may use, with their types: the candidate's own numbers, its rule and the teacher's depth.
CONSTRAINT_NAMES: dict[str, type] = {"depth": int, "ai_layers": int, "search_blocks": int, "rule": str, "teacher_depth": int}
_RULE = re.compile(r"\w+")


@dataclass(frozen=True, order=True)
class Candidate:
    """One point of the space: student depth, interaction layers and block-choice rule."""

    depth: int
    ai_layers: int
    rule: str = "first"

    @property
    def name(self) -> str:
        return student_name(self.depth, self.ai_layers)

    @property
    def key(self) -> str:
        """Unique within a space: ``B4-2/first``."""
        return f"{self.name}/{self.rule}"

    @property
    def params(self) -> dict[str, Any]:
        return {"depth": self.depth, "ai_layers": self.ai_layers, "rule": self.rule}

    @classmethod
    def parse(cls, text: str) -> "Candidate":
        """``B4-2`` (rule ``first``) or ``B4-2/uniform``."""
        name, slash, rule = text.strip().partition("/")
        numbers = parse_student_name(name)
        if numbers is None or (slash and not _RULE.fullmatch(rule)):
            raise PrunesearchError(f"cannot read candidate {text!r}; write B{{depth}}-{{ai_layers}}[/rule], e.g. B4-2/first")
        return cls(*numbers, rule or "first")


@dataclass(frozen=True)
class SearchSpace:
    """Bounds and rules of a space; ``None`` bounds mean "the teacher's depth" / "the candidate's depth"."""

    depth_min: int = 1
    depth_max: int | None = None
    ai_min: int = 1
    ai_max: int | None = None
    rules: tuple[str, ...] = ("first",)
    constraints: tuple[str, ...] = ()
    source: str = field(default="<space>", compare=False)  # where it was read, for messages: not what it is
    _parsed: tuple[Constraint, ...] = field(default=(), repr=False, compare=False)

    def depth_range(self, teacher_depth: int) -> tuple[int, int]:
        top = teacher_depth if self.depth_max is None else self.depth_max
        if top > teacher_depth:
            raise PrunesearchError(
                f"{self.source}: depth.max {top} is deeper than the teacher's {teacher_depth} blocks"
            )
        if self.depth_min > top:
            raise PrunesearchError(f"{self.source}: depth.min {self.depth_min} is above depth.max {top}")
        return self.depth_min, top

    def ai_range(self, teacher_depth: int) -> tuple[int, int]:
        """Bounds of M over the whole space (the sampler's distribution)."""
        top = self.depth_range(teacher_depth)[1] if self.ai_max is None else self.ai_max
        return self.ai_min, max(self.ai_min, top)

    def contains(self, cand: Candidate, teacher_depth: int) -> bool:
        lo, hi = self.depth_range(teacher_depth)
        ai_top = cand.depth if self.ai_max is None else min(self.ai_max, cand.depth)
        if not (lo <= cand.depth <= hi and self.ai_min <= cand.ai_layers <= ai_top and cand.rule in self.rules):
            return False
        names = {
            "depth": cand.depth,
            "ai_layers": cand.ai_layers,
            "search_blocks": cand.depth - cand.ai_layers,
            "rule": cand.rule,
            "teacher_depth": teacher_depth,
        }
        return all(constraint.holds(names) for constraint in self._parsed)

    def candidates(self, teacher_depth: int) -> list[Candidate]:
        """Every candidate of the space, ordered by depth, then M, then rule order."""
        lo, hi = self.depth_range(teacher_depth)
        ai_lo, ai_hi = self.ai_range(teacher_depth)
        found = [
            Candidate(d, m, r)
            for d in range(lo, hi + 1)
            for m in range(ai_lo, min(ai_hi, d) + 1)
            for r in self.rules
            if self.contains(Candidate(d, m, r), teacher_depth)
        ]
        if not found:
            raise PrunesearchError(f"{self.source}: the space holds no candidate for a {teacher_depth}-block teacher")
        return found


def _bound(section: Section, key: str, symbolic: str) -> int | None:
    """An upper bound written as a number or as ``symbolic`` ("teacher", "depth"), which reads as None."""
    value = section.data[key]
    if value == symbolic:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise section.fail(key, f"a whole number >= 1 or {symbolic!r}", value)
    return value


def parse_space(section: Section, base: SearchSpace | None = None) -> SearchSpace:
    """A space from a YAML mapping; keys present replace those of ``base`` (an experiment narrowing a file)."""
    section.only(SPACE_KEYS + ("file",))
    base = base or SearchSpace(source=section.source)
    depth, ai = section.section("depth").only(("min", "max")), section.section("ai_layers").only(("min", "max"))
    space = SearchSpace(
        depth_min=depth.integer("min", base.depth_min, minimum=1),
        depth_max=_bound(depth, "max", "teacher") if "max" in depth.data else base.depth_max,
        ai_min=ai.integer("min", base.ai_min, minimum=1),
        ai_max=_bound(ai, "max", "depth") if "max" in ai.data else base.ai_max,
        rules=tuple(section.text_list("rules", list(base.rules), rule_names())) if section.has("rules") else base.rules,
        constraints=tuple(section.text_list("constraints")) if section.has("constraints") else base.constraints,
        source=section.source if base.source == section.source else f"{section.source} (narrowing {base.source})",
    )
    if not space.rules:
        raise section.fail("rules", f"at least one of {', '.join(rule_names())}", [])
    if space.depth_max is not None and space.depth_min > space.depth_max:
        raise section.fail("depth", "min <= max", {"min": space.depth_min, "max": space.depth_max})
    parsed = tuple(parse_constraint(text, section.where("constraints"), CONSTRAINT_NAMES, rule_names())
                   for text in space.constraints)
    object.__setattr__(space, "_parsed", parsed)
    return space


def load_space(ref: str, overrides: Section | None = None) -> SearchSpace:
    """``spaces/NAME.yaml`` (or a path), narrowed by an experiment's ``space:`` keys."""
    path = locate("spaces", ref)
    base = parse_space(Section(read_yaml(path), str(path)))
    return parse_space(overrides, base) if overrides is not None and overrides.data else base

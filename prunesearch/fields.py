"""Range rules on config dataclass fields, and how a refused value is shown in one line.

Settings live in frozen dataclasses (the fine-tune recipe, augmentation, search settings). A field
that must lie in a range says so where it is declared, ``lr: float = checked(4e-4, above=0)``, so
adding a setting with its rule is one line; :meth:`prunesearch.configfile.Section.field`
reads the rule when a file sets the field, and :func:`check_rules` when code builds the settings.
Every number must also be finite, and a whole number must fit a C int unless its rule allows more,
whatever its rule says.

A field that says where or how fast work runs, not what it computes (a device, loader processes,
threads), is marked ``runtime=True``: identities (:mod:`prunesearch.search.identity`) leave it out,
so a GPU machine and a CPU machine can share one search.
"""

from __future__ import annotations

import dataclasses
import math
import functools
import reprlib
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prunesearch.errors import InputError

SEED_MAX = 2**32 - 1  # numpy seeds are 32-bit
INT_MAX = 2**31 - 1  # torch and OpenCV take C ints: a larger count is a typo, and would overflow there
SHOWN_CHARS = 80  # a refused value or a parser's message is cut to this in an error line
# Fine-tunes per candidate that differ only in their seed: the bootstrap draws this many seed
# uniforms per resample (prunesearch/evaluation/uncertainty.py), so a config may ask for no more.
MAX_SEEDS = 64


@dataclass(frozen=True)
class Rule:
    """Bounds of a number (``above``: exclusive lower bound) or the strings allowed."""

    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    choices: tuple[str, ...] | None = None

    def allows(self, value: float) -> bool:
        return (
            math.isfinite(value)
            and (self.minimum is None or value >= self.minimum)
            and (self.maximum is None or value <= self.maximum)
            and (self.above is None or value > self.above)
        )

    def describe(self) -> str:
        """``" >= 1"``, ``" from 0 to 1"``, ``" > 0"``: appended to "a number" / "a whole number"."""
        if self.minimum is not None and self.maximum is not None:
            return f" from {_number(self.minimum)} to {_number(self.maximum)}"
        bounds = (("> ", self.above), (">= ", self.minimum), ("<= ", self.maximum))
        return "".join(f" {sign}{_number(bound)}" for sign, bound in bounds if bound is not None)


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def checked(
    default: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    choices: Iterable[str] | None = None,
    runtime: bool = False,
) -> Any:
    """A dataclass field with default ``default`` whose value a settings file may set only within the rule;
    ``runtime``: see the module docstring."""
    rule = Rule(minimum, maximum, above, tuple(choices) if choices is not None else None)
    return dataclasses.field(default=default, metadata={"rule": rule, "runtime": runtime})


def runtime_only(default: Any) -> Any:
    """A field without a range rule that is runtime-only (see the module docstring)."""
    return checked(default, runtime=True)


def rule_of(f: dataclasses.Field) -> Rule:
    return f.metadata.get("rule", Rule())


def is_runtime(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("runtime", False))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_rules(settings: Any, prefix: str) -> None:
    """Refuse a value that breaks its field's rule, in the words a settings file gets
    (``finetune.steps: expected a whole number >= 1, got 0``): the check for settings built in code."""
    for f in dataclasses.fields(settings):
        rule, value = rule_of(f), getattr(settings, f.name)
        if rule == Rule() or (value is None and f.default is None):
            continue
        if rule.choices is not None:
            if value not in rule.choices:
                raise InputError(f"{prefix}{f.name}: expected one of {', '.join(rule.choices)}, got {shown(value)}")
            continue
        hint = _hints(type(settings))[f.name]  # type: ignore[arg-type]  # a class is hashable
        whole = int in (hint, *typing.get_args(hint))
        top = INT_MAX if whole and (rule.maximum is None or rule.maximum <= INT_MAX) else math.inf
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) or not (
            rule.allows(value) and value <= top
        ):
            kind = "a whole number" if whole else "a finite number"
            raise InputError(f"{prefix}{f.name}: expected {kind}{rule.describe()}, got {shown(value)}")


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxstring, _REPR.maxother = 2, 4, 6, SHOWN_CHARS, SHOWN_CHARS


def clip(text: str) -> str:
    """``text`` cut to a readable length for an error line."""
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def shown(value: Any) -> str:
    """The repr of a refused value, bounded in cost and length (a file's value may be huge)."""
    try:
        return clip(_REPR.repr(value))
    except ValueError:  # an int beyond Python's str conversion limit
        return f"a {type(value).__name__} too long to show"

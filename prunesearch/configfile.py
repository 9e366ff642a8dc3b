"""Reading prunesearch's YAML files with errors that name the file, the key and what is allowed.

Experiment and space files are written by hand; a typo must come back as one line a person can
act on ("experiments/b4-b9.yaml: search.trials: expected a whole number >= 1, got 'six'"), never as
a traceback from deep inside the search.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from prunesearch.errors import PrunesearchError
from prunesearch.fields import INT_MAX, Rule, clip, rule_of, shown

# What one hand-written file may cost. Experiment and space files are a few hundred bytes, a few
# levels deep; these bounds leave them far behind and stop a "billion laughs" or a 20,000-deep
# nesting before it costs a second.
MAX_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_ALIASES = 64
MAX_NODES = 100_000  # counted with every alias expanded, as a reader of the loaded data sees them


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses deep nesting, many aliases and large expansions while composing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(f"more than {MAX_ALIASES} aliases (*name)", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            _expanded(node, {}, set())
        return node


class _Refused(yaml.YAMLError):
    """A file over one of the bounds above."""

    def __init__(self, problem: str, mark: Any = None) -> None:
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


def _expanded(node: yaml.Node, seen: dict[int, tuple[int, int]], open_nodes: set[int], level: int = 1) -> tuple[int, int]:
    """(values, depth) under ``node`` with aliases expanded, as a reader of the loaded data meets them.

    Refuses a recursive alias, more than MAX_NODES values, or aliases stacking nesting past
    MAX_DEPTH (which would overflow the recursion of whatever walks the data next).
    """
    key = id(node)
    if key in open_nodes:
        raise _Refused("an alias refers to a node that contains it")
    size, depth = seen.get(key, (0, 0))
    if not size:
        if level > MAX_DEPTH:
            raise _Refused(f"nested, through aliases, more than {MAX_DEPTH} levels deep")
        children: list[Any] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        open_nodes.add(key)
        below = [_expanded(child, seen, open_nodes, level + 1) for child in children]
        open_nodes.discard(key)
        size, depth = 1 + sum(s for s, _ in below), 1 + max((d for _, d in below), default=0)
        seen[key] = (size, depth)
    if size > MAX_NODES:
        raise _Refused(f"expands to more than {MAX_NODES} values (aliases of aliases?)")
    if level - 1 + depth > MAX_DEPTH:
        raise _Refused(f"nested, through aliases, more than {MAX_DEPTH} levels deep")
    return size, depth


def parse_yaml(text: str, source: str) -> Any:
    """``text`` as YAML data, within the bounds above; every failure is one line naming ``source``."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        verdict = "refused, a settings file is small" if isinstance(err, _Refused) else "is not valid YAML"
        raise PrunesearchError(f"{source}:{where} {verdict} ({clip(problem)})") from None
    except Exception as err:  # noqa: BLE001 - PyYAML's constructors fail on odd scalars ("!!int ''", 5000 digits)
        raise PrunesearchError(f"{source}: is not valid YAML ({type(err).__name__}: {clip(str(err))})") from None


def read_yaml(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file (UTF-8, at most MAX_BYTES); an empty file is an error."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as err:
        raise PrunesearchError(f"cannot read {path}: {err.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise PrunesearchError(f"{path}: larger than {MAX_BYTES // 1024} KiB; a settings file is a few hundred bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PrunesearchError(f"{path}: not UTF-8 text (byte {err.start} is {raw[err.start]:#04x})") from None
    data = parse_yaml(text, str(path))
    if data is None:
        raise PrunesearchError(f"{path}: the file is empty; write at least one key (see the shipped files for examples)")
    if not isinstance(data, dict):
        raise PrunesearchError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


class Section:
    """A mapping from a YAML file that knows where it came from, for error messages."""

    def __init__(self, data: Mapping[str, Any] | None, source: str, prefix: str = "") -> None:
        self.data = dict(data or {})
        self.source = source
        self.prefix = prefix

    def where(self, key: str) -> str:
        return f"{self.source}: {self.prefix}{key}"

    def fail(self, key: str, allowed: str, got: Any) -> PrunesearchError:
        return PrunesearchError(f"{self.where(key)}: expected {allowed}, got {shown(got)}")

    def only(self, allowed: Iterable[str]) -> "Section":
        allowed = list(allowed)
        for key in self.data:
            if key not in allowed:
                raise PrunesearchError(
                    f"{self.where(clip(str(key)))}: unknown key; allowed keys here: {', '.join(allowed)}"
                )
        return self

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def section(self, key: str) -> "Section":
        value = self.data.get(key)
        if value is not None and not isinstance(value, dict):
            raise self.fail(key, "a mapping of keys", value)
        return Section(value, self.source, f"{self.prefix}{key}.")

    def integer(self, key: str, default: int | None = None, minimum: int | None = None, maximum: int | None = None) -> int:
        return self._whole(key, self.data.get(key, default), Rule(minimum, maximum))

    def number(self, key: str, default: float | None = None, minimum: float | None = None, maximum: float | None = None) -> float:
        return self._real(key, self.data.get(key, default), Rule(minimum, maximum))

    def _whole(self, key: str, value: Any, rule: Rule, note: str = "") -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not rule.allows(value):
            raise self.fail(key, f"a whole number{rule.describe()}{note}", value)
        if value > INT_MAX:
            raise self.fail(key, f"a whole number up to {INT_MAX}", value)
        return value

    def _real(self, key: str, value: Any, rule: Rule, note: str = "") -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not rule.allows(float(value)):
            raise self.fail(key, f"a finite number{rule.describe()}{note}", value)
        return float(value)

    def text(self, key: str, default: str | None = None, choices: Iterable[str] | None = None) -> str:
        value = self.data.get(key, default)
        choices = list(choices) if choices is not None else None
        if not isinstance(value, str) or (choices is not None and value not in choices):
            raise self.fail(key, f"one of {', '.join(choices)}" if choices else "a string", value)
        return value

    def optional_text(self, key: str) -> str | None:
        return None if self.data.get(key) is None else self.text(key)

    def text_list(self, key: str, default: list[str] | None = None, choices: Iterable[str] | None = None) -> list[str]:
        value = self.data.get(key, default)
        choices = list(choices) if choices is not None else None
        allowed = f"a list drawn from {', '.join(choices)}" if choices else "a list of strings"
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, allowed, value)
        if choices is not None and any(v not in choices for v in value):
            raise self.fail(key, allowed, value)
        return list(value)

    def build(self, cls: type, skip: Iterable[str] = ()) -> Any:
        """``cls(**self)``, each key checked against the field's type and rule (nested dataclasses too).

        Keys in ``skip`` are allowed but left to the caller (fields with a reading of their own).
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        self.only(fields)
        values = {
            key: self._field(key, value, hints[key], fields[key])
            for key, value in self.data.items()
            if key not in skip
        }
        return cls(**values)

    def _field(self, key: str, value: Any, hint: Any, f: dataclasses.Field) -> Any:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
            return None if value is None else self._field(key, value, args[0], f)
        if dataclasses.is_dataclass(hint):
            return self.section(key).build(hint)
        rule = rule_of(f)
        note = f" (default {f.default!r})" if f.default not in (dataclasses.MISSING, None) else ""
        if hint is bool:
            if not isinstance(value, bool):
                raise self.fail(key, f"true or false{note}", value)
            return value
        if hint is int:
            return self._whole(key, value, rule, note)
        if hint is float:
            return self._real(key, value, rule, note)
        choices = typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else rule.choices
        if hint is str or choices:
            return self.text(key, choices=choices)
        raise TypeError(f"{key}: no YAML reading for fields of type {hint}")  # a programming error, not a user's


PACKAGE_CONFIGS = Path(__file__).resolve().parent / "configs"


def config_dirs(kind: str) -> list[Path]:
    """Where ``kind`` files ("experiments" or "spaces") are looked up, first match wins.

    ``./{kind}/`` in the working folder comes first, so a user's own or edited copy is used;
    then the copies shipped inside the package (in a clone, the repo's ``{kind}/`` links there).
    """
    local = Path.cwd() / kind
    shipped = PACKAGE_CONFIGS / kind
    return [local, shipped] if local.resolve() != shipped.resolve() else [shipped]


def known_configs(kind: str) -> list[str]:
    return sorted({p.stem for d in config_dirs(kind) if d.is_dir() for p in d.glob("*.yaml")})


def locate(kind: str, ref: str) -> Path:
    """A file path as given, else ``NAME`` looked up in :func:`config_dirs`."""
    path = Path(ref).expanduser()
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if path.is_file():
            return path
        # ``spaces/litetrack.yaml`` as the README writes it, from a folder without one: the shipped file.
        if path.parent in (Path("."), Path(kind)):
            for folder in config_dirs(kind):
                if (folder / path.name).is_file():
                    return folder / path.name
        raise PrunesearchError(f"{kind[:-1]} file {path} does not exist")
    for folder in config_dirs(kind):
        candidate = folder / f"{ref}.yaml"
        if candidate.is_file():
            return candidate
    known = ", ".join(known_configs(kind)) or "none"
    raise PrunesearchError(f"unknown {kind[:-1]} {ref!r}; known {kind}: {known} (or give a path to a .yaml file)")

"""Reading prunesearch's YAML and JSON files with errors that name the file, the key and what is allowed.

Experiment, space, latency-table and measured-figures files are written or edited by hand; a typo
must come back as one line a person can act on ("experiments/b4-b9.yaml: search.trials: expected a
whole number >= 1, got 'six'"), never as a traceback from deep inside the search. Every such file is
read here, within the same bounds (size, nesting, aliases, values) and with repeated keys refused,
since the last of two equal keys would otherwise win without a word.
"""

from __future__ import annotations

import dataclasses
import json
import stat
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from prunesearch.errors import InputError
from prunesearch.fields import INT_MAX, Rule, clip, rule_of, shown

# What one hand-written file may cost. Experiment and space files are a few hundred bytes, latency
# tables a few KiB, all a few levels deep; these bounds leave them far behind and stop a "billion
# laughs" or a 20,000-deep nesting before it costs a second.
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

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # a merge (<<) may be overridden by design; non-scalar keys cannot be dict keys anyway
            key = self.construct_object(key_node)  # so 1 and 0x1, or 'a' and "a", are the same key
            try:
                seen = key in first_line
            except TypeError:
                continue
            if seen:
                raise _Repeated(key, first_line[key], key_node.start_mark.line + 1)
            first_line[key] = key_node.start_mark.line + 1
        return node

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


class _Repeated(yaml.YAMLError):
    """A key given twice in one mapping."""

    def __init__(self, key: Any, first: int, again: int) -> None:
        super().__init__(f"key {key!r} repeated")
        self.key, self.first, self.again = key, first, again


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
    except _Repeated as err:
        raise InputError(
            f"{source}: line {err.again}: the key {clip(repr(err.key))} is given twice (first on line {err.first}); "
            "keep one of them"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        verdict = "refused, a hand-written file is small" if isinstance(err, _Refused) else "is not valid YAML"
        raise InputError(f"{source}:{where} {verdict} ({clip(problem)})") from None
    except Exception as err:  # noqa: BLE001 - PyYAML's constructors fail on odd scalars ("!!int ''", 5000 digits)
        raise InputError(f"{source}: is not valid YAML ({type(err).__name__}: {clip(str(err))})") from None


def read_text(path: str | Path, what: str = "") -> str:
    """The UTF-8 text of a regular file of at most MAX_BYTES; ``what`` ("latency table") names it in errors."""
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO would block, a device never end
            raise InputError(f"cannot read {label}: not a regular file")
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as err:
        raise InputError(f"cannot read {label}: {err.strerror or err}") from None
    if len(raw) > MAX_BYTES:
        raise InputError(f"{path}: larger than {MAX_BYTES // 1024} KiB; the files prunesearch reads are a few KiB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (byte {err.start} is {raw[err.start]:#04x})") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file (UTF-8, at most MAX_BYTES); an empty file is an error."""
    data = parse_yaml(read_text(path), str(path))
    if data is None:
        raise InputError(f"{path}: the file is empty; write at least one key (see the shipped files for examples)")
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def parse_json(text: str, source: str) -> Any:
    """``text`` as JSON data, within the YAML bounds (nesting, values) and with repeated keys refused."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for key, value in pairs:
            if key in data:
                raise InputError(f"{source}: the key {clip(repr(key))} is given twice in one object; keep one of them")
            data[key] = value
        return data

    try:
        data = json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as err:
        raise InputError(f"{source}: line {err.lineno} is not valid JSON ({err.msg})") from None
    except ValueError as err:  # e.g. an integer of more digits than Python converts
        raise InputError(f"{source}: is not valid JSON ({clip(str(err))})") from None
    except RecursionError:
        raise InputError(f"{source}: refused, nested more than {MAX_DEPTH} levels deep") from None
    _check_json_size(data, source)
    return data


def _check_json_size(data: Any, source: str) -> None:
    """Refuse JSON nested deeper than MAX_DEPTH or holding more than MAX_NODES values (walked without recursion)."""
    stack, values = [(data, 1)], 0
    while stack:
        value, depth = stack.pop()
        values += 1
        if depth > MAX_DEPTH:
            raise InputError(f"{source}: refused, nested more than {MAX_DEPTH} levels deep")
        if values > MAX_NODES:
            raise InputError(f"{source}: refused, holds more than {MAX_NODES} values")
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children)


def read_json(path: str | Path, what: str = "") -> Any:
    """A JSON file's data (UTF-8, at most MAX_BYTES, bounded as :func:`parse_json`)."""
    return parse_json(read_text(path, what), str(path))


class Section:
    """A mapping from a YAML file that knows where it came from, for error messages."""

    def __init__(self, data: Mapping[str, Any] | None, source: str, prefix: str = "") -> None:
        self.data = dict(data or {})
        self.source = source
        self.prefix = prefix

    def where(self, key: str) -> str:
        return f"{self.source}: {self.prefix}{key}"

    def fail(self, key: str, allowed: str, got: Any) -> InputError:
        return InputError(f"{self.where(key)}: expected {allowed}, got {shown(got)}")

    def only(self, allowed: Iterable[str]) -> "Section":
        allowed = list(allowed)
        for key in self.data:
            if key not in allowed:
                raise InputError(
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
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
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
        raise InputError(f"{kind[:-1]} file {path} does not exist")
    for folder in config_dirs(kind):
        candidate = folder / f"{ref}.yaml"
        if candidate.is_file():
            return candidate
    known = ", ".join(known_configs(kind)) or "none"
    raise InputError(f"unknown {kind[:-1]} {ref!r}; known {kind}: {known} (or give a path to a .yaml file)")

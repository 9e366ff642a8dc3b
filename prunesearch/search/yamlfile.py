"""Reading prunesearch's YAML files with errors that name the file, the key and what is allowed.

Experiment and space files are written by hand; a typo must come back as one line a person can
act on ("experiments/b4-b9.yaml: search.trials: expected a whole number >= 1, got 'six'"), never as
a traceback from deep inside the search.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from prunesearch.errors import PrunesearchError


def read_yaml(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file; an empty file is an empty mapping."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise PrunesearchError(f"cannot read {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise PrunesearchError(f"{path}:{where} is not valid YAML ({problem})") from None
    if data is None:
        return {}
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
        return PrunesearchError(f"{self.where(key)}: expected {allowed}, got {got!r}")

    def only(self, allowed: Iterable[str]) -> "Section":
        allowed = list(allowed)
        for key in self.data:
            if key not in allowed:
                raise PrunesearchError(
                    f"{self.where(str(key))}: unknown key; allowed keys here: {', '.join(allowed)}"
                )
        return self

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def section(self, key: str) -> "Section":
        value = self.data.get(key)
        if value is not None and not isinstance(value, dict):
            raise self.fail(key, "a mapping of keys", value)
        return Section(value, self.source, f"{self.prefix}{key}.")

    def integer(self, key: str, default: int | None = None, minimum: int | None = None) -> int:
        value = self.data.get(key, default)
        bound = "" if minimum is None else f" >= {minimum}"
        if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
            raise self.fail(key, f"a whole number{bound}", value)
        return value

    def number(self, key: str, default: float | None = None, minimum: float | None = None) -> float:
        value = self.data.get(key, default)
        bound = "" if minimum is None else f" >= {minimum}"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (minimum is not None and value < minimum):
            raise self.fail(key, f"a number{bound}", value)
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


PACKAGE_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


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

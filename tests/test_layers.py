"""The layer order of the package (docs/architecture.md), held by reading every module's imports.

Each top-level module or package of ``prunesearch`` sits in one layer of ``LAYERS``; a module may
import from lower layers, and from its own layer only what ``PEERS`` allows. Imports inside
functions count (they run all the same, just later). Imports under ``if TYPE_CHECKING:`` count
too, since a type names a dependency of the design, but they may point anywhere in the same layer
and take no part in the cycle check (they never run). Nothing imports the package root: it
re-exports names from every layer, so ``from prunesearch import X`` inside the package works only
in the order ``__init__`` happens to run. Inside one package the order is that package's own.

A new top-level module fails here until it is placed in ``LAYERS`` (and in docs/architecture.md).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "prunesearch"

LAYER_NAMES = ("base", "models/cost", "components", "search", "cli", "entry points")
LAYERS = {
    # base: the error hierarchy, config rules and readers, paths, devices, processes, locks
    "errors": 0, "fields": 0, "_version": 0, "paths": 0, "configfile": 0, "devices": 0, "processes": 0,
    "sqlite_lock": 0, "sqlite_store": 0, "checkpoint_file": 0, "outputs": 0,
    # models/cost: the tracker architectures, their names and their MAC counts
    "models": 1, "flops": 1,
    # components: one job each, combined by the search
    "data": 2, "pruning": 2, "export": 2, "checkpoints": 2, "evaluation": 2, "latency": 2, "mlflow_log": 2,
    "training": 2, "teacher": 2, "verify": 2,
    "search": 3,
    "cli": 4,
    # the package root (re-exports for users) and ``python -m prunesearch``
    "__init__": 5, "__main__": 5,
}
# What a module may import from its own layer (anything in a lower layer it may import anyway).
PEERS = {
    "fields": {"errors"},
    "paths": {"errors"},
    "configfile": {"errors", "fields"},
    "devices": {"errors"},
    "processes": {"errors"},
    "sqlite_lock": {"errors"},
    "sqlite_store": {"errors", "sqlite_lock"},
    "checkpoint_file": {"errors"},
    "outputs": {"errors"},
    "flops": {"models"},
    "pruning": {"data"},
    "checkpoints": {"data", "pruning"},
    "evaluation": {"data", "export"},
    "latency": {"export"},
    "mlflow_log": {"export"},
    "training": {"data", "checkpoints"},
    "teacher": {"data", "checkpoints", "training"},
    "verify": {"export", "latency"},
}
# Known violations that other changes in flight remove; emptied when they are merged. An entry that
# no longer occurs fails the test, so the list cannot go stale.
PENDING: set[str] = set()
# Modules that changes in flight add (placed above already); emptied when they are merged, and an
# entry that exists fails the test, as in PENDING.
ARRIVING: set[str] = set()


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    text: str

    @property
    def key(self) -> str:
        """Without the line number, so an allowed entry survives edits above it."""
        return f"{self.path}: {self.text}"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


@dataclass(frozen=True)
class Import:
    path: str  # relative to the package's parent folder
    line: int
    source: str  # the importing module's top-level name under the package (``__init__`` for the root)
    target: str  # the imported module's top-level name; "" for the package root itself
    type_checking: bool


def _module_name(file: Path, root: Path) -> tuple[str, ...]:
    parts = file.relative_to(root.parent).with_suffix("").parts
    return parts[:-1] if parts[-1] == "__init__" else parts


def _under_type_checking(tree: ast.AST) -> set[int]:
    """ids of the nodes inside an ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``) body."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else None
            if name == "TYPE_CHECKING":
                inside.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return inside


def read_imports(root: Path) -> tuple[dict[str, str], list[Import]]:
    """The package's top-level names (each with its first file), and every import of the package
    by any of its modules, at any depth of the code."""
    package = root.name
    sources: dict[str, str] = {}
    found = []
    for file in sorted(root.rglob("*.py")):
        name = _module_name(file, root)
        source = name[1] if len(name) > 1 else "__init__"
        home = name if file.name == "__init__.py" else name[:-1]  # what a relative import starts from
        tree = ast.parse(file.read_text(), filename=str(file))
        hidden = _under_type_checking(tree)
        path = str(file.relative_to(root.parent))
        sources.setdefault(source, path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name.split(".") for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = list(home[: len(home) - node.level + 1]) if node.level else []
                targets = [base + (node.module.split(".") if node.module else [])]
            else:
                continue
            for target in targets:
                if target[0] == package:
                    found.append(Import(path, node.lineno, source, target[1] if len(target) > 1 else "",
                                        id(node) in hidden))
    return sources, found


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            part = []
            while True:
                top = stack.pop()
                part.append(top)
                if top == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def check(
    root: Path, layers: dict[str, int], peers: dict[str, set[str]], names: tuple[str, ...] = LAYER_NAMES
) -> list[Violation]:
    """Every import of the package at ``root`` that breaks the order, with its file and line."""
    sources, imports = read_imports(root)
    found = [Violation(path, 1, f"'{source}' is in no layer: place it in LAYERS (tests/test_layers.py)")
             for source, path in sources.items() if source not in layers]
    edges: dict[str, set[str]] = {}
    where: dict[tuple[str, str], Import] = {}
    for imp in imports:
        if imp.source not in layers:
            continue  # reported above, once
        if imp.target == "":
            text = f"imports the package root '{root.name}': import the module that defines the name"
            found.append(Violation(imp.path, imp.line, text))
            continue
        if imp.target == imp.source:
            continue
        if imp.target not in layers:
            found.append(Violation(imp.path, imp.line, f"imports '{imp.target}', which is in no layer"))
            continue
        mine, theirs = layers[imp.source], layers[imp.target]
        if theirs > mine:
            found.append(Violation(imp.path, imp.line, f"{names[mine]} module '{imp.source}' imports upward from "
                                                       f"{names[theirs]} '{imp.target}'"))
        elif theirs == mine and not imp.type_checking and imp.target not in peers.get(imp.source, ()):
            found.append(Violation(imp.path, imp.line, f"'{imp.source}' imports its peer '{imp.target}' "
                                                       f"({names[mine]}), which PEERS does not allow"))
        if not imp.type_checking:
            edges.setdefault(imp.source, set()).add(imp.target)
            where.setdefault((imp.source, imp.target), imp)
    for part in _cycles(edges):
        links = [where[a, b] for a in part for b in sorted(edges[a]) if b in part]
        first = min(links, key=lambda i: (i.path, i.line))
        shown = ", ".join(f"{i.path}:{i.line} {i.source} -> {i.target}" for i in links)
        found.append(Violation(first.path, first.line, f"import cycle between {', '.join(part)}: {shown}"))
    return found


def test_every_module_is_placed_and_nothing_imports_upward_or_the_root():
    violations = check(PACKAGE, LAYERS, PEERS)
    new = [str(v) for v in violations if v.key not in PENDING]
    assert not new, "layer order broken (docs/architecture.md):\n" + "\n".join(new)
    gone = PENDING - {v.key for v in violations}
    assert not gone, f"fixed, remove from PENDING: {sorted(gone)}"


def test_the_table_names_no_module_that_is_gone():
    on_disk = set(read_imports(PACKAGE)[0])
    assert set(LAYERS) - on_disk - ARRIVING == set()
    assert ARRIVING & on_disk == set(), "arrived, remove from ARRIVING"


def test_peers_sit_in_the_same_layer_and_form_no_cycle():
    assert {(a, b) for a, bs in PEERS.items() for b in bs if LAYERS[a] != LAYERS[b]} == set()
    assert _cycles(PEERS) == []


def _names(modules) -> str:
    return ", ".join(f"`{m}`" for m in sorted(modules))


def test_the_documented_tables_match():
    """docs/architecture.md shows each layer's members and each module's peers as they are here."""
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    for layer, name in enumerate(LAYER_NAMES):
        row = f"| {layer} | {name} | {_names(m for m, n in LAYERS.items() if n == layer)} |"
        assert row in doc, f"docs/architecture.md: the row of layer {layer} should read {row}"
    for module, peers in PEERS.items():
        row = f"| `{module}` | {_names(peers)} |"
        assert row in doc, f"docs/architecture.md: the peers of {module} should read {row}"
    peer_rows = [line for line in doc.splitlines() if line.startswith("| `")]
    assert len(peer_rows) == len(PEERS), "docs/architecture.md: a peer row names a module PEERS does not"


def test_an_upward_import_planted_in_a_copy_of_the_package_fails(tmp_path):
    """The real table on the real code, with one lazy import of the search added to the fine-tune."""
    copy = tmp_path / PACKAGE.name
    for file in PACKAGE.rglob("*.py"):
        (copy / file.relative_to(PACKAGE)).parent.mkdir(parents=True, exist_ok=True)
        (copy / file.relative_to(PACKAGE)).write_text(file.read_text())
    finetune = copy / "training" / "finetune.py"
    text = finetune.read_text()
    finetune.write_text(text + "\n\ndef _planted():\n    from prunesearch.search.controller import plan_search\n")
    line = len(text.splitlines()) + 4
    reported = {str(v) for v in check(copy, LAYERS, PEERS)} - {str(v) for v in check(PACKAGE, LAYERS, PEERS)}
    planted = f"prunesearch/training/finetune.py:{line}: components module 'training' imports upward from search 'search'"
    assert planted in reported


# A tiny package with the same layer names, written into a temporary folder, to show the check fails.
FAKE_LAYERS = {"errors": 0, "fields": 0, "models": 1, "data": 2, "training": 2, "search": 3, "__init__": 5}
FAKE_PEERS = {"fields": {"errors"}, "training": {"data"}}
ROOT_IMPORT = "imports the package root 'fakepkg': import the module that defines the name"
FAKE = {
    "__init__.py": "from fakepkg.errors import Oops\n",
    "errors.py": "class Oops(Exception):\n    pass\n",
    "fields.py": "from fakepkg.errors import Oops\n",
    "models/__init__.py": "from fakepkg.fields import *\n",
    "data/__init__.py": "from fakepkg.models import *\n",
    "training/__init__.py": "from fakepkg.data import *\n",
    "search/__init__.py": "from fakepkg.training import *\n",
    "search/controller.py": "X = 1\n",
}


def _fake(tmp_path: Path, **changes: str) -> Path:
    root = tmp_path / "fakepkg"
    for name, text in {**FAKE, **changes}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_fake_package_as_written_passes(tmp_path):
    assert check(_fake(tmp_path), FAKE_LAYERS, FAKE_PEERS) == []


@pytest.mark.parametrize(
    "changes, expected",
    [
        # the case the test exists for: a base module reaching the search, lazily inside a function
        ({"fields.py": "def f():\n    from fakepkg.search.controller import X\n    return X\n"},
         "fakepkg/fields.py:2: base module 'fields' imports upward from search 'search'"),
        ({"models/__init__.py": "import fakepkg.data.reader\n"},
         "fakepkg/models/__init__.py:1: models/cost module 'models' imports upward from components 'data'"),
        ({"data/__init__.py": "from .. import models\n"}, f"fakepkg/data/__init__.py:1: {ROOT_IMPORT}"),
        ({"errors.py": "import fakepkg\n"}, f"fakepkg/errors.py:1: {ROOT_IMPORT}"),
        ({"data/reader.py": "from fakepkg.training import *\n"},
         "fakepkg/data/reader.py:1: 'data' imports its peer 'training' (components), which PEERS does not allow"),
        ({"export.py": "X = 1\n"},
         "fakepkg/export.py:1: 'export' is in no layer: place it in LAYERS (tests/test_layers.py)"),
        ({"errors.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fakepkg.search import controller\n"},
         "fakepkg/errors.py:3: base module 'errors' imports upward from search 'search'"),
    ],
)
def test_a_planted_violation_is_reported_with_file_and_line(tmp_path, changes, expected):
    reported = [str(v) for v in check(_fake(tmp_path, **changes), FAKE_LAYERS, FAKE_PEERS)]
    assert expected in reported
    assert all(r == expected or ": import cycle between " in r for r in reported), reported  # an upward link closes one


def test_a_cycle_between_peers_is_reported_with_every_link(tmp_path):
    peers = {**FAKE_PEERS, "data": {"training"}}
    root = _fake(tmp_path, **{"data/reader.py": "def f():\n    import fakepkg.training\n"})
    [v] = check(root, FAKE_LAYERS, peers)
    assert str(v) == ("fakepkg/data/reader.py:2: import cycle between data, training: "
                      "fakepkg/data/reader.py:2 data -> training, fakepkg/training/__init__.py:1 training -> data")


def test_a_type_checking_import_may_point_sideways_and_makes_no_cycle(tmp_path):
    text = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fakepkg.training import Trainer\n"
    assert check(_fake(tmp_path, **{"data/reader.py": text}), FAKE_LAYERS, FAKE_PEERS) == []

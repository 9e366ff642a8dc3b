"""The constraint language of space files: ``"2 * ai_layers <= depth"``, parsed and evaluated here.

A space file is shared and may be hostile, so a constraint is read by a parser of its own (not
Python's ``ast``/``eval``) into a small tree of comparisons, arithmetic (``+ - * // %``, unary
minus), booleans (``and or not``) over named numbers, whole-number literals and quoted rule names.
There are no calls, attributes, sequences or powers, and the text, its nesting and its literals are
bounded, so reading and evaluating one costs microseconds whatever it says. Types are checked when
the constraint is read (a rule name compares only for equality with a quoted name); division by
zero is an error naming the constraint and the candidate.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Union

from prunesearch.errors import PrunesearchError
from prunesearch.fields import clip

MAX_CHARS = 200
MAX_DEPTH = 16  # brackets, "not" and unary minus nested in each other
MAX_DIGITS = 6  # whole-number literals up to 999999
MAX_QUOTED = 32  # characters of a quoted rule name

_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_]\w*)|'([^'\\]*)'|\"([^\"\\]*)\"|(//|==|!=|<=|>=|[-+*%<>()]))")
_KEYWORDS = ("and", "or", "not")
_ARITHMETIC: dict[str, Callable[[int, int], int]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "//": operator.floordiv, "%": operator.mod,
}
_COMPARE: dict[str, Callable[[object, object], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


@dataclass(frozen=True)
class Literal:
    value: int | str


@dataclass(frozen=True)
class Name:
    id: str


@dataclass(frozen=True)
class Unary:
    op: str  # "-" or "not"
    operand: "Node"


@dataclass(frozen=True)
class Binary:
    op: str  # one of _ARITHMETIC
    left: "Node"
    right: "Node"


@dataclass(frozen=True)
class Compare:
    """``a < b <= c``: every adjacent pair holds, as in Python."""

    ops: tuple[str, ...]
    operands: tuple["Node", ...]


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" or "or"
    values: tuple["Node", ...]


Node = Union[Literal, Name, Unary, Binary, Compare, BoolOp]


@dataclass(frozen=True)
class Constraint:
    """One parsed constraint; ``where`` (file: key) and ``text`` name it in errors."""

    text: str
    where: str
    tree: Node

    def holds(self, values: Mapping[str, int | str]) -> bool:
        """True where the candidate described by ``values`` (one value per allowed name) satisfies it."""
        return bool(self._eval(self.tree, values))

    def _eval(self, node: Node, values: Mapping[str, int | str]) -> int | str | bool:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Name):
            return values[node.id]
        if isinstance(node, Unary):
            operand = self._eval(node.operand, values)
            return not operand if node.op == "not" else -operand  # type: ignore[operator]
        if isinstance(node, Binary):
            left, right = self._eval(node.left, values), self._eval(node.right, values)
            if node.op in ("//", "%") and right == 0:
                shown = ", ".join(f"{k}={v}" for k, v in values.items())
                raise PrunesearchError(f"{self.where}: {self.text!r} divides by zero for {shown}")
            return _ARITHMETIC[node.op](left, right)  # type: ignore[arg-type]
        if isinstance(node, Compare):
            operands = [self._eval(n, values) for n in node.operands]
            return all(_COMPARE[op](a, b) for op, a, b in zip(node.ops, operands, operands[1:]))
        results = (self._eval(n, values) for n in node.values)
        return all(results) if node.op == "and" else any(results)


def parse_constraint(text: object, where: str, names: Mapping[str, type], words: Collection[str] | None = None) -> Constraint:
    """``text`` as a :class:`Constraint` over ``names`` (name -> int or str); any problem is one error line.

    ``words``: the quoted names a comparison may use (the registered rules): ``rule != 'unifrom'``
    would otherwise hold for every candidate without a word."""
    if not isinstance(text, str):
        raise PrunesearchError(f"{where}: a constraint is a quoted expression, got {clip(repr(text))}")
    if len(text) > MAX_CHARS:
        raise PrunesearchError(f"{where}: constraint {clip(text)!r} is longer than {MAX_CHARS} characters")
    parser = _Parser(text, where, names, words)
    tree, kind = parser.expression()
    if parser.peek() is not None:
        raise parser.fail(f"unexpected {parser.peek()!r}")
    if kind is str:
        raise parser.fail("is a rule name, not a condition")
    return Constraint(text, where, tree)


class _Parser:
    """Recursive descent, one method per precedence level; each returns (node, its type)."""

    def __init__(self, text: str, where: str, names: Mapping[str, type], words: Collection[str] | None = None) -> None:
        self.text, self.where, self.names, self.words = text, where, names, words
        self.tokens = self._tokenize(text)
        self.pos = 0
        self.depth = 0

    def fail(self, problem: str) -> PrunesearchError:
        names = ", ".join(self.names)
        allowed = names if problem.startswith("unknown name") else (
            f"whole numbers, quoted rule names, + - * // %, comparisons, and/or/not, brackets, and the names {names}"
        )
        return PrunesearchError(f"{self.where}: constraint {clip(self.text)!r}: {problem}; allowed: {allowed}")

    def _tokenize(self, text: str) -> list[tuple[str, int | str]]:
        tokens: list[tuple[str, int | str]] = []
        pos = 0
        while text[pos:].strip():
            match = _TOKEN.match(text, pos)
            if not match:
                raise self.fail(f"cannot read {clip(text[pos:].strip())!r}")
            number, word, single, double, symbol = match.groups()
            if number is not None:
                if len(number) > MAX_DIGITS:
                    raise self.fail(f"the number {clip(number)} has more than {MAX_DIGITS} digits")
                tokens.append(("num", int(number)))
            elif word is not None:
                tokens.append(("op", word) if word in _KEYWORDS else ("name", word))
            elif single is not None or double is not None:
                quoted = single if single is not None else double
                if len(quoted) > MAX_QUOTED:
                    raise self.fail(f"a quoted name longer than {MAX_QUOTED} characters")
                tokens.append(("str", quoted))
            else:
                tokens.append(("op", symbol))
            pos = match.end()
        if not tokens:
            raise self.fail("empty")
        return tokens

    def peek(self) -> int | str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def _take_op(self, *ops: str) -> str | None:
        if self.pos < len(self.tokens) and self.tokens[self.pos][0] == "op" and self.tokens[self.pos][1] in ops:
            self.pos += 1
            return str(self.tokens[self.pos - 1][1])
        return None

    def _nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nested more than {MAX_DEPTH} deep")

    def expression(self) -> tuple[Node, type]:
        return self._boolean("or", self._and)

    def _and(self) -> tuple[Node, type]:
        return self._boolean("and", self._not)

    def _boolean(self, op: str, operand: Callable[[], tuple[Node, type]]) -> tuple[Node, type]:
        first = operand()
        values = [first]
        while self._take_op(op):
            values.append(operand())
        if len(values) == 1:
            return first
        if any(kind is str for _, kind in values):
            raise self.fail(f"'{op}' joins conditions, not rule names")
        return BoolOp(op, tuple(node for node, _ in values)), bool

    def _not(self) -> tuple[Node, type]:
        if not self._take_op("not"):
            return self._comparison()
        self._nest()
        node, kind = self._not()
        self.depth -= 1
        if kind is str:
            raise self.fail("'not' applies to a condition, not a rule name")
        return Unary("not", node), bool

    def _comparison(self) -> tuple[Node, type]:
        first = self._sum()
        operands, ops = [first], []
        while (op := self._take_op(*_COMPARE)) is not None:
            ops.append(op)
            operands.append(self._sum())
        if not ops:
            return first
        for op, (_, a), (_, b) in zip(ops, operands, operands[1:]):
            if (a is str or b is str) and (a is not b or op not in ("==", "!=")):
                raise self.fail("a rule name compares only with == or != to a quoted name")
        return Compare(tuple(ops), tuple(node for node, _ in operands)), bool

    def _sum(self) -> tuple[Node, type]:
        return self._arithmetic(("+", "-"), self._term)

    def _term(self) -> tuple[Node, type]:
        return self._arithmetic(("*", "//", "%"), self._unary)

    def _arithmetic(self, ops: tuple[str, ...], operand: Callable[[], tuple[Node, type]]) -> tuple[Node, type]:
        node, kind = operand()
        while (op := self._take_op(*ops)) is not None:
            right, right_kind = operand()
            if kind is not int or right_kind is not int:
                raise self.fail(f"'{op}' works on numbers only")
            node = Binary(op, node, right)
        return node, kind

    def _unary(self) -> tuple[Node, type]:
        if not self._take_op("-"):
            return self._atom()
        self._nest()
        node, kind = self._unary()
        self.depth -= 1
        if kind is not int:
            raise self.fail("'-' works on numbers only")
        return Unary("-", node), int

    def _atom(self) -> tuple[Node, type]:
        if self.pos >= len(self.tokens):
            raise self.fail("ends too early")
        kind, value = self.tokens[self.pos]
        self.pos += 1
        if kind == "num":
            return Literal(value), int
        if kind == "str":
            if self.words is not None and value not in self.words:
                raise PrunesearchError(f"{self.where}: constraint {clip(self.text)!r}: {value!r} is not a rule; "
                                       f"the rules are {', '.join(sorted(self.words))}")
            return Literal(value), str
        if kind == "name":
            if value not in self.names:
                raise self.fail(f"unknown name {value!r}")
            return Name(str(value)), self.names[str(value)]
        if value == "(":
            self._nest()
            inner = self.expression()
            self.depth -= 1
            if not self._take_op(")"):
                raise self.fail("a '(' is not closed")
            return inner
        raise self.fail(f"unexpected {value!r}")

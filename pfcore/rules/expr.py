"""A tiny, non-executing expression language for declared rules.

Why not ``eval``: rules come from a file users (and their colleagues) edit; evaluating Python
from it would run arbitrary code in the training process. This module tokenises and parses a
small grammar into a tuple AST, then builds a ``pyarrow.compute.Expression`` from it. Nothing is
ever executed but Arrow's own kernels, and only the operators listed below exist.

Grammar (usual precedence, lowest first)::

    expr    := or
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | cmp
    cmp     := sum (("<=" | "<" | ">=" | ">" | "==" | "=" | "!=") sum)?
    sum     := prod (("+" | "-") prod)*
    prod    := unary (("*" | "/") unary)*
    unary   := "-" unary | atom
    atom    := NUMBER | STRING | NAME | `any name` | FUNC "(" expr ")" | "(" expr ")"
    FUNC    := is_null | is_valid | abs

AST nodes: ``("col", name)``, ``("num", float)``, ``("str", text)``, ``("neg", a)``,
``("bin", op, a, b)`` for + - * /, ``("cmp", op, a, b)``, ``("and", a, b)``, ``("or", a, b)``,
``("not", a)``, ``("call", func, a)``.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow.compute as pc

from pfcore.errors import SchemaError

__all__ = ["parse", "columns_of", "to_arrow", "linear_form", "ExprError"]

Node = tuple[Any, ...]
FUNCS = ("is_null", "is_valid", "abs")
_CMP = ("<=", "<", ">=", ">", "==", "=", "!=")
_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_.]*)"
    r"|`(?P<quoted>[^`]+)`"
    r"|'(?P<s1>[^']*)'|\"(?P<s2>[^\"]*)\""
    r"|(?P<op><=|>=|==|!=|[-+*/()<>=]))"
)


class ExprError(SchemaError):
    """A rule expression that does not parse; the message points at the offending position."""


def _tokens(text: str) -> list[tuple[str, Any, int]]:
    out: list[tuple[str, Any, int]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ExprError(f"cannot read {text!r} at position {pos}: {text[pos : pos + 10]!r}")
        kind = m.lastgroup
        val = m.group(kind)
        if kind == "num":
            out.append(("num", float(val), m.start(kind)))
        elif kind in ("s1", "s2"):
            out.append(("str", val, m.start(kind)))
        elif kind == "quoted":
            out.append(("name", val, m.start(kind)))
        elif kind == "name" and val in ("and", "or", "not"):
            out.append(("op", val, m.start(kind)))
        else:
            out.append((kind, val, m.start(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, Any, int] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, op: str | None = None) -> tuple[str, Any, int]:
        tok = self.peek()
        if tok is None:
            raise ExprError(f"{self.text!r}: unexpected end (expected {op or 'a value'})")
        if op is not None and not (tok[0] == "op" and tok[1] == op):
            raise ExprError(f"{self.text!r}: expected {op!r} at position {tok[2]}, got {tok[1]!r}")
        self.i += 1
        return tok

    def at(self, *ops: str) -> str | None:
        tok = self.peek()
        return tok[1] if tok is not None and tok[0] == "op" and tok[1] in ops else None

    def parse(self) -> Node:
        node = self.or_()
        tok = self.peek()
        if tok is not None:
            raise ExprError(f"{self.text!r}: unexpected {tok[1]!r} at position {tok[2]}")
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.at("or"):
            self.take()
            node = ("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.at("and"):
            self.take()
            node = ("and", node, self.not_())
        return node

    def not_(self) -> Node:
        if self.at("not"):
            self.take()
            return ("not", self.not_())
        return self.cmp()

    def cmp(self) -> Node:
        node = self.sum_()
        op = self.at(*_CMP)
        if op:
            self.take()
            node = ("cmp", "==" if op == "=" else op, node, self.sum_())
            if self.at(*_CMP):
                raise ExprError(f"{self.text!r}: chained comparisons are not supported")
        return node

    def sum_(self) -> Node:
        node = self.prod()
        while (op := self.at("+", "-")) is not None:
            self.take()
            node = ("bin", op, node, self.prod())
        return node

    def prod(self) -> Node:
        node = self.unary()
        while (op := self.at("*", "/")) is not None:
            self.take()
            node = ("bin", op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.at("-"):
            self.take()
            return ("neg", self.unary())
        return self.atom()

    def atom(self) -> Node:
        tok = self.take()
        kind, val, pos = tok
        if kind == "num":
            return ("num", val)
        if kind == "str":
            return ("str", val)
        if kind == "op" and val == "(":
            node = self.or_()
            self.take(")")
            return node
        if kind == "name":
            if self.at("("):
                if val not in FUNCS:
                    raise ExprError(
                        f"{self.text!r}: unknown function {val!r} at position {pos} "
                        f"(known: {', '.join(FUNCS)})"
                    )
                self.take("(")
                arg = self.or_()
                self.take(")")
                return ("call", val, arg)
            return ("col", val)
        raise ExprError(f"{self.text!r}: unexpected {val!r} at position {pos}")


def parse(text: str) -> Node:
    """The AST of ``text``; ExprError (a SchemaError) if it is not in the grammar."""
    if not isinstance(text, str) or not text.strip():
        raise ExprError(f"a rule expression must be a non-empty string, got {text!r}")
    return _Parser(text).parse()


def columns_of(node: Node) -> list[str]:
    """Column names in order of first appearance."""
    out: list[str] = []

    def walk(n: Node) -> None:
        if n[0] == "col":
            if n[1] not in out:
                out.append(n[1])
        else:
            for child in n[1:]:
                if isinstance(child, tuple):
                    walk(child)

    walk(node)
    return out


def to_arrow(node: Node, fields: dict[str, Any] | None = None) -> pc.Expression:
    """The Arrow compute expression of an AST (``fields``: name -> expression override)."""
    tag = node[0]
    if tag == "col":
        return fields[node[1]] if fields and node[1] in fields else pc.field(node[1])
    if tag == "num":
        v = node[1]
        return pc.scalar(int(v) if float(v).is_integer() and abs(v) < 2**53 else v)
    if tag == "str":
        return pc.scalar(node[1])
    if tag == "neg":
        return pc.negate_checked(to_arrow(node[1], fields))
    if tag == "bin":
        a, b = to_arrow(node[2], fields), to_arrow(node[3], fields)
        if node[1] == "/":
            return pc.divide(pc.cast(a, "float64"), pc.cast(b, "float64"))
        return {"+": a.__add__, "-": a.__sub__, "*": a.__mul__}[node[1]](b)
    if tag == "cmp":
        a, b = to_arrow(node[2], fields), to_arrow(node[3], fields)
        return {
            "<=": a.__le__,
            "<": a.__lt__,
            ">=": a.__ge__,
            ">": a.__gt__,
            "==": a.__eq__,
            "!=": a.__ne__,
        }[node[1]](b)
    if tag == "and":
        return to_arrow(node[1], fields) & to_arrow(node[2], fields)
    if tag == "or":
        return to_arrow(node[1], fields) | to_arrow(node[2], fields)
    if tag == "not":
        return ~to_arrow(node[1], fields)
    if tag == "call":
        arg = to_arrow(node[2], fields)
        if node[1] == "is_null":
            return arg.is_null(nan_is_null=True)
        if node[1] == "is_valid":
            return arg.is_valid()
        return pc.abs(arg)
    raise ExprError(f"unknown expression node {tag!r}")


def linear_form(node: Node) -> tuple[dict[str, float], float] | None:
    """``node`` as (column -> coefficient, constant) if it is linear in its columns, else None."""
    tag = node[0]
    if tag == "col":
        return {node[1]: 1.0}, 0.0
    if tag == "num":
        return {}, float(node[1])
    if tag == "neg":
        inner = linear_form(node[1])
        if inner is None:
            return None
        return {k: -v for k, v in inner[0].items()}, -inner[1]
    if tag == "bin":
        a, b = linear_form(node[2]), linear_form(node[3])
        if a is None or b is None:
            return None
        op = node[1]
        if op in ("+", "-"):
            sign = 1.0 if op == "+" else -1.0
            coef = dict(a[0])
            for k, v in b[0].items():
                coef[k] = coef.get(k, 0.0) + sign * v
            return {k: v for k, v in coef.items() if v != 0.0}, a[1] + sign * b[1]
        if op == "*":
            if a[0] and b[0]:
                return None
            scale, other = (a[1], b) if not a[0] else (b[1], a)
            return {k: v * scale for k, v in other[0].items() if v * scale != 0.0}, other[1] * scale
        if op == "/":
            if b[0] or b[1] == 0:
                return None
            return {k: v / b[1] for k, v in a[0].items()}, a[1] / b[1]
    return None

"""Declared rules: the ``rules:`` list of the overrides file users already edit.

Each entry is a one-key mapping::

    rules:
      - range: {column: age, min: 18, max: 100}     # datetimes: ISO strings allowed
      - inequality: "checkin <= checkout"           # two columns, or a column and a constant
      - inequality: "amount > 0"
      - identity: "total == net + tax"              # a column == a linear form of others
      - clock: dep_time                             # an HHMM clock time (midnight from data)
      - clock: "dep_time == sched_dep_time + dep_delay"   # HHMM + minutes, modulo 24h
      - fixed: [state, city]                        # one of them determines the other
      - values: [distance, origin, dest]            # a number its key columns hold to the
                                                    # values seen with them (rules.pinned)
      - unique: order_id                            # or a list of columns (a composite key)
      - missing: {column: refund, sentinel: 0, trigger: status, equals: "paid"}
      - missing: {column: fee, sentinel: 0, whenever: {plan: free, card: null}}
                                                    # 0 on every row where plan is "free" or
                                                    # card is null, and maybe on others
      - expression: "discount <= 0.5 * price or is_null(discount)"

Text is parsed by ``pfcore.rules.expr`` (never ``eval``). Malformed entries raise SchemaError
before anything is trained (``resolve_declared`` at ingest); a declared rule the training rows
break raises InputError naming the rule and the first violating row (``check_declared``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from pfcore.errors import InputError, SchemaError
from pfcore.rules.expr import ExprError, columns_of, linear_form, parse
from pfcore.rules.model import Rule, first_violation, hold_rate

__all__ = ["parse_rule", "parse_declared", "resolve_declared", "check_declared", "tolerance"]

NUMERIC_KINDS = ("continuous", "integer", "datetime")
_FORMS = (
    "range", "inequality", "identity", "clock", "fixed", "values", "unique", "missing",
    "expression",
)  # fmt: skip


def _where(index: int | None, entry: Any) -> str:
    return f"rule #{index + 1} ({entry!r})" if index is not None else f"rule {entry!r}"


def parse_rule(entry: Any, index: int | None = None) -> Rule:
    """One declared entry -> Rule (columns checked later against the schema)."""
    where = _where(index, entry)
    if not isinstance(entry, dict) or len(entry) != 1:
        raise SchemaError(f"{where}: must be a mapping with one of the keys {', '.join(_FORMS)}")
    ((form, body),) = entry.items()
    try:
        return _parse(form, body, where)
    except ExprError as exc:
        raise SchemaError(f"{where}: {exc}") from None


def _parse(form: str, body: Any, where: str) -> Rule:
    if form == "range":
        if not isinstance(body, dict) or "column" not in body or not ({"min", "max"} & set(body)):
            raise SchemaError(f"{where}: range needs 'column' and 'min' and/or 'max'")
        bad = set(body) - {"column", "min", "max"}
        if bad:
            raise SchemaError(f"{where}: unknown range keys {sorted(bad)}")
        params = {"min": body.get("min"), "max": body.get("max")}
        return Rule("range", [str(body["column"])], params, origin="declared")
    if form == "inequality":
        node = parse(_text(body, where))
        if node[0] != "cmp" or node[1] in ("==", "!="):
            raise SchemaError(f"{where}: an inequality compares with <, <=, > or >=")
        op, left, right = node[1], node[2], node[3]
        if op in (">", ">="):
            left, right, op = right, left, "<" if op == ">" else "<="
        strict = op == "<"
        if left[0] == "col" and right[0] == "col":
            return Rule("inequality", [left[1], right[1]], {"strict": strict}, origin="declared")
        lf, rf = linear_form(left), linear_form(right)
        if left[0] == "col" and rf is not None and not rf[0]:
            params = {"max": rf[1], "max_strict": strict, "min": None}
            return Rule("range", [left[1]], params, origin="declared")
        if right[0] == "col" and lf is not None and not lf[0]:
            params = {"min": lf[1], "min_strict": strict, "max": None}
            return Rule("range", [right[1]], params, origin="declared")
        raise SchemaError(
            f"{where}: an inequality is 'column <= column' or 'column <= number'; "
            "write other comparisons as an expression rule"
        )
    if form == "identity":
        node = parse(_text(body, where))
        if node[0] != "cmp" or node[1] != "==":
            raise SchemaError(f"{where}: an identity reads 'target == linear form of columns'")
        left, right = node[2], node[3]
        if left[0] != "col":
            left, right = right, left
        lin = linear_form(right)
        if left[0] != "col" or lin is None or not lin[0]:
            raise SchemaError(
                f"{where}: an identity reads 'target == a*col1 + b*col2 + c' "
                "(one column on one side, a linear form of other columns on the other)"
            )
        target, (coef, intercept) = left[1], lin
        if target in coef or len(coef) > 3:
            raise SchemaError(f"{where}: the target must not appear on the right; at most 3 terms")
        params = {
            "coefficients": list(coef.values()),
            "intercept": intercept,
            "tolerance": None,
        }
        return Rule("identity", [target, *coef], params, origin="declared")
    if form == "clock":
        node = parse(_text(body, where))
        if node[0] == "col":
            return Rule("clock", [node[1]], {"midnight": None}, origin="declared")
        ok = node[0] == "cmp" and node[1] == "==" and node[2][0] == "col"
        rhs = node[3] if ok else None
        if not (ok and rhs[0] == "bin" and rhs[1] == "+" and rhs[2][0] == rhs[3][0] == "col"):
            raise SchemaError(f"{where}: a clock rule reads 'time' or 'time == base + minutes'")
        cols = [node[2][1], rhs[2][1], rhs[3][1]]
        return Rule("clock", cols, {"midnight": None}, origin="declared")
    if form == "fixed":
        if (
            not isinstance(body, list)
            or len(body) != 2
            or not all(isinstance(c, str) for c in body)
        ):
            raise SchemaError(f"{where}: fixed takes a list of two column names [source, target]")
        return Rule("fixed", list(body), {}, origin="declared")
    if form == "values":
        if not isinstance(body, list) or len(body) < 2 or not all(isinstance(c, str) for c in body):
            raise SchemaError(
                f"{where}: values takes a list of column names [number, key column, ...]"
            )
        return Rule("values", list(body), {}, origin="declared")
    if form == "unique":
        cols = [body] if isinstance(body, str) else body
        if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
            raise SchemaError(f"{where}: unique takes a column name or a list of them")
        return Rule("key", list(cols), {}, origin="declared")
    if form == "missing":
        if isinstance(body, dict) and "whenever" in body:
            return _whenever(body, where)
        if not isinstance(body, dict) or not {"column", "trigger"} <= set(body):
            raise SchemaError(f"{where}: missing needs 'column' and 'trigger' (or 'whenever')")
        bad = set(body) - {"column", "trigger", "sentinel", "equals"}
        if bad:
            raise SchemaError(f"{where}: unknown missing keys {sorted(bad)}")
        special = {"sentinel": body["sentinel"]} if "sentinel" in body else {"null": True}
        when = {"equals": body["equals"]} if "equals" in body else {"null": True}
        cols = [str(body["column"]), str(body["trigger"])]
        return Rule("missing", cols, {"special": special, "when": when}, origin="declared")
    if form == "expression":
        text = _text(body, where)
        node = parse(text)
        return Rule(
            "expression", columns_of(node) or ["?"], {"expression": text}, origin="declared"
        )
    raise SchemaError(f"{where}: unknown rule form {form!r} (one of {', '.join(_FORMS)})")


def _whenever(body: dict, where: str) -> Rule:
    """``{column, sentinel, whenever: {trigger: value or null, ...}}``: the column is the
    sentinel on every row where any trigger holds (and may be on others): the rule detection
    calls an implication (``detect._implications``), enforced the same way."""
    bad = set(body) - {"column", "sentinel", "whenever"}
    if bad:
        raise SchemaError(f"{where}: unknown missing keys {sorted(bad)} beside 'whenever'")
    if "column" not in body or "sentinel" not in body:
        raise SchemaError(f"{where}: 'whenever' needs 'column' and 'sentinel' (the value the "
                          "column takes on every row a trigger holds)")  # fmt: skip
    if body["sentinel"] is None:
        raise SchemaError(f"{where}: 'whenever' writes a value: the sentinel cannot be null")
    triggers = body["whenever"]
    if not isinstance(triggers, dict) or not triggers:
        raise SchemaError(
            f"{where}: 'whenever' must map each trigger column to the value (or null) that "
            "triggers it, e.g. {status: closed, closed_at: null}"
        )
    column = str(body["column"])
    if column in map(str, triggers):
        raise SchemaError(f"{where}: column {column!r} cannot trigger itself")
    when = [{"null": True} if v is None else {"equals": v} for v in triggers.values()]
    params = {"special": {"sentinel": body["sentinel"]}, "when": when, "implies": True}
    return Rule("missing", [column, *map(str, triggers)], params, origin="declared")


def _text(body: Any, where: str) -> str:
    if not isinstance(body, str):
        raise SchemaError(f"{where}: expected an expression string, got {body!r}")
    return body


def parse_declared(entries: Any) -> list[Rule]:
    """The ``rules:`` list of an overrides file."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise SchemaError(
            f"overrides 'rules' must be a list of rules, got {type(entries).__name__}"
        )
    return [parse_rule(e, i) for i, e in enumerate(entries)]


def tolerance(col: Any) -> float:
    """How far an identity's target may be from its formula: half a unit of the target's last
    decimal (integers and datetimes: exact; floats without recorded decimals: 1e-9 relative)."""
    if col.kind == "datetime" or pa.types.is_integer(col.type):
        return 0.0
    if col.decimals is not None:
        return 0.5 * 10.0 ** (-int(col.decimals)) * (1 + 1e-9)
    scale = max(abs(col.min or 0.0), abs(col.max or 0.0), 1.0)
    return 1e-9 * scale


def resolve_declared(rules: list[Rule], schema: Any) -> list[Rule]:
    """Check each declared rule against the schema (columns exist, kinds fit) and fill what the
    schema decides (identity tolerance, datetime bounds). Raises SchemaError naming the rule."""
    from pfcore.schema import _bound_value

    names = set(schema.names)
    out = []
    for r in rules:
        unknown = [c for c in r.columns if c not in names]
        if unknown:
            raise SchemaError(
                f"declared rule {r.name!r}: column {unknown[0]!r} is not in the table"
            )
        kinds = [schema[c].kind for c in r.columns]
        if r.kind in ("inequality", "range", "identity", "clock"):
            allowed = NUMERIC_KINDS + ("categorical",)
            bad = [c for c, k in zip(r.columns, kinds, strict=True) if k not in allowed]
            bad += [c for c in r.columns if schema[c].kind == "categorical"
                    and not pa.types.is_integer(schema[c].type)]  # fmt: skip
            if bad:
                raise SchemaError(
                    f"declared rule {r.name!r}: column {bad[0]!r} ({schema[bad[0]].kind}) "
                    "is not numeric or datetime"
                )
        if r.kind == "inequality":
            temporal = [k == "datetime" for k in kinds]
            if temporal[0] != temporal[1]:
                raise SchemaError(f"declared rule {r.name!r}: compares a datetime with a number")
        if r.kind == "range":
            col = schema[r.columns[0]]
            for key in ("min", "max"):
                if r.params.get(key) is not None:
                    r.params[key] = _bound_value(r.params[key], col)
            lo, hi = r.params.get("min"), r.params.get("max")
            if lo is not None and hi is not None and lo > hi:
                raise SchemaError(f"declared rule {r.name!r}: min is above max")
        if r.kind == "identity":
            r.params["tolerance"] = tolerance(schema[r.columns[0]])
        if r.kind == "fixed" and len(set(r.columns)) != 2:
            raise SchemaError(f"declared rule {r.name!r}: needs two different columns")
        if r.kind == "values":
            if len(set(r.columns)) != len(r.columns):
                raise SchemaError(f"declared rule {r.name!r}: names a column twice")
            if kinds[0] not in ("continuous", "integer"):
                raise SchemaError(
                    f"declared rule {r.name!r}: column {r.columns[0]!r} ({kinds[0]}) is not a "
                    "number"
                )
        out.append(r)
    return out


def check_declared(rules: list[Rule], train: pa.Table) -> list[Rule]:
    """Refuse a declared rule the training rows break: InputError naming the rule and the
    first violating row. Fills ``train_hold_rate`` (and a fixed rule's map)."""
    for r in rules:
        if r.kind == "fixed":
            _fill_map(r, train)
        if r.kind == "values":
            from pfcore.rules.pinned import pinned_rule

            r.params = pinned_rule(train, r.columns[0], r.columns[1:]).params
        if r.kind == "clock" and r.params.get("midnight") is None:
            from pfcore.rules.model import numeric_values

            v, present = numeric_values(train.column(r.columns[0]))
            r.params["midnight"] = 0 if (v[present] == 0).any() else 2400
        bad = first_violation(r, train)
        if bad is not None:
            row, values = bad
            raise InputError(
                f"declared rule {r.name!r} does not hold on the training data: "
                f"first violating row {row} has {values}",
                column=r.columns[0],
            )
        r.train_hold_rate = hold_rate(r, train)
    return rules


def _fill_map(rule: Rule, train: pa.Table) -> None:
    """A fixed rule's source -> target map from the training rows; InputError if the source
    maps to two targets (naming the first row whose target contradicts an earlier one)."""
    from pfcore.rules.model import source_keys
    from pfcore.rules.valuesets import key_codes
    from pfcore.schema import values_to_json
    from pfcore.transforms.derived import _codes

    src = source_keys(train.column(rule.columns[0]), rule.params.get("part"))
    dst = train.column(rule.columns[1])
    idx, keys = key_codes(src)
    cb, _ = _codes(dst)
    first_target: dict[int, int] = {}
    first_row: dict[int, int] = {}
    for i, (k, v) in enumerate(zip(idx.tolist(), cb.tolist(), strict=True)):
        if k not in first_target:
            first_target[k], first_row[k] = v, i
        elif first_target[k] != v:
            row = train.select(rule.columns).slice(i, 1).to_pylist()[0]
            raise InputError(
                f"declared rule {rule.name!r} does not hold on the training data: "
                f"first violating row {i} has {row}, but row {first_row[k]} maps the same "
                f"{rule.columns[0]} to another {rule.columns[1]}",
                column=rule.columns[1],
            )
    uniq = np.array(sorted(first_row), dtype=np.int64)
    rows = np.array([first_row[k] for k in uniq.tolist()], dtype=np.int64)
    key_vals = values_to_json(keys.take(pa.array(uniq)))
    dst_vals = values_to_json(dst.combine_chunks().take(pa.array(rows)))
    rule.params["map"] = [[k, v] for k, v in zip(key_vals, dst_vals, strict=True)]

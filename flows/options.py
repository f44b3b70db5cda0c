"""Command-line options generated from the flow parameter models.

Why generated: the CLI used to list its options by hand, beside the pydantic models the Prefect
form is built from, and the two drifted (different defaults, choices listed twice, no help
text). Here every option comes from a model field: its description is the help, its ``Literal``
values are the choices, its bounds and default are printed, and a nested model (the gate) is
flattened into the same command. Values the user did not give are left out, so the model's own
default applies: there is no second default to drift.
"""

from __future__ import annotations

import argparse
import datetime as dt
import types
import typing
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

__all__ = ["add_model_options", "model_values"]

_SEP = "__"  # joins a nested field's path into one argparse dest


def _flat_fields(
    model: type[BaseModel], path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], FieldInfo]]:
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _flat_fields(ann, (*path, name))
        else:
            yield (*path, name), info


def _unwrap_optional(ann: Any) -> Any:
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return ann


def _bounds(info: FieldInfo) -> str:
    words = []
    for m in info.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(m, attr, None)
            if value is not None:
                words.append(f"{sym} {value}")
    return ", ".join(words)


def _help(info: FieldInfo) -> str:
    text = (info.description or "").strip()
    extra = []
    bounds = _bounds(info)
    if bounds:
        extra.append(bounds)
    if info.default_factory is None and info.default is not None and info.default != []:
        extra.append(f"default: {info.default}")
    if extra:
        text = f"{text} [{'; '.join(extra)}]"
    return text.replace("%", "%%")  # argparse formats help strings with %


def add_model_options(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    *,
    positional: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
    only: tuple[str, ...] | None = None,
) -> None:
    """One option per (flattened) field of ``model`` (or of those named in ``only``);
    ``positional`` fields are optional positionals instead. Raises ValueError if two nested
    fields would share an option name."""
    seen: dict[str, tuple[str, ...]] = {}
    for path, info in _flat_fields(model):
        leaf = path[-1]
        if leaf in skip or (only is not None and leaf not in only):
            continue
        if leaf in seen:
            raise ValueError(f"option --{leaf} is both {seen[leaf]} and {path}")
        seen[leaf] = path
        ann = _unwrap_optional(info.annotation)
        kwargs: dict[str, Any] = {
            "dest": _SEP.join(path),
            "help": _help(info),
            "default": argparse.SUPPRESS,
        }
        if typing.get_origin(ann) is typing.Literal:
            choices = typing.get_args(ann)
            kwargs.update(choices=choices, type=type(choices[0]))
        elif ann is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif ann is dt.date:
            kwargs.update(type=dt.date.fromisoformat, metavar="YYYY-MM-DD")
        elif ann in (int, float, str):
            kwargs["type"] = ann
        elif typing.get_origin(ann) is list and typing.get_args(ann) in ((str,), (int,)):
            # repeatable option: each use adds one item (``--where a=1 --where b>2``)
            kwargs.update(action="append", type=typing.get_args(ann)[0])
        else:
            raise TypeError(f"no command-line type for field {'.'.join(path)}: {ann!r}")
        if "choices" not in kwargs and "action" not in kwargs:
            kwargs["metavar"] = kwargs.get("metavar", leaf.upper())
        if leaf in positional:
            dest = kwargs.pop("dest")
            parser.add_argument(dest, nargs="?", **kwargs)
        else:
            parser.add_argument("--" + leaf.replace("_", "-"), **kwargs)


def model_values(args: argparse.Namespace, model: type[BaseModel]) -> dict[str, Any]:
    """The (nested) field values given on the command line, ready for ``model(**values)``."""
    given = vars(args)
    out: dict[str, Any] = {}
    for path, _ in _flat_fields(model):
        key = _SEP.join(path)
        if key in given and given[key] is not None:
            node = out
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = given[key]
    return out

"""Read back the attribute docstrings of config dataclasses (``safegrpo config RECIPE --explain``).

Config fields are documented with the string literal written right under each field (PEP 257's
"attribute docstrings", as in CleanRL). Python discards those strings at run time, so they are
read from the class source with ``ast``; a field inherited from a dataclass base keeps its doc.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
import typing
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldDoc:
    """One field of a (nested) config, as ``--explain`` shows it."""

    path: str
    """Dotted name, as ``--set`` takes it (``grpo.steps``)."""
    type: str
    """The annotation, readable (``int``, ``float | None``, ``Literal['no', 'bf16', 'fp16']``)."""
    default: Any
    """Value in the recipe's defaults (a nested field's default is the one its parent sets)."""
    value: Any
    """Value in the config shown (defaults <- preset <- overrides)."""
    doc: str
    """The attribute docstring ('' when the field has none)."""
    section: bool
    """True for a nested config dataclass (its fields follow it)."""


@functools.cache
def attribute_docs(cls: type) -> dict[str, str]:
    """Field name -> attribute docstring of dataclass ``cls`` (bases first, then ``cls``)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):  # built at run time: no source to read
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def type_name(tp: Any) -> str:
    """``int`` / ``tuple[float, ...]`` / ``str | None`` / ``Literal['a', 'b']``."""
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def describe(cfg: Any, default: Any = None, prefix: str = "") -> list[FieldDoc]:
    """Every field of config instance ``cfg``, depth first, sections before their fields.
    ``default`` is the instance the defaults are read from (``type(cfg)()`` when None)."""
    default = type(cfg)() if default is None else default
    hints = typing.get_type_hints(type(cfg))
    docs = attribute_docs(type(cfg))
    out: list[FieldDoc] = []
    for f in dataclasses.fields(cfg):
        value, dflt = getattr(cfg, f.name), getattr(default, f.name, None)
        section = dataclasses.is_dataclass(value)
        out.append(FieldDoc(prefix + f.name, type_name(hints[f.name]), dflt, value,
                            docs.get(f.name, ""), section))
        if section:
            same = dataclasses.is_dataclass(dflt) and type(dflt) is type(value)
            out += describe(value, dflt if same else type(value)(), f"{prefix}{f.name}.")
    return out

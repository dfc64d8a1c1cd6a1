"""Judge protocol, registry and the one builder every recipe uses: ``build_judge(spec)``.

A judge spec is a mapping ``{name: <registered judge>, <option>: <value>, ...}`` (or just a
name). Options are the keyword arguments of the registered class; ``invert: true`` turns a
p(safe) judge into a p(unsafe) scorer and back. Objects a config cannot hold (a shared embedder,
labelled records to fit on, a catalog) come from the caller as *context* and reach the judges
whose constructor (or ``from_records`` classmethod, used when ``fit_records`` is given) accepts
them. A new judge is one module under ``safegrpo/judges/`` with ``@JUDGES.register(name)``; every
recipe can then select it from config.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from safegrpo.core.registry import Registry


@runtime_checkable
class Judge(Protocol):
    """Scores a batch; returns Tensor[B] float on CPU (NaN = could not score)."""

    def score(self, batch: list[Any]) -> Tensor: ...


JUDGES: Registry = Registry("judge")
CONTEXT_KEYS = ("embedder", "fit_records", "extra_safe", "catalog", "device")
"""What callers may supply besides the spec's options."""
_loaded = False


def load_judges() -> None:
    """Import every module under ``safegrpo/judges`` (each registers its judges on import)."""
    global _loaded
    if _loaded:
        return
    import safegrpo.judges as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.ispkg:
            importlib.import_module(f"{pkg.__name__}.{mod.name}")
    _loaded = True


def judge_spec(spec: str | Mapping[str, Any], where: str = "judge") -> dict[str, Any]:
    """``spec`` as a dict with a registered ``name``; errors name the config field ``where``."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    if not isinstance(spec.get("name"), str):
        raise ValueError(f"{where}: a judge spec needs a name, e.g. {{name: projection}}; "
                         f"got {spec!r}")
    load_judges()
    if spec["name"] not in JUDGES:
        raise ValueError(f"{where}.name: unknown judge {spec['name']!r}; "
                         f"valid: {', '.join(JUDGES.names())}")
    cls = JUDGES.get(spec["name"])
    opts = set(spec) - {"name", "invert"}
    accepted = _params(getattr(cls, "from_spec", None) or cls)
    accepted |= _params(getattr(cls, "from_records", None))
    bad = sorted(opts - accepted)
    if bad or opts & set(CONTEXT_KEYS):
        bad = bad or sorted(opts & set(CONTEXT_KEYS))
        valid = sorted(accepted - set(CONTEXT_KEYS) - {"self", "records", "cls"})
        raise ValueError(f"{where}.{bad[0]}: not an option of judge {spec['name']!r}; "
                         f"valid: {', '.join(valid) or '(none)'}")
    return spec


def _params(fn: Any) -> set[str]:
    if fn is None:
        return set()
    return {p.name for p in inspect.signature(fn).parameters.values()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def build_judge(spec: str | Mapping[str, Any], where: str = "judge", **context: Any) -> Judge:
    """Build the judge ``spec`` names, passing each ``context`` object (``CONTEXT_KEYS``) to the
    judges that accept it; with ``fit_records`` a judge that can be fitted is fitted on them."""
    unknown = set(context) - set(CONTEXT_KEYS)
    if unknown:
        raise TypeError(f"unknown judge context {sorted(unknown)}; valid: {CONTEXT_KEYS}")
    spec = judge_spec(spec, where)
    name = spec.pop("name")
    cls = JUDGES.get(name)
    invert = bool(spec.pop("invert", False))
    records = context.pop("fit_records", None)
    fit = getattr(cls, "from_records", None) if records is not None else None
    target = fit or getattr(cls, "from_spec", None) or cls
    accepted = _params(target)
    kwargs = {**{k: v for k, v in context.items() if k in accepted and v is not None}, **spec}
    try:
        judge = target(records, **kwargs) if fit else target(**kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: judge {name!r}: {e}") from None
    return Inverted(judge) if invert else judge


class Inverted:
    """score = 1 - judge.score (a p(safe) judge used as a toxicity scorer, or the reverse)."""

    def __init__(self, judge: Judge):
        self.judge = judge

    def score(self, batch: list[Any]) -> Tensor:
        return 1.0 - self.judge.score(list(batch)).float()

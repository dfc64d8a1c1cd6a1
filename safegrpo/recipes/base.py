"""The one way to plug in a recipe: a `Recipe` registered by name in ``RECIPES``.

A recipe is its config class, a demo preset, and an ordered list of `Stage`s (setup, training,
evaluation, report). The CLI's ``demo``, ``train``, ``eval`` and ``config`` commands are generated
from the registry and run the stages through `run_stages`; nothing outside the recipe's own module
names it. Self-play is a stage list too (one stage per round and player), so no command carries
state between stages by hand: stages pass results through `RunContext.state`.

Stage kinds and the commands that run them:

=========  ====  =====  ====  ================================================================
kind       demo  train  eval  meaning
=========  ====  =====  ====  ================================================================
setup      yes   yes    yes   builds models, judges and data (``state``)
baseline   yes   no     no    evaluations that only the demo table needs (zero-shot, SFT-only)
train      yes   yes    no    changes weights; ``eval`` runs its ``restore`` instead
eval       yes   yes    yes   evaluates the trained policy, writes tables
report     yes   yes    yes   writes summary.json and sets ``ctx.summary``
=========  ====  =====  ====  ================================================================
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from safegrpo.core.registry import Registry

StageKind = Literal["setup", "baseline", "train", "eval", "report"]
Mode = Literal["demo", "train", "eval"]
RUNS: dict[Mode, tuple[str, ...]] = {
    "demo": ("setup", "baseline", "train", "eval", "report"),
    "train": ("setup", "train", "eval", "report"),
    "eval": ("setup", "train", "eval", "report"),
}


@dataclass
class RunContext:
    """What the stages of one run share: its config, the command's options, and ``state``
    (models, trainers, records) that earlier stages leave for later ones."""

    cfg: Any
    """The recipe's resolved config."""
    mode: Mode = "demo"
    """The command running the stages."""
    resume: bool = False
    """Continue training stages from their latest checkpoints."""
    log: Callable[..., None] = print
    """Progress output."""
    state: dict[str, Any] = field(default_factory=dict)
    """Objects stages hand on (``policy``, ``reward``, ``trainer``, ``records``, …)."""
    summary: dict[str, Any] = field(default_factory=dict)
    """What the report stage returns (the demo table, the train command's JSON)."""
    stage_time_s: dict[str, float] = field(default_factory=dict)
    """Wall time of every stage run so far."""
    stage_peak_rss_gb: dict[str, float] = field(default_factory=dict)
    """Process peak RSS at the end of every stage (which stage set the high-water mark)."""
    tokens: Callable[[], int] = lambda: 0
    """Generated-token counter (set by a stage that builds an LM policy)."""
    stage_tokens: dict[str, dict[str, float]] = field(default_factory=dict)
    """Generated tokens and tokens/s of every stage that sampled from the policy."""
    started: float = field(default_factory=time.perf_counter)
    """When the run started (``time.perf_counter``)."""


@dataclass(frozen=True)
class Stage:
    """One step of a recipe's pipeline."""

    name: str
    """Unique within the recipe; ``--skip NAME`` skips it."""
    run: Callable[[RunContext], None]
    """Does the work; reads and writes ``ctx.state``."""
    kind: StageKind = "train"
    """Which commands run it (module docstring)."""
    restore: Callable[[RunContext], None] | None = None
    """For a train stage: rebuild its result from the run folder without training (``eval``)."""
    message: str = ""
    """Printed when the stage starts."""
    restores_from: Callable[[Any], Path] | None = None
    """For a train stage: the file or folder ``restore`` reads, from the recipe config. ``eval``
    checks that it exists before any stage runs, so an empty run folder fails at once."""


@runtime_checkable
class Recipe(Protocol):
    """What the registry and the CLI need from a recipe."""

    name: ClassVar[str]
    """Registry name (``safegrpo demo NAME``)."""
    config_cls: ClassVar[type]
    """Frozen dataclass of the recipe's config (``safegrpo config NAME --explain``)."""
    preset: ClassVar[str | None]
    """Demo preset under configs/ (None: the config class defaults)."""
    outputs: ClassVar[str]
    """The files a run writes, listed after the demo table."""

    def stages(self, cfg: Any) -> list[Stage]:
        """The pipeline for ``cfg``, in order (self-play: one stage per round and player)."""
        ...

    def render(self, summary: dict[str, Any]) -> Any:
        """The summary as something ``rich`` prints (the demo table)."""
        ...


class PackageRecipe:
    """A recipe whose config class and stages live in modules imported on first use (so the
    registry and the CLI start without loading torch): set ``config`` to ``"module:Class"`` and
    ``demo`` to a module defining ``stages(cfg)``, ``render_summary(summary)`` and, optionally,
    ``combine_seeds(cfgs, summaries)``."""

    name: ClassVar[str]
    preset: ClassVar[str | None] = None
    outputs: ClassVar[str] = ""
    composes: ClassVar[tuple[str, ...]] = ()
    config: ClassVar[str]
    """``"module:Class"`` of the config dataclass."""
    demo: ClassVar[str]
    """Module with the stage functions."""

    @property
    def config_cls(self) -> type:
        mod, _, cls = self.config.partition(":")
        return getattr(importlib.import_module(mod), cls)

    def stages(self, cfg: Any) -> list[Stage]:
        return importlib.import_module(self.demo).stages(cfg)

    def render(self, summary: dict[str, Any]) -> Any:
        return importlib.import_module(self.demo).render_summary(summary)

    def __getattr__(self, attr: str) -> Any:
        if attr == "combine_seeds":  # only when the demo module defines it
            fn = getattr(importlib.import_module(self.demo), attr, None)
            if fn is not None:
                return fn
        raise AttributeError(attr)


RECIPES: Registry[type[Recipe]] = Registry("recipe")
_discovered = False


def discover() -> None:
    """Import every module and package under ``safegrpo/recipes`` (each registers itself), then
    every ``safegrpo.recipes`` entry point of installed distributions (third-party recipes)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    import safegrpo.recipes as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name != "base":
            importlib.import_module(f"{pkg.__name__}.{mod.name}")
    from importlib.metadata import entry_points

    for ep in entry_points(group="safegrpo.recipes"):
        ep.load()


def get_recipe(name: str) -> Recipe:
    """The registered recipe ``name`` (instantiated); unknown names list the valid ones."""
    discover()
    return RECIPES.get(name)()


def run_recipe(name: str, cfg: Any, resume: bool = False, log=print) -> dict[str, Any]:
    """Every stage of recipe ``name`` in-process (what ``safegrpo demo NAME`` runs)."""
    return run_stages(get_recipe(name), RunContext(cfg, "demo", resume, log))


def recipe_names() -> list[str]:
    discover()
    return RECIPES.names()


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, in GiB."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 30) if sys.platform == "darwin" else rss / (1 << 20)


def run_stages(recipe: Recipe, ctx: RunContext, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Runs the stages of ``recipe`` that ``ctx.mode`` selects (``restore`` for train stages under
    ``eval``), timing each; returns ``ctx.summary`` with ``wall_time_s`` and the per-stage times."""
    stages = recipe.stages(ctx.cfg)
    names = [s.name for s in stages]
    unknown = sorted(set(skip) - set(names))
    if unknown:
        raise ValueError(f"--skip: unknown stage(s) {unknown}; {recipe.name} has {names}")
    stages = [s for s in stages if s.kind in RUNS[ctx.mode] and s.name not in skip]
    if ctx.mode == "eval":
        check_restorable(recipe.name, stages, ctx.cfg)
    tracker = start_run_tracker(ctx.cfg)  # fails here, before any work, if it cannot start
    try:
        for stage in stages:
            _run_stage(recipe, stage, ctx)
            tracker.log_files()
        tracker.log_summary(ctx.summary)
    finally:
        tracker.finish()
    ctx.summary.setdefault("wall_time_s", time.perf_counter() - ctx.started)
    return ctx.summary


def check_restorable(recipe: str, stages: list[Stage], cfg: Any) -> None:
    """Before any (slow) setup stage of ``eval``: every train stage can be restored and what it
    restores from exists."""
    for stage in (s for s in stages if s.kind == "train"):
        if stage.restore is None:
            raise ValueError(f"{recipe}: stage {stage.name!r} cannot be restored from a "
                             "run folder; `safegrpo eval` is not available for this recipe")
        where = stage.restores_from(cfg) if stage.restores_from else None
        if where is not None and not where.exists():
            raise FileNotFoundError(f"no {stage.name} result under {where}; run "
                                    f"`safegrpo train {recipe}` first")


def start_run_tracker(cfg: Any):
    """The ``report_to`` trackers of ``cfg``'s sections, started with the whole config."""
    from safegrpo.core.config import to_dict
    from safegrpo.training.run_tracker import RunTracker, tracking_of

    report_to, project = tracking_of(cfg)
    out_dir = getattr(cfg, "out_dir", None) or "runs"
    return RunTracker(report_to, out_dir, project).start(to_dict(cfg))


def _run_stage(recipe: Recipe, stage: Stage, ctx: RunContext) -> None:
    fn = stage.run
    if ctx.mode == "eval" and stage.kind == "train":
        if stage.restore is None:
            raise ValueError(f"{recipe.name}: stage {stage.name!r} cannot be restored from a "
                             "run folder; `safegrpo eval` is not available for this recipe")
        fn = stage.restore
    if stage.message:
        ctx.log(stage.message)
    t, n = time.perf_counter(), ctx.tokens()
    fn(ctx)
    dt, dn = time.perf_counter() - t, ctx.tokens() - n
    ctx.stage_time_s[stage.name] = dt
    ctx.stage_peak_rss_gb[stage.name] = peak_rss_gb()
    if dn > 0:
        ctx.stage_tokens[stage.name] = {"tokens": dn, "tokens_per_s": dn / max(dt, 1e-9)}

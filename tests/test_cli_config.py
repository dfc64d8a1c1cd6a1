"""`safegrpo config RECIPE --explain`, the --set examples the CLI and README show, completion."""

import dataclasses
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from safegrpo.cli import app
from safegrpo.core.config import field_paths, load_config, resolve_flat
from safegrpo.core.fielddoc import attribute_docs, describe, type_name
from safegrpo.envs.moderation.server.config import ArenaServerConfig
from safegrpo.recipes.base import get_recipe, recipe_names

RECIPES = recipe_names()

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def recipe_cls(name: str) -> type:
    return get_recipe(name).config_cls


@dataclasses.dataclass(frozen=True)
class _Base:
    a: int = 1
    """The a.

    Second paragraph."""
    b: str = "x"


@dataclasses.dataclass(frozen=True)
class _Child(_Base):
    c: tuple[float, ...] = ()
    """The c."""
    inner: _Base = dataclasses.field(default_factory=lambda: _Base(a=5))
    """A section."""


def test_attribute_docs_are_read_from_the_source():
    assert attribute_docs(_Child) == {"a": "The a.\n\nSecond paragraph.", "c": "The c.",
                                      "inner": "A section."}
    docs = {d.path: d for d in describe(_Child(inner=_Base(a=7)))}
    assert list(docs) == ["a", "b", "c", "inner", "inner.a", "inner.b"]
    assert docs["inner"].section and docs["inner.a"].default == 5 and docs["inner.a"].value == 7
    assert docs["b"].doc == "" and docs["c"].type == "tuple[float, ...]"
    assert type_name(int | None) == "int | None"


@pytest.mark.parametrize("cls", [*RECIPES, ArenaServerConfig])
def test_every_config_field_has_a_docstring(cls):
    cls = recipe_cls(cls) if isinstance(cls, str) else cls
    docs = describe(cls())
    assert [d.path for d in docs if not d.doc.strip()] == []
    leaves = {d.path for d in docs if not d.section}
    assert leaves == set(field_paths(cls))  # --explain lists exactly what --set accepts


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_explain_prints_every_field(recipe):
    res = runner.invoke(app, ["config", recipe, "--explain", "-s", "seed=7"])
    assert res.exit_code == 0, res.output
    out = res.output
    for d in describe(load_config(recipe_cls(recipe), None, ["seed=7"])):
        assert d.path in out
        assert " ".join(d.doc.split()) in " ".join(out.split()), d.path  # re-flowed
    assert re.search(r"^seed: int = 7  \(default 0\)$", out, re.M)


def test_explain_shows_nested_defaults_and_types():
    out = runner.invoke(app, ["config", "redteam", "--explain"]).output
    assert "\ntraining.steps: int = 60\n    Number of sample/update iterations.\n" in out
    assert "\ntraining.report_to: tuple[str, ...] = [\"tensorboard\"]\n" in out
    assert "\ntraining (GRPOConfig)\n    GRPO (reward_kl_coef" in out


def test_config_error_names_the_tracker_field():
    res = runner.invoke(app, ["config", "redteam", "-s", "training.report_to=[tensorbord]"])
    assert res.exit_code == 2
    flat = " ".join(re.sub(r"[│╭╮╰╯─]", " ", res.output).split())  # rich's error box, unwrapped
    assert "training: report_to: unknown tracker 'tensorbord'" in flat


# ---- every example the CLI shows must parse against the configs it applies to ---------------
EXAMPLE = re.compile(r"(?<![\w.\-/])([A-Za-z_]\w*(?:\.\w+)*)=([^\s,;)\]`'\"]+)")
TARGETS = {"demo": list(RECIPES), "config": list(RECIPES), "serve arena": [ArenaServerConfig],
           "train": list(RECIPES), "eval": list(RECIPES)}
"""Command -> the configs its --set applies to."""


def _commands(cmd, path=()):
    yield " ".join(path), cmd
    for name, sub in (getattr(cmd, "commands", None) or {}).items():
        yield from _commands(sub, (*path, name))


def _check(cls: type, example: str) -> None:
    key, _, value = example.partition("=")
    if re.fullmatch(r"[A-Z]+", value):  # a metavariable (--set seed=N): the field must exist
        assert resolve_flat(cls, [f"{key}=0"])[0].partition("=")[0] in field_paths(cls), example
    else:
        load_config(cls, None, [example])


def test_every_help_example_parses():
    found = []
    for path, cmd in _commands(typer.main.get_command(app)):
        texts = [cmd.help, cmd.epilog, cmd.short_help] + [getattr(p, "help", None)
                                                          for p in cmd.params]
        for m in EXAMPLE.finditer("\n".join(t for t in texts if t)):
            assert path in TARGETS, f"{path!r} shows {m.group(0)!r}: add it to TARGETS"
            for target in TARGETS[path]:
                _check(recipe_cls(target) if isinstance(target, str) else target, m.group(0))
            found.append((path, m.group(0)))
    assert ("train", "seed=1") in found and ("config", "seed=1") in found


def test_every_documented_command_line_parses():
    """The command lines of the CLI docstring and the README that name a recipe."""
    import safegrpo.cli

    texts = [safegrpo.cli.__doc__, (ROOT / "README.md").read_text()]
    lines = [m.groups() for t in texts for m in
             re.finditer(r"safegrpo (demo|train|eval|config) ([a-z]+)([^\n]*)", t)]
    checked = 0
    for command, recipe, rest in lines:
        if recipe not in RECIPES:
            continue
        sets = [s.rstrip("`])") for s in re.findall(r"(?<!\S)(?:--set|-s) (\S+)", rest)]
        preset = re.search(r"(?<!\S)(?:-c|--config) (configs/[\w.]+)", rest)
        path = ROOT / preset.group(1) if preset else None
        if command == "demo" and path is None:  # demo starts from its preset
            path = ROOT / "configs" / get_recipe(recipe).preset
        load_config(recipe_cls(recipe), path, sets)
        checked += 1
    assert checked >= 5


# ---- shell completion ------------------------------------------------------------------------
def test_show_completion_bash(monkeypatch):
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")  # choose the shell
    res = runner.invoke(app, ["--show-completion", "bash"], prog_name="safegrpo")
    assert res.exit_code == 0, res.output
    assert "_SAFEGRPO_COMPLETE=complete_bash" in res.output
    assert "complete -o default -F _safegrpo_completion safegrpo" in res.output


@pytest.mark.parametrize(("words", "expected"), [
    ("safegrpo config re", ["redteam", "recommender"]),
    ("safegrpo demo d", ["diffusion"]),
    ("safegrpo con", ["config"]),
])
def test_completes_commands_and_recipe_names(words, expected):
    env = {"_SAFEGRPO_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - 1)}
    res = runner.invoke(app, [], prog_name="safegrpo", env=env)
    assert sorted(res.output.split()) == sorted(expected)

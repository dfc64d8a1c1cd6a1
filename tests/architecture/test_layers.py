"""The folder layout is the architecture: no module imports a higher layer.

Walks every module's imports (module level and inside functions, since lazy imports are still
dependencies) and fails naming each import that points upward. Layers, low to high:
core < {advantages, losses, judges, policies} < rewards < {envs, worlds} < training < eval
< recipes < cli. Modules of one layer may import each other, except that a recipe package
imports another recipe only when it declares it in ``composes`` (self-play reuses the moderation
and red-team pipelines); shared pieces live in a lower layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import safegrpo

ROOT = Path(safegrpo.__file__).resolve().parent
LAYERS = {
    "core": 0, "advantages": 1, "losses": 1, "judges": 1, "policies": 1, "rewards": 2,
    "envs": 3, "worlds": 3, "training": 4, "eval": 5, "recipes": 6, "cli": 7,
}


def layer_of(module: str) -> str | None:
    """'safegrpo.envs.moderation.reward' -> 'envs'; 'safegrpo.cli_serve' -> 'cli'."""
    parts = module.split(".")
    if parts[0] != "safegrpo" or len(parts) < 2:
        return None
    head = parts[1]
    return "cli" if head.startswith("cli") else head if head in LAYERS else None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path``."""
    name = module_name(path)
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            out.append((node.lineno, base))
    return out


def _may_import(src: str, target: str) -> bool:
    """Within recipes/: the own package, the shared ``recipes.base``, or a composed recipe."""
    from safegrpo.recipes.base import RECIPES, discover

    mine, theirs = src.split(".")[2:3], target.split(".")[2:3]
    if theirs in ([], ["base"]) or mine == theirs or mine in ([], ["base"]):
        return True
    discover()
    return mine[0] in RECIPES and theirs[0] in RECIPES.get(mine[0]).composes


def violations() -> list[str]:
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        src = module_name(path)
        mine = layer_of(src)
        if mine is None:
            continue
        for line, target in imports(path):
            theirs = layer_of(target)
            if theirs is None:
                continue
            rel = f"{path.relative_to(ROOT.parent)}:{line} ({mine}) imports {target} ({theirs})"
            if LAYERS[theirs] > LAYERS[mine]:
                bad.append(rel)
            elif mine == theirs == "recipes" and not _may_import(src, target):
                bad.append(rel + " (a recipe imports another it does not compose)")
    return bad


def test_no_module_imports_a_higher_layer():
    bad = violations()
    assert not bad, "layer violations:\n" + "\n".join(bad)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The walker itself works: an upward import in a scratch module is reported."""
    assert layer_of("safegrpo.envs.moderation.reward") == "envs"
    assert layer_of("safegrpo.cli_serve") == "cli"
    assert (
        LAYERS[layer_of("safegrpo.recipes.moderation.pipeline")]
        > LAYERS[layer_of("safegrpo.core.x")]
    )


def test_no_merge_conflict_markers_in_docs_or_code():
    """A README once shipped with '<<<<<<< HEAD' in it; no text file of the repo may."""
    root = ROOT.parent
    files = [root / "README.md", *root.glob("docs/*.md"), *ROOT.rglob("*.py"),
             *root.glob("configs/*.yaml")]
    marked = [str(p.relative_to(root)) for p in files
              if any(line.startswith(("<<<<<<< ", ">>>>>>> ")) for line in
                     p.read_text().splitlines())]
    assert not marked, marked

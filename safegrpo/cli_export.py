"""`safegrpo export CHECKPOINT OUT` (registered by cli.py): a trained policy as a standard folder.

    safegrpo export runs/redteam_demo OUT            # newest good checkpoint of the run
    safegrpo export runs/x/grpo/checkpoints/step_000060 OUT
    safegrpo export runs/diffusion_demo OUT          # diffusers pipeline with model_index.json

CHECKPOINT may be a run folder (exactly one ``checkpoints/`` inside it), a ``checkpoints/``
folder, one ``step_N`` checkpoint or a saved policy folder. Checkpoints are verified against
their manifest first; a bad newest checkpoint is reported and the previous good one exported.
Every problem is one ``error: ...`` line and exit code 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def _checkpoint_roots(path: Path) -> list[Path]:
    if any(p.is_dir() for p in path.glob("step_*")):
        return [path]
    return sorted(p for p in path.rglob("checkpoints") if p.is_dir())


def resolve_checkpoint(path: Path) -> tuple[Path, list[str]]:
    """-> (checkpoint or policy folder to export, one line per newer checkpoint skipped)."""
    from safegrpo.policies.export import policy_folder
    from safegrpo.training.checkpoint import MANIFEST, CheckpointError, complete_checkpoints, verify

    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if not path.is_dir():
        raise ValueError(f"{path} is a file; pass a run, checkpoint or saved policy folder")
    if policy_folder(path) is not None:
        for ckpt in (path, path.parent):  # a checkpoint, or the policy/ folder inside one
            if (ckpt / MANIFEST).exists():
                verify(ckpt)
                break
        return path, []
    roots = _checkpoint_roots(path)
    if not roots:
        raise ValueError(f"{path}: unknown checkpoint kind (no saved LM or diffusion policy, "
                         "no checkpoints/ or step_N folder inside)")
    if len(roots) > 1:
        names = [str(r.relative_to(path)) for r in roots]
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        raise ValueError(f"{path} holds {len(names)} checkpoint folders ({', '.join(names[:3])}"
                         f"{more}); pass one of them")
    skipped = []
    for ckpt in complete_checkpoints(roots[0]):
        try:
            verify(ckpt)
        except CheckpointError as e:
            skipped.append(f"skipped {ckpt.name}: {e}")
            continue
        return ckpt, skipped
    raise CheckpointError(f"no usable checkpoint under {roots[0]}"
                          + (f": {skipped[0].split(': ', 1)[1]}" if skipped else ""))


def export_cmd(
    checkpoint: Annotated[Path, typer.Argument(
        help="run folder, checkpoints/ folder, step_N checkpoint or saved policy folder")],
    out: Annotated[Path, typer.Argument(help="new (or empty) folder to write the export into")],
    base: Annotated[str | None, typer.Option(
        help="diffusion only: base pipeline of a checkpoint saved before it was recorded")] = None,
    dtype: Annotated[str, typer.Option(help="LM weights dtype: float32 | bfloat16 | float16")
                     ] = "float32",
) -> None:
    """Write a trained policy as a merged HF model (LM) or a diffusers pipeline (diffusion)."""
    from safegrpo.cli_common import _offline_env
    from safegrpo.policies.export import export_policy

    _offline_env()
    try:
        folder, skipped = resolve_checkpoint(checkpoint)
        for line in skipped:
            typer.echo(f"warning: {line}", err=True)
        record = export_policy(folder, out, base=base, dtype=dtype)
    except (ValueError, OSError) as e:  # CheckpointError is a ValueError
        typer.echo(f"error: {' '.join(str(e).split())}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(record))

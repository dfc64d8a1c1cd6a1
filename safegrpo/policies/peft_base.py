"""Make a saved LoRA adapter load as the trained policy with plain peft.

peft's ``AutoPeftModelForCausalLM.from_pretrained(folder)`` loads the model named by
``base_model_name_or_path`` in ``adapter_config.json`` and puts the adapter on it. A GRPO adapter
is trained over weights that already have the SFT adapter merged in, so the raw base it would
name is the wrong model (the adapter on it gives garbage, silently). ``anchor_adapter`` writes
those merged weights once as a plain transformers folder and points the adapter config at it by
absolute path (peft resolves a relative one against the working directory, not the adapter).
``safegrpo_policy.json`` keeps the lineage (base + merged adapters) that safegrpo itself reads,
so ``load_for_inference`` and ``export`` do not depend on this folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

ANCHOR_FILE = "safegrpo_merged_from.json"


def base_state_dict(peft_model) -> dict:
    """The weights under a peft LoRA model's adapters (views, nothing copied): adapter tensors
    dropped and the ``base_layer`` wrappers peft inserts unwrapped."""
    inner = peft_model.get_base_model()
    out = {}
    for key, value in inner.state_dict().items():
        if ".lora_" in key or "modules_to_save" in key:
            continue
        out[key.replace(".base_layer.", ".")] = value
    return out


def _write_base(peft_model, tokenizer, store: Path, lineage: dict) -> None:
    tmp = store.with_name(store.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    inner = peft_model.get_base_model()
    inner.save_pretrained(tmp, state_dict=base_state_dict(peft_model))
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    (tmp / ANCHOR_FILE).write_text(json.dumps(lineage, indent=1))
    if store.exists():
        shutil.rmtree(store)
    os.replace(tmp, store)


def anchor_adapter(folder: str | Path, peft_model, tokenizer, base: str, merged: list[str],
                   store: str | Path) -> Path | None:
    """Point ``folder``'s adapter_config.json at the weights the adapter was trained on.

    Nothing to do (None) when ``folder`` is not a LoRA adapter or nothing was merged under it
    (the config already names the right base). Otherwise the merged weights are written to
    ``store`` unless it already holds the same lineage (one copy per run, not per checkpoint)
    and the store's absolute path is returned."""
    folder, store = Path(folder), Path(store).resolve()
    cfg_path = folder / "adapter_config.json"
    if not merged or not cfg_path.exists():
        return None
    lineage = {"base": base, "merged_adapters": [str(Path(m).resolve()) if Path(m).exists()
                                                 else m for m in merged]}
    marker = store / ANCHOR_FILE
    if not (marker.exists() and json.loads(marker.read_text()) == lineage):
        _write_base(peft_model, tokenizer, store, lineage)
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = str(store)
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
    return store

"""Atomic, verifiable checkpoints.

``save_checkpoint`` writes ``step_N.tmp/`` fully (payload, ``rng.pt``, ``trainer_state.json``),
then ``manifest.json`` with the size and SHA-256 of every file, fsyncs everything, renames the
folder to ``step_N/`` and atomically repoints ``latest``. A process killed at any point leaves
the previous checkpoint intact and ``*.tmp`` leftovers are never read.

``load_latest`` walks the complete checkpoints newest first; one that fails verification
(truncated or modified file, unreadable trainer_state.json or rng.pt) is reported in one log
line and the previous one is used. Only when none is usable does it raise ``CheckpointError``.
``rng.pt`` holds tensors and plain Python values only, so it loads with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


class CheckpointError(ValueError):
    """A checkpoint folder cannot be used; the message is one line naming the file and why."""


# ---- RNG state as tensors and plain values (loads with weights_only=True) -------------------
def rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    out = {"python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64),
                      "gauss": gauss},
           "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                     "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                     "gauss": float(np_state["gauss"])},
           "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": npy["key"].numpy().astype(np.uint32), "pos": npy["pos"]},
                         "has_gauss": npy["has_gauss"], "gauss": npy["gauss"]})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_rng(path: Path) -> list[dict[str, Any]]:
    """``rng.pt`` -> one RNG state per rank that saved it (``weights_only=True``); raises
    CheckpointError when the file is unreadable or holds something else."""
    try:
        state = torch.load(path, weights_only=True)
        ranks = state.get("ranks", [state]) if isinstance(state, dict) else None
        if not ranks or not all(isinstance(r, dict) and {"python", "numpy", "torch"} <= set(r)
                                for r in ranks):
            raise ValueError("expected python/numpy/torch generator states")
        return ranks
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the file is unusable
        raise CheckpointError(f"{path}: unreadable RNG state ({type(e).__name__}: {_line(e)})") \
            from None


# ---- writing -------------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(d: Path) -> None:
    """Size and SHA-256 of every file under ``d`` (fsynced) -> ``d/manifest.json``."""
    entries = {}
    for p in _files(d):
        with open(p, "rb") as fh:
            os.fsync(fh.fileno())
        entries[str(p.relative_to(d))] = {"size": p.stat().st_size, "sha256": _sha256(p)}
    atomic_write_text(d / MANIFEST, json.dumps({"files": entries}, indent=1))
    for sub in sorted({p.parent for p in _files(d)} | {d}):
        _fsync_dir(sub)


def save_checkpoint(root: str | Path, step: int, write_payload: Callable[[Path], None],
                    state: dict[str, Any], keep: int = 2,
                    rng: dict[str, Any] | list[dict[str, Any]] | None = None) -> Path:
    """``write_payload(dir)`` writes model/optimizer files; ``state`` goes to trainer_state.json;
    ``rng`` (default: this process's RNG state) to rng.pt."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f"step_{step:06d}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    write_payload(tmp)
    torch.save(rng_state() if rng is None else rng, tmp / "rng.pt")
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **state}, indent=1))
    write_manifest(tmp)
    if final.exists():
        _discard(final)
    os.replace(tmp, final)
    atomic_write_text(root / "latest", final.name)
    _fsync_dir(root)
    older = [p for p in _all_steps(root) if p.name < final.name]
    for old in [p for p in _all_steps(root) if p.name > final.name]:
        log.warning("removing %s: newer than the checkpoint just written (abandoned run)", old.name)
        _discard(old)
    for old in older[keep - 1:] if keep > 0 else []:
        _discard(old)
    for junk in root.glob("step_*.trash"):
        shutil.rmtree(junk, ignore_errors=True)
    return final


def _discard(d: Path) -> None:
    """Rename first (atomic), then delete: a kill mid-delete never leaves a half folder that
    still looks like a checkpoint."""
    trash = d.with_name(d.name + ".trash")
    if trash.exists():
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(d, trash)
    shutil.rmtree(trash, ignore_errors=True)


# ---- reading -------------------------------------------------------------------------------
def _line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200]


def _all_steps(root: Path) -> list[Path]:
    found = [p for p in root.glob("step_*") if p.is_dir() and "." not in p.name]
    return sorted(found, key=lambda p: p.name, reverse=True)


def complete_checkpoints(root: str | Path) -> list[Path]:
    """Renamed (complete) checkpoint folders, newest first, none newer than the one ``latest``
    names (a newer folder belongs to a run that was rolled back, or was renamed just before a
    kill that stopped the pointer update)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = _all_steps(root)
    try:
        pointed = (root / "latest").read_text().strip()
    except (OSError, UnicodeDecodeError):
        return found
    if pointed in {p.name for p in found}:
        return [p for p in found if p.name <= pointed]
    return found


def latest_checkpoint(root: str | Path) -> Path | None:
    """Newest complete checkpoint folder that passes ``verify`` (None if there is none)."""
    for ckpt in complete_checkpoints(root):
        try:
            verify(ckpt)
            return ckpt
        except CheckpointError:
            continue
    return None


def verify(ckpt: Path) -> dict[str, Any]:
    """Check every file against the manifest, parse trainer_state.json and load rng.pt.
    Returns the trainer state; raises CheckpointError (one line) on the first problem."""
    man_path = ckpt / MANIFEST
    if man_path.exists():  # checkpoints written before manifests existed are checked below only
        try:
            files = {rel: (int(m["size"]), str(m["sha256"]))
                     for rel, m in json.loads(man_path.read_text())["files"].items()}
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{man_path}: unreadable manifest ({_line(e)})") from None
        for rel, (size, digest) in files.items():
            p = ckpt / rel
            if not p.is_file():
                raise CheckpointError(f"{p}: missing")
            if p.stat().st_size != size:
                raise CheckpointError(
                    f"{p}: {p.stat().st_size} bytes, expected {size} (truncated?)"
                )
            if _sha256(p) != digest:
                raise CheckpointError(f"{p}: checksum mismatch (file modified or corrupted)")
    state = load_state(ckpt)
    load_rng(ckpt / "rng.pt")
    return state


def load_state(ckpt: Path) -> dict[str, Any]:
    path = ckpt / "trainer_state.json"
    try:
        state = json.loads(path.read_text())
        int(state["step"])
    except (OSError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:  # JSON errors too
        raise CheckpointError(f"{path}: unreadable trainer state ({type(e).__name__}: "
                              f"{_line(e)})") from None
    return state


def load_latest(root: str | Path, load: Callable[[Path, dict[str, Any]], None]) -> Path | None:
    """Verify checkpoints newest first and call ``load(dir, state)`` on the first good one.

    Each rejected checkpoint is logged in one line (and the fallback named); returns the loaded
    folder, or None when there is no checkpoint. Raises CheckpointError when checkpoints exist
    but none is usable."""
    candidates = complete_checkpoints(root)
    for junk in Path(root).glob("step_*.trash"):  # a kill interrupted a delete: finish it
        shutil.rmtree(junk, ignore_errors=True)
    problems = []
    for i, ckpt in enumerate(candidates):
        try:
            state = verify(ckpt)
        except CheckpointError as e:
            problems.append(str(e))
            log.warning("checkpoint %s unusable: %s; %s", ckpt.name, e, _next(candidates, i))
            continue
        try:
            load(ckpt, state)
        except Exception as e:  # noqa: BLE001 - e.g. a pre-manifest checkpoint with a bad file
            problems.append(f"{ckpt}: failed to load ({type(e).__name__}: {_line(e)})")
            log.warning("checkpoint %s unusable: %s; %s", ckpt.name, problems[-1],
                        _next(candidates, i))
            continue
        if problems:
            log.warning("resumed from %s (older than the newest checkpoint)", ckpt.name)
        return ckpt
    if problems:
        raise CheckpointError(f"no usable checkpoint under {root}: {problems[0]}"
                              + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return None


def _next(candidates: list[Path], i: int) -> str:
    if i + 1 < len(candidates):
        return f"falling back to {candidates[i + 1].name}"
    return "no older checkpoint left"

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
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from safegrpo.training.checkpoint_state import (  # noqa: F401 (re-exported)
    CheckpointError,
    _line,
    load_rng,
    rng_state,
    set_rng_state,
    state_problem,
    storage_error,
    task_state,
)

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


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
    try:
        tmp.mkdir()
        write_payload(tmp)
        save_torch(rng_state() if rng is None else rng, tmp / "rng.pt")
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **state}, indent=1))
        write_manifest(tmp)
    except Exception as e:
        reason = storage_error(e)
        if reason is None:
            raise
        _write_failed(reason, tmp, final)
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


def save_torch(obj: Any, path: Path) -> None:
    """``torch.save`` through a Python file object: a failed write (disk full, quota, file size
    limit) then leaves its OSError on the exception chain, where torch's own writer reports only
    "unexpected pos N vs M"."""
    with open(path, "wb") as f:
        torch.save(obj, f)


def _write_failed(reason: str, tmp: Path, final: Path) -> None:
    """A checkpoint the disk refused: remove the partial folder (frees its space; the previous
    checkpoint and ``latest`` are untouched) and raise one line naming the reason."""
    shutil.rmtree(tmp, ignore_errors=True)
    kept = complete_checkpoints(final.parent)
    raise CheckpointError(f"cannot write checkpoint {final}: {reason}; "
                          + (f"{kept[0].name} is intact" if kept else "no earlier checkpoint")
                          ) from None


def _discard(d: Path) -> None:
    """Rename first (atomic), then delete: a kill mid-delete never leaves a half folder that
    still looks like a checkpoint."""
    trash = d.with_name(d.name + ".trash")
    if trash.exists():
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(d, trash)
    shutil.rmtree(trash, ignore_errors=True)


# ---- reading -------------------------------------------------------------------------------
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


def intact_checkpoints(root: str | Path) -> Iterator[Path]:
    """Complete checkpoint folders that pass ``verify``, newest first (verified lazily)."""
    for ckpt in complete_checkpoints(root):
        try:
            verify(ckpt)
        except CheckpointError:
            continue
        yield ckpt


def latest_checkpoint(root: str | Path) -> Path | None:
    """Newest complete checkpoint folder that passes ``verify`` (None if there is none)."""
    return next(intact_checkpoints(root), None)


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
    """``trainer_state.json``, checked as well as parsed: a manifest only proves the file is the
    one written, not that what was written (or forged with a matching manifest) makes sense."""
    path = ckpt / "trainer_state.json"
    try:
        state = json.loads(path.read_text())
        problem = state_problem(state, ckpt.name)
    except (OSError, UnicodeDecodeError, ValueError) as e:  # JSON errors too
        raise CheckpointError(f"{path}: unreadable trainer state ({type(e).__name__}: "
                              f"{_line(e)})") from None
    if problem:
        raise CheckpointError(f"{path}: invalid trainer state ({problem})")
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

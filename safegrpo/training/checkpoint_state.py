"""What a checkpoint holds besides the model payload, and its checks: every rank's RNG state as
tensors and plain values (``rng.pt`` loads with ``weights_only=True``) and the trainer state
(``trainer_state.json``: step, history, stop reason, the task's state when it keeps one)."""

from __future__ import annotations

import errno
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointError(ValueError):
    """A checkpoint folder cannot be used; the message is one line naming the file and why."""


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


def task_state(task: Any) -> dict[str, Any] | None:
    """A task's own state across steps (JSON values), from its optional ``state_dict()``; None
    for the usual stateless task (every draw and score a function of (seed, step, rank))."""
    get = getattr(task, "state_dict", None)
    return None if get is None else get()


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


def _line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200]


def state_problem(state: Any, folder: str) -> str | None:
    """Why a trainer state cannot be resumed from, or None: ``step`` is a non-negative integer
    equal to the folder's number, and ``history`` (when present) holds one record per step
    done (0 .. step-1, in order)."""
    if not isinstance(state, dict):
        return "not a JSON object"
    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return f"step {step!r} is not a non-negative integer"
    named = re.fullmatch(r"step_(\d+)", folder)
    if named and int(named.group(1)) != step:
        return f"step {step} in folder {folder}"
    history = state.get("history", [])
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        return "history is not a list of records"
    if "history" in state and [h.get("step") for h in history] != list(range(step)):
        return f"history does not hold steps 0..{step - 1} in order"
    tasks = state.get("task_state", [{}])
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, dict) for t in tasks):
        return "task_state is not a list of objects (one per rank)"
    stop = state.get("stop_reason")
    if stop is not None and not isinstance(stop, str):
        return f"stop_reason {stop!r} is not text"
    return None


STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                            errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EFBIG})
"""Errors of a write the file system refused (full, quota, read-only, no permission, a file in
the way, file size limit)."""


def storage_error(e: BaseException) -> str | None:
    """The file system's reason (``No space left on device: PATH``) behind a failed write, found
    on the exception chain (torch's zip writer says only "unexpected pos N vs M" and keeps the
    OSError as its context) or in a Rust writer's "(os error N)"; None when ``e`` is not one."""
    seen: BaseException | None = e
    while seen is not None:
        code = seen.errno if isinstance(seen, OSError) else None
        found = re.search(r"\(os error (\d+)\)", str(seen))
        code = code or (int(found.group(1)) if found else None)
        if code in STORAGE_ERRNOS:
            name = getattr(seen, "filename", None)
            return os.strerror(code) + (f": {name}" if name else "")
        # `raise ... from None` hides the context: it was handled, not the cause
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return None

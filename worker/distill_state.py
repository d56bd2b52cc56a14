"""What lets a distillation survive its worker: the teacher's labels cached per corpus, and a training
checkpoint a restarted attempt resumes from.

Both live in the model store (``<root>/.labels`` and ``<root>/.checkpoints``), which every worker
reaches, so a part re-queued onto another worker finds them. Labels are keyed by what determines them
(teacher version, prompt, sequence length, the texts), so a second job on the same corpus, or the
retry of a killed one, skips the teacher's pass. A checkpoint carries a fingerprint of the run (config,
teacher, texts) and is ignored, never half-applied, when the fingerprint differs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"


def fingerprint(*parts: str, texts: Sequence[str] = ()) -> str:
    """sha256 over ``parts`` and every text (length-prefixed, so no two lists collide)."""
    digest = hashlib.sha256()
    for value in (*parts, *texts):
        data = value.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


class LabelCache:
    """The teacher's (n, d) float32 labels of a text list, one ``.npy`` file per key; the ``keep`` most
    recently written or read files stay, older ones are deleted (a label set is ~1.5 kB per text)."""

    def __init__(self, root: Path, keep: int = 8) -> None:
        self.root = Path(root)
        self.keep = keep

    def get_or_compute(self, key: str, compute: Callable[[], np.ndarray]) -> tuple[np.ndarray, bool]:
        """The cached labels, or ``compute()``'s, written for next time; and whether they were cached."""
        path = self.root / f"{key}.npy"
        if path.is_file():
            try:
                labels = np.load(path)
                os.utime(path)  # recently used: pruned last
                return labels, True
            except (OSError, ValueError) as exc:  # a torn file from a killed writer is only a cache miss
                log.warning("ignoring unreadable label cache %s: %s", path, exc)
        labels = compute()
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, labels)
        os.replace(tmp, path)
        self._prune()
        return labels, False

    def _prune(self) -> None:
        files = sorted(self.root.glob("*.npy"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[self.keep :]:
            old.unlink(missing_ok=True)


def save_checkpoint(directory: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically: a reader sees the previous checkpoint or this one, never a torn file."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{CHECKPOINT_FILE}.{uuid.uuid4().hex[:8]}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, directory / CHECKPOINT_FILE)


def load_checkpoint(directory: Path | None, expected_fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint in ``directory`` if it belongs to this run, else None (and a log line saying why)."""
    if directory is None or not (directory / CHECKPOINT_FILE).is_file():
        return None
    try:
        state: dict[str, Any] = torch.load(directory / CHECKPOINT_FILE, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        log.warning("ignoring unreadable checkpoint in %s: %s", directory, exc)
        return None
    if state.get("fingerprint") != expected_fingerprint:
        log.warning("ignoring checkpoint in %s: it belongs to another run (config or texts differ)", directory)
        return None
    return state

"""Stopping a training run cleanly: a stop asked for (Ctrl-C, SIGTERM, SIGHUP: the CLI sets an
``Event``) ends the run at the next step boundary, every process agreeing under DDP, with a
resumable last.pt that records the step and the random streams, so that ``--resume`` goes on
inside the same epoch as the unbroken run would have."""
from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rtseg.train.dist import DistInfo, all_reduce_sum

__all__ = ["TrainingStopped", "stop_agreed", "rng_state", "set_rng_state"]


class TrainingStopped(Exception):
    """The run stopped on request after ``epoch``'s step ``step`` (0: the epoch was finished);
    ``checkpoint`` resumes it."""

    def __init__(self, checkpoint: Path, epoch: int, step: int):
        where = f"epoch {epoch} step {step}" if step else f"the end of epoch {epoch}"
        super().__init__(f"stopped at {where}; saved {checkpoint}")
        self.checkpoint, self.epoch, self.step = checkpoint, epoch, step


def stop_agreed(stop: threading.Event | None, info: DistInfo, device: str = "cpu") -> bool:
    """Whether to stop now: this process's request, or any rank's under DDP (one tiny all-reduce
    on ``device``, NCCL's kind of tensor on CUDA, so that every rank leaves at the same step and
    none waits on a collective forever)."""
    asked = stop is not None and stop.is_set()
    if not info.enabled:
        return asked
    return all_reduce_sum(torch.tensor([1.0 if asked else 0.0], device=device), info).item() > 0


def rng_state(g: torch.Generator, device: str) -> dict[str, Any]:
    """Python's, numpy's, torch's (and CUDA's) random streams and the data generator's, as a
    checkpoint loaded with ``weights_only=True`` can hold them (tensors, numbers, lists)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
             "numpy": [kind, torch.from_numpy(np.asarray(keys, np.int64)), int(pos), int(has_gauss), float(gauss)],
             "torch": torch.get_rng_state(), "data": g.get_state()}
    if device.startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state(torch.device(device))
    return state


def set_rng_state(state: dict[str, Any], g: torch.Generator, device: str) -> None:
    """Put back what :func:`rng_state` saved."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"].cpu())
    g.set_state(state["data"].cpu())
    if "cuda" in state and device.startswith("cuda"):
        torch.cuda.set_rng_state(state["cuda"].cpu(), torch.device(device))

"""A training split decoded once and held on the device as uint8, batched and augmented there.

On a GPU the DataLoader's worker processes (decode a PNG, augment with OpenCV, normalise,
copy up as float) cannot keep up with a network as small as Fast-SCNN; CamVid's 468 frames
are 243 MB as uint8, so they live on the GPU for the whole run and each batch is gathered,
augmented (:mod:`rtseg.train.batch_augment`) and normalised there: no host work per step
beyond launching kernels. The same code runs on CPU tensors (tests, ``--data-on-device on``
on a CPU).
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Sequence

import numpy as np
import torch

from rtseg.errors import RtsegError
from rtseg.train.batch_augment import augment_batch, draw_params, normalise
from rtseg.train.data import SegDataset
from rtseg.train.metrics import ConfusionMatrix
from rtseg.train.transforms import AugmentConfig

__all__ = ["DeviceData", "evaluate_device"]


class DeviceData:
    """``images`` uint8 RGB (N, 3, H, W) and ``labels`` uint8 train ids (N, H, W), on ``device``.
    Every frame must have the same size (CamVid's do); decoding uses a few threads."""

    def __init__(self, ds: SegDataset, indices: Sequence[int], device: str | torch.device, threads: int = 8):
        indices = list(indices)
        if not indices:
            raise RtsegError("no frames to hold on the device")
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:  # cv2 decodes without the GIL
            pairs = list(pool.map(ds.read, indices))
        sizes = {img.shape[:2] for img, _ in pairs}
        if len(sizes) > 1:
            shown = ", ".join(f"{h}x{w}" for h, w in sorted(sizes)[:3])
            raise RtsegError(f"--data-on-device needs frames of one size, this split has {len(sizes)} ({shown}, ...); "
                             "use --data-on-device off")
        imgs = np.stack([img[:, :, ::-1] for img, _ in pairs])  # BGR -> RGB, (N, H, W, 3)
        self.images = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous().to(device)
        self.labels = torch.from_numpy(np.stack([lab for _, lab in pairs])).to(device)
        self.device = torch.device(device)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.images.shape[-2:])

    @property
    def nbytes(self) -> int:
        return self.images.numel() + self.labels.numel()

    def steps(self, batch_size: int, drop_last: bool, rank: int = 0, world_size: int = 1) -> int:
        n = math.ceil(len(self) / world_size)  # this rank's share (the last ranks may pad by repeating)
        return n // batch_size if drop_last else math.ceil(n / batch_size)

    def batches(self, batch_size: int, cfg: AugmentConfig, generator: torch.Generator, *, drop_last: bool,
                rank: int = 0, world_size: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of augmented (images, labels) batches in a random order from ``generator``
        (CPU, seeded by the loop per epoch). Under DDP each rank takes every world_size-th frame
        of the same permutation, padded by wrapping as DistributedSampler does."""
        n = len(self)
        order = torch.randperm(n, generator=generator)
        per_rank = math.ceil(n / world_size)
        if per_rank * world_size > n:
            order = torch.cat([order, order[: per_rank * world_size - n]])
        order = order[rank::world_size]
        # The whole epoch's choices at once, uploaded once: per step only slices of them.
        draws = draw_params(len(order), self.size, cfg, generator).to(self.device)
        order_dev = order.to(self.device, non_blocking=True)
        for k in range(self.steps(batch_size, drop_last, rank, world_size)):
            sl = slice(k * batch_size, (k + 1) * batch_size)
            idx = order_dev[sl]
            yield augment_batch(self.images[idx], self.labels[idx], draws[sl], cfg, cfg.ignore_index)


@torch.inference_mode()
def evaluate_device(model: torch.nn.Module, data: DeviceData, num_classes: int, *, size: tuple[int, int] | None = None,
                    batch_size: int = 16, ignore_index: int = 255) -> ConfusionMatrix:
    """Confusion matrix of ``model`` over every frame of ``data``, in batches, on its device;
    with ``size`` the frames are resized to it and the ids brought back to the labels' size,
    as :func:`rtseg.train.evaluate.evaluate_model` does frame by frame."""
    from rtseg.train.evaluate import at_size, to_label_size

    model.eval()
    cm = ConfusionMatrix(num_classes, ignore_index)
    mat = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=data.device)
    for i in range(0, len(data), batch_size):
        x = normalise(data.images[i:i + batch_size].float()).contiguous(memory_format=torch.channels_last)
        labels = data.labels[i:i + batch_size].long()
        pred = to_label_size(model(at_size(x, size)).argmax(1), labels)
        keep = labels < num_classes  # the ignore id is >= num_classes
        mat += torch.bincount(num_classes * labels[keep] + pred[keep], minlength=num_classes * num_classes)
    cm.mat += mat.view(num_classes, num_classes).cpu()  # one sync for the whole split
    return cm

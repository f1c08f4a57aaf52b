"""The acceptance rule of ``--runtime auto`` and ``--precision auto``: when may a faster runtime or
precision replace the reference (PyTorch fp32, or ONNX Runtime fp32 for an ``.onnx``)? Needs no
labels: a foreign model comes without a validation set.

Where the reference gives class scores, a candidate's ids must match on >= SURE_AGREEMENT of the
pixels the reference is sure of (top-1 minus top-2 probability >= SURE_MARGIN). The pixels it is
unsure of flip between two near-equal classes at any precision and cost no accuracy a user can
measure (bf16 on an AMX Xeon moved 4.9% of all pixels for 0.16 CamVid test mIoU points), where the
errors of a coarser precision (int8) land on sure pixels too. Without scores (a model that gives
ids only): >= AGREEMENT of all pixels. The evidence: benchmarks/precision_rule.py and the README's
"How --runtime auto chooses".
"""
from __future__ import annotations

import numpy as np

from rtseg.engines.base import Engine

__all__ = ["AGREEMENT", "SURE_AGREEMENT", "SURE_MARGIN", "ids_and_margins", "agreement", "refusal"]

SURE_MARGIN = 0.5  # top-1 minus top-2 probability at which the reference counts as sure of a pixel
SURE_AGREEMENT = 0.99  # share of those pixels whose id must match
AGREEMENT = 0.97  # share of all pixels, for a reference without scores


def ids_and_margins(engine: Engine, batches: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The reference's ids and, at their size, its top-1 minus top-2 class probability (from its
    scores, at the network's resolution: nearest-enlarged)."""
    import cv2

    ids, margins = [], []
    for b in batches:
        i, scores = engine.infer_scores(b)
        s = scores[0].astype(np.float32)  # (C, h', w') logits
        e = np.exp(s - s.max(axis=0, keepdims=True))
        probs = e / e.sum(axis=0, keepdims=True)
        if probs.shape[0] > 1:
            top2 = np.partition(probs, probs.shape[0] - 2, axis=0)[-2:]
        else:  # one class: always sure
            top2 = np.stack([np.zeros_like(probs[0]), probs[0]])
        h, w = i.shape[1:]
        margins.append(cv2.resize(np.ascontiguousarray(top2[1] - top2[0]), (w, h), interpolation=cv2.INTER_NEAREST))
        ids.append(i[0])
    return ids, margins


def agreement(ids: list[np.ndarray], ref_ids: list[np.ndarray], margins: list[np.ndarray] | None) -> float:
    """Share of the pixels with the reference's id: of those it is sure of (``margins`` >= SURE_MARGIN)
    when it gives scores, else of all."""
    if margins is None:
        return float(np.mean([np.mean(a == b) for a, b in zip(ids, ref_ids)]))
    same = sum(int(((a == b) & (m >= SURE_MARGIN)).sum()) for a, b, m in zip(ids, ref_ids, margins))
    sure = sum(int((m >= SURE_MARGIN).sum()) for m in margins)
    return same / sure if sure else 1.0


def refusal(agree: float, sure_rule: bool) -> str | None:
    """Why a candidate whose ids agree on ``agree`` is not taken (None: it is)."""
    if not sure_rule:
        return None if agree >= AGREEMENT else f"ids agree on {100 * agree:.1f}% < {100 * AGREEMENT:.0f}%"
    return None if agree >= SURE_AGREEMENT else (f"ids agree on {100 * agree:.1f}% < {100 * SURE_AGREEMENT:.0f}% of "
                                                 "the pixels the reference is sure of")

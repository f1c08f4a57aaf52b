"""The stages a frame goes through between read and write: transform (resize to the inference
size), infer (the engine), the temporal filter when it runs, and post (the picture), built for one
engine by :func:`engine_stages`; :mod:`rtseg.pipeline.runner` runs them."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from rtseg.engines.base import Engine
from rtseg.errors import RtsegError
from rtseg.pipeline.packet import Look, Packet
from rtseg.pipeline.temporal import PacketFilter, TemporalConfig, softmax
from rtseg.viz import Legend, confidence_palette, draw, palette_lut, yuv_luts

__all__ = ["Stage", "engine_stages", "post_workers_for"]


@dataclass(frozen=True)
class Stage:
    """A named step on a packet. ``fn`` fills in the packet and may return the milliseconds to
    record for this frame (an engine that times itself on the device); None = wall time.
    ``workers``: threads running ``fn`` on successive packets at once when pipelined (``fn``
    must then be thread-safe); the packets still leave in order."""

    name: str
    fn: Callable[[Packet], float | None]
    workers: int = 1



def post_workers_for(cores: int) -> int:
    """Workers of the post stage (colour and blend) on a machine with ``cores`` cores: 1 below 8
    cores, where every core is already busy (the network's threads, decode, x264) and a second
    worker would only take time from them; 2 from 8 cores, so that colouring large frames (or
    side-by-side pictures) never paces a GPU run."""
    return 1 if cores < 8 else 2


def engine_stages(engine: Engine, look: Look | None, *, lut: np.ndarray | None = None, i420: bool = False,
                  post_workers: int = 0, temporal: TemporalConfig | None = None, keep_scores: bool = False,
                  min_confidence: float = 0.0) -> list[Stage]:
    """transform (host resize to the inference size, or letterbox), infer (the engine: ``Packet.ids``, (h, w)
    at the inference size) and post (the picture for ``look``, :func:`rtseg.viz.draw`). ``look``
    None: no post stage, transform and infer only (a caller that draws for itself). The ids stay
    at the inference size; ``Packet.frame_ids`` enlarges them for a sink that needs them.

    ``post_workers``: threads colouring frames at once when pipelined (0 = by the core count,
    :func:`post_workers_for`); frames still leave in order. The infer stage gets a worker for each
    frame the engine takes at once (``Engine.in_flight``).

    ``i420``: draw the picture in I420 rather than BGR when the frame's sides are even (pass
    ``sink.takes_i420``): it is what the H.264 writer encodes, and cheaper to draw, the writer's
    conversion included (benchmarks/host_shortcuts.py).

    ``temporal``: a temporal stage after infer (rtseg/pipeline/temporal.py, one worker: it needs
    the frames in order), and the engine's scores from infer for it; None: neither.

    ``keep_scores``: each packet keeps its class probabilities (``Packet.probs``, after the temporal
    filter when it runs) for the confidence outputs; ``min_confidence``: ids whose top probability
    is below it become 255, "unknown" (drawn black, the masks' ignore id)."""
    keep_scores = keep_scores or min_confidence > 0
    if (temporal is not None or keep_scores) and not engine.has_scores:
        raise RtsegError(engine.no_scores_reason() if temporal is not None and not keep_scores else
                         f"confidence needs class scores, and {engine.name} gives class ids only for this model "
                         "(--confidence, --min-confidence, --view confidence, Result.confidence)")

    def transform(p: Packet) -> None:
        p.batch = engine.preprocess([p.frame])

    def unsure(p: Packet) -> None:  # --min-confidence: the ids the network is unsure of become "unknown"
        if min_confidence > 0:
            p.ids = np.where(p.confidence(p.ids.shape) < min_confidence, np.uint8(255), p.ids)

    def infer(p: Packet) -> float | None:
        frame = p.frame.shape[:2]  # a letterboxed frame's ids and scores lose the padding: they cover the frame
        if temporal is None and not keep_scores:
            p.ids = engine.to_frame(engine.infer(p.batch)[0], frame)  # one frame a packet: (1, h, w) -> (h, w)
        else:
            ids, scores = engine.infer_scores(p.batch)
            p.ids, p.scores = engine.to_frame(ids[0], frame), engine.to_frame(scores[0], frame)
            if temporal is None:  # the probabilities now (the temporal stage makes its own)
                p.probs, p.scores = softmax(np.ascontiguousarray(p.scores.transpose(1, 2, 0), np.float32)), None
                unsure(p)
        p.batch = None
        return engine.last_infer_ms  # None: timed by the wall clock; TensorRT: its CUDA-event time

    stages = [Stage("transform", transform), Stage("infer", infer, workers=engine.in_flight)]
    if temporal is not None:
        steady = PacketFilter(temporal, keep=keep_scores)

        def filtered(p: Packet) -> None:
            steady(p)
            unsure(p)

        stages.append(Stage("temporal", filtered))
    if look is None:
        return stages
    lut = palette_lut(engine.meta.palette) if lut is None else lut
    luts = yuv_luts(engine.meta.palette) if i420 else None
    legend = Legend(engine.meta.class_names, engine.meta.palette)
    heat = confidence_palette()
    heat_lut, heat_luts = palette_lut(heat), (yuv_luts(heat) if i420 else None)

    def post(p: Packet) -> None:
        p.look = look.key()  # read once, so the picture and its label agree if a key changes `look`
        view, alpha, with_legend = p.look
        if view == "confidence":  # the top probability 0..255 through the heat map, over the frame
            level = np.clip(p.confidence(p.ids.shape) * 255 + 0.5, 0, 255).astype(np.uint8)
            p.picture, p.picture_format = draw(p.frame, level, "overlay", alpha, lut=heat_lut, luts=heat_luts)
            return
        p.picture, p.picture_format = draw(p.frame, p.ids, view, alpha, lut=lut, luts=luts,
                                           legend=legend if with_legend else None)

    post_workers = post_workers or post_workers_for(len(os.sched_getaffinity(0)))
    return [*stages, Stage("post", post, workers=post_workers)]

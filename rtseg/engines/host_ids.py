"""Class ids made on the host from a network's low-resolution scores, exactly as its own tail makes them.

Most segmentation graphs end the same way: scores at 1/8 of the input, a bilinear Resize
(half-pixel centres) to the input size, an ArgMax over the classes. On a CPU that tail is a large
part of the network, and almost all of it is enlarging C score maps where one class wins anyway:

    A bilinear value is a convex combination of the four scores around it. Where the four share one
    argmax c, s_c - s_k >= 0 at each of them for every class k (> 0 for k < c, the first class
    winning ties), so also at every point between: the whole cell between them takes class c.

So only the cells whose four corners disagree (14-17% of them on street video, with the shipped
Fast-SCNN and with a yolo26n-sem taught by it) are enlarged and compared, in float32, and in them
only the classes that can win there; the rest are filled with their class. The ids are those of
the graph's own Resize and ArgMax in float32 (ties, where the graph would pick by its own rounding,
aside), for about 1-1.5 ms a frame. One thread, the whole graph against the graph without its
tail plus this (benchmarks/host_ids.py, results/host_ids*.json, a 2-core Xeon with AMX), ms a frame:

    Fast-SCNN 360x480      OpenVINO bf16 7.9 -> 5.8   OpenVINO fp32 20.0 -> 12.4   ONNX Runtime 14.4 -> 12.3
    yolo26n-sem 384x640    OpenVINO bf16 20.0 -> 14.2 OpenVINO fp32 45.4 -> 27.9   ONNX Runtime 39.7 -> 28.7

:func:`ids_from_scores` does that for any integer scale; :func:`openvino_tail` finds such a tail in
an OpenVINO model, for :class:`~rtseg.engines.openvino_engine.OpenVINOEngine`
(:mod:`rtseg.engines.onnx_tail` in an ONNX file, for ONNX Runtime); :class:`SpeckleWatch` tells
both engines when a model's maps are too speckled for it to pay.
"""
from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

__all__ = ["ids_from_scores", "cell_weights", "openvino_tail", "openvino_tail_model", "MAX_WORK", "SpeckleWatch",
           "HALF_PIXEL"]

MAX_WORK = 0.15  # host ids up to this share of the dense tail's work (Fast-SCNN on street video: 4%;
# a random-weight model's speckle: 47%)
HALF_PIXEL = ("half_pixel", "pytorch_half_pixel")  # the same mapping at any output size > 1
_weights: dict[tuple[int, int], np.ndarray] = {}  # (sy, sx) -> (sy * sx, 4) float32; a few KB each


class SpeckleWatch:
    """Whether making the ids on the host pays for a model: :meth:`count` each frame they were
    tried for, and whether it was too speckled (:func:`ids_from_scores` gave up). Where most of a
    window's frames were (a random-weight model's maps, all edges), the host's work is wasted on
    every frame: :meth:`count` returns True, once, and the engine runs its whole graph from then on."""

    def __init__(self, window: int = 8):
        self.window = window
        self.last = (0, 0)  # (speckled, frames) of the window that decided
        self._lock = threading.Lock()
        self._frames = self._speckled = 0
        self._done = False

    def count(self, speckled: bool) -> bool:
        with self._lock:
            if self._done:
                return False
            self._frames += 1
            self._speckled += bool(speckled)
            if self._frames < self.window:
                return False
            self.last = (self._speckled, self._frames)
            self._done = 2 * self._speckled > self._frames
            self._frames = self._speckled = 0
            return self._done


def _fractions(s: int) -> np.ndarray:
    """Where the s output pixels of one cell lie between its two input samples (0..1), half-pixel
    centres: output pixel y samples the input at (y + 0.5) / s - 0.5."""
    o = s // 2  # output pixels before the first whole cell (they sample at or before the first input)
    return ((o + np.arange(s) + 0.5) / s - 0.5).astype(np.float32)


def cell_weights(sy: int, sx: int) -> np.ndarray:
    """Bilinear weights (sy * sx, 4) of a cell's four corners (top-left, top-right, bottom-left,
    bottom-right) for each of its output pixels, row by row."""
    key = (sy, sx)
    if key not in _weights:
        fy, fx = np.meshgrid(_fractions(sy), _fractions(sx), indexing="ij")
        fy, fx = fy.ravel(), fx.ravel()
        _weights[key] = np.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], 1).astype(np.float32)
    return _weights[key]


def ids_from_scores(scores: np.ndarray, scale: Sequence[int], out: np.ndarray | None = None, *,
                    max_work: float | None = None) -> np.ndarray | None:
    """uint8 ids (h * sy, w * sx) of ``scores`` (C, h, w) enlarged by ``scale`` (sy, sx) (bilinear,
    half-pixel centres, edges clamped: ONNX Resize ``linear``/``half_pixel``, PyTorch's
    ``interpolate(mode="bilinear", align_corners=False)``) and arg-maxed over C (the first class on
    a tie), written into ``out`` when given. Only the cells whose corners disagree are enlarged.

    ``max_work``: give up (return None, ``out`` untouched) when the cells to enlarge would take more
    than this share of enlarging every class everywhere (a map of speckle, a random-weight model's,
    where the graph's own dense tail is cheaper)."""
    sy, sx = (int(v) for v in scale)
    c, h, w = scores.shape
    if c > 256:
        raise ValueError(f"uint8 ids hold at most 256 classes; got {c}")
    hw = np.ascontiguousarray(np.moveaxis(scores, 0, -1), dtype=np.float32)  # (h, w, C): a corner is a row
    coarse = hw.argmax(-1).astype(np.uint8)
    # Cell (j, i) lies between input rows j-1 and j, columns i-1 and i (edge ones clamped): h+1 x w+1
    # cells of sy x sx output pixels, the first and last ones partly outside the output.
    rows = np.clip(np.arange(-1, h + 1), 0, h - 1)
    cols = np.clip(np.arange(-1, w + 1), 0, w - 1)
    a = coarse[rows][:, cols]  # (h+2, w+2): the coarse ids with their edges repeated
    tl, tr, bl, br = a[:-1, :-1], a[:-1, 1:], a[1:, :-1], a[1:, 1:]
    cells = np.empty((h + 1, w + 1, sy, sx), np.uint8)
    cells[...] = tl[:, :, None, None]
    jj, ii = np.nonzero((tl != tr) | (tl != bl) | (tl != br))
    if len(jj):
        top, bottom, left, right = rows[jj], rows[jj + 1], cols[ii], cols[ii + 1]
        corners = np.stack([hw[top, left], hw[top, right], hw[bottom, left], hw[bottom, right]], 1)  # (N, 4, C)
        mixed = _mixed(corners, cell_weights(sy, sx), None if max_work is None else max_work * c * cells.size)
        if mixed is None:
            return None
        cells[jj, ii] = mixed.reshape(-1, sy, sx)
    full = cells.transpose(0, 2, 1, 3).reshape((h + 1) * sy, (w + 1) * sx)
    oy, ox = sy - sy // 2, sx - sx // 2  # the first cell's rows and columns above and left of the output
    ids = full[oy:oy + h * sy, ox:ox + w * sx]
    if out is None:
        return np.ascontiguousarray(ids)
    out[...] = ids
    return out


def _mixed(corners: np.ndarray, weights: np.ndarray, budget: float | None = None) -> np.ndarray | None:
    """uint8 ids (N, P) of N cells' P output pixels from their corners' scores (N, 4, C) and the
    pixels' corner weights (P, 4); None when that takes more than ``budget`` class-pixel values.
    Only the classes that can win somewhere in a cell are enlarged: at any point the best class
    scores at least ``floor`` (the best of the classes' lowest corner), and a class never scores
    above its highest corner, so one whose highest corner is below the floor never wins. In street
    video that leaves two or three of the C classes a cell (4% of the dense work for Fast-SCNN)."""
    hi = corners.max(1)  # (N, C)
    floor = corners.min(1).max(1, keepdims=True)  # (N, 1)
    count = (hi >= floor).sum(1)  # >= 1: the class that sets the floor
    groups = _groups(count, corners.shape[2])
    if budget is not None and sum(int(count[g].max()) * int(g.sum()) for g in groups) * len(weights) > budget:
        return None
    ids = np.empty((len(corners), len(weights)), np.uint8)
    for group in groups:
        k = int(count[group].max())
        sub_hi, sub = hi[group], corners[group]
        cand = (np.argpartition(-sub_hi, k - 1, axis=1)[:, :k] if k < sub_hi.shape[1]
                else np.broadcast_to(np.arange(k), (len(sub), k)))
        cand = np.sort(cand, 1)  # in class order, so that a tie goes to the first class, as ArgMax's
        picked = np.take_along_axis(sub, cand[:, None, :], 2)  # (n, 4, k)
        n = len(picked)
        # (k * n, 4) @ (4, P): one GEMM, each candidate's values over the n cells' pixels in a row
        values = (picked.transpose(2, 0, 1).reshape(k * n, 4) @ weights.T).reshape(k, n * len(weights))
        best = _argmax_rows(values)  # (n * P,) which candidate
        ids[group] = np.take_along_axis(cand, best.reshape(n, len(weights)), 1)
    return ids


def _groups(count: np.ndarray, classes: int) -> list[np.ndarray]:
    """The cells split by how many candidates they have (up to 2, 4, 8, all), so that a few cells
    with many do not make every cell compare that many."""
    groups, low = [], 0
    for high in (2, 4, 8, classes):
        group = (count > low) & (count <= high)
        if group.any():
            groups.append(group)
        low = high
        if high >= classes:
            break
    return groups


def _argmax_rows(values: np.ndarray) -> np.ndarray:
    """Index of the largest of each column of ``values`` (k, M), the first on a tie: row by row with
    whole-array compares, which numpy vectorises (its argmax along a short last axis is a loop)."""
    best = values[0].copy()
    which = np.zeros(values.shape[1], np.uint8)
    more = np.empty(values.shape[1], bool)
    for j in range(1, len(values)):
        np.greater(values[j], best, out=more)
        np.maximum(best, values[j], out=best)
        np.copyto(which, j, where=more)
    return which


def openvino_tail(model: Any, ids_name: str = "ids") -> tuple[Any, tuple[int, int]] | None:
    """Where an OpenVINO model (static shapes) makes its ``ids_name`` output as
    ``Convert(u8) <- [Squeeze] <- TopK(max, k=1, over the classes) <- Interpolate(linear,
    half-pixel, integer scale) <- scores``: (the scores' output port, (sy, sx)), so that the model
    cut there gives the scores and :func:`ids_from_scores` the same ids. None for any other tail."""
    out = next((o for o in model.outputs if ids_name in o.get_names()), None)
    if out is None:
        return None
    node = out.get_node().input_value(0).get_node()
    if node.get_type_name() != "Convert":
        return None
    node = node.input_value(0).get_node()
    if node.get_type_name() in ("Squeeze", "Reshape"):
        node = node.input_value(0).get_node()
    if node.get_type_name() != "TopK" or node.get_output_size() < 2:
        return None
    attrs = node.get_attributes()
    k = node.input_value(1).get_node()
    if (str(attrs.get("mode")) != "max" or int(attrs.get("axis", -1)) != 1 or k.get_type_name() != "Constant"
            or int(np.asarray(k.get_data()).ravel()[0]) != 1):
        return None
    up = node.input_value(0).get_node()
    if up.get_type_name() != "Interpolate":
        return None
    attrs = up.get_attributes()
    if (str(attrs.get("mode")) not in ("linear", "linear_onnx") or str(attrs.get("antialias")).lower() == "true"
            or str(attrs.get("coordinate_transformation_mode")) not in HALF_PIXEL
            or any(int(v) for v in [*attrs.get("pads_begin", []), *attrs.get("pads_end", [])])):
        return None
    scores, big = up.input_value(0), up.get_output_partial_shape(0)
    small = scores.get_partial_shape()
    if small.is_dynamic or big.is_dynamic or len(small) != 4:
        return None
    (n, c, h, w), (n2, c2, hh, ww) = ([d.get_length() for d in s] for s in (small, big))
    if n != 1 or (n2, c2) != (n, c) or c > 256 or hh % h or ww % w:
        return None
    return scores, (hh // h, ww // w)


def openvino_tail_model(classes: int, low: Sequence[int], scale: Sequence[int]) -> Any:
    """The tail :func:`openvino_tail` cut off, as a model of its own: scores (1, C, h, w) float32 ->
    uint8 ids (1, h * sy, w * sx) by a linear half-pixel Interpolate and a stable TopK (ArgMax's
    first class on a tie). For the frames whose maps are too speckled for :func:`ids_from_scores`."""
    import openvino as ov
    import openvino.opset13 as ops

    (h, w), (sy, sx) = low, scale
    scores = ops.parameter([1, classes, h, w], ov.Type.f32, name="scores")
    up = ops.interpolate(scores, np.array([h * sy, w * sx], np.int64), mode="linear_onnx",
                         shape_calculation_mode="sizes", coordinate_transformation_mode="half_pixel",
                         axes=np.array([2, 3], np.int64))
    top = ops.topk(up, np.array(1, np.int64), axis=1, mode="max", sort="value", index_element_type="i64", stable=True)
    ids = ops.convert(ops.squeeze(top.output(1), np.array([1], np.int64)), "u8")
    ids.output(0).get_tensor().set_names({"ids"})
    return ov.Model([ids.output(0)], [scores], "rtseg_tail")

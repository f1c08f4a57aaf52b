"""The live window: the pictures on screen with an FPS read-out, and the keys that change the
look while the pipeline runs (q quit, space pause, m view, +/- alpha, l legend)."""
from __future__ import annotations

import time

import cv2
import numpy as np

from rtseg.pipeline.packet import Look, Packet
from rtseg.pipeline.runner import Sink, StopRun
from rtseg.viz import VIEWS, Legend, draw, i420_to_bgr

__all__ = ["WindowSink", "handle_key"]


def handle_key(key: int, look: Look) -> str | None:
    """Apply a window key to ``look``; returns "quit", "pause" or None.
    q / Esc quit, space pause, m cycle the view, + / - change alpha by 0.1, l show/hide the legend."""
    if key < 0:
        return None
    ch = chr(key & 0xFF)
    if ch in ("q", "Q", "\x1b"):
        return "quit"
    if ch == " ":
        return "pause"
    if ch in ("m", "M"):
        views = VIEWS + (("confidence",) if look.view == "confidence" else ())
        look.view = views[(views.index(look.view) + 1) % len(views)]
    elif ch in ("l", "L"):
        look.legend = not look.legend
    elif ch in ("+", "="):
        look.alpha = min(1.0, round(look.alpha + 0.1, 2))
    elif ch in ("-", "_"):
        look.alpha = max(0.0, round(look.alpha - 0.1, 2))
    return None


class WindowSink(Sink):
    """An OpenCV window with an FPS read-out. Keys: q quit, space pause, m view, +/- alpha, l legend.

    Must be used from the main thread (Qt/GTK). ``look`` is shared with the post stage, so a key
    changes the next frames it draws; the frame on screen is redrawn at once from its ids."""

    def __init__(self, look: Look, lut: np.ndarray, *, title: str = "rtseg", max_size: tuple[int, int] = (720, 1280),
                 legend: Legend | None = None):
        self.look, self.lut, self.title, self.legend = look, lut, title, legend
        self.max_h, self.max_w = max_size
        self._opened = False
        self._shape: tuple[int, ...] | None = None  # size of the picture the window is fitted to
        self._fps = 0.0  # exponential moving average of the displayed frame rate
        self._last: float | None = None
        self.frames = 0

    def _show(self, picture: np.ndarray) -> None:
        if not self._opened:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
            self._opened = True
        if picture.shape != self._shape:  # first picture, or the view changed (side-by-side is twice as wide)
            h, w = picture.shape[:2]
            scale = min(1.0, self.max_h / h, self.max_w / w)  # fit the screen; never upscale
            cv2.resizeWindow(self.title, int(w * scale), int(h * scale))
            self._shape = picture.shape
        cv2.imshow(self.title, picture)

    def _draw(self, packet: Packet) -> np.ndarray:
        if packet.look == self.look.key() and packet.picture_format == "bgr":
            picture = packet.picture.copy()  # other sinks may hold it; the read-out is the window's own
        elif self.look.view == "confidence" and packet.picture is not None:
            # The heat map is the post stage's (from the class probabilities): shown as it drew it.
            picture = i420_to_bgr(packet.picture) if packet.picture_format == "i420" else packet.picture.copy()
        else:
            picture, _ = draw(packet.frame, packet.ids, self.look.view, self.look.alpha, lut=self.lut,
                              legend=self.legend if self.look.legend else None)
        text = f"{self._fps:5.1f} fps  {self.look.view}  alpha {self.look.alpha:.1f}"
        scale = max(0.5, picture.shape[0] / 720)
        org = (10, int(30 * scale))
        cv2.putText(picture, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, (0, 0, 0), int(4 * scale), cv2.LINE_AA)
        cv2.putText(picture, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, (255, 255, 255), int(2 * scale),
                    cv2.LINE_AA)
        return picture

    def write(self, packet: Packet) -> None:
        now = time.perf_counter()
        if self._last is not None:
            dt = now - self._last
            self._fps = 1.0 / dt if self._fps == 0 else 0.9 * self._fps + 0.1 / max(dt, 1e-6)
        self._last = now
        self._show(self._draw(packet))
        self.frames += 1
        action = handle_key(cv2.waitKey(1), self.look)
        paused = action == "pause"
        while action == "pause":  # GUI event loop while paused: upstream stalls on its full queues
            key = cv2.waitKey(50)
            if key >= 0 and chr(key & 0xFF) == " ":
                action = None
            elif handle_key(key, self.look) == "quit":
                action = "quit"
            elif key >= 0:
                self._show(self._draw(packet))
        if action == "quit" or cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            raise StopRun
        if paused:  # the pause is not part of the frame rate
            self._last = time.perf_counter()

    def close(self, *, completed: bool, interrupted: bool) -> None:
        if self._opened:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)  # let the GUI process the destroy event

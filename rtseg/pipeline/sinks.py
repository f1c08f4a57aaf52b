"""Where the pictures go: an overlay video, per-frame class-id PNGs, a window.

The video is written to ``<name>.partial<suffix>`` and renamed when the run ends normally or is
interrupted, after the writer (PyAV's H.264 or OpenCV's) has written the container's index: so
the file under the final name is always complete and playable, even after Ctrl-C.
"""
from __future__ import annotations

import json
import logging
import os
import time
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from rtseg.errors import RtsegError
from rtseg.pipeline.packet import Look, Packet
from rtseg.pipeline.runner import Sink, StopRun
from rtseg.viz import VIEWS, Legend, compose, i420_to_bgr

__all__ = ["VideoSink", "MaskSink", "WindowSink", "MultiSink", "NullSink", "FOURCC", "handle_key", "h264_available",
           "encoder_threads"]

log = logging.getLogger(__name__)

# Containers and the OpenCV codec used for each. OpenCV's pip wheels carry FFmpeg without an
# H.264 encoder (avc1 fails to open here), so without PyAV it is MPEG-4 Part 2 ("mp4v"), which
# desktop players read but web browsers do not.
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}
H264_CONTAINERS = (".mp4", ".m4v", ".mov", ".mkv")  # written as H.264 when PyAV is installed


def h264_available() -> bool:
    """True when PyAV is installed with an x264 encoder (``pip install av``)."""
    try:
        import av
    except ImportError:
        return False
    return "libx264" in av.codecs_available


def encoder_threads(*, pipelined: bool) -> int:
    """x264 threads for the overlay video (0 = x264's own choice, about 1.5 a core).

    Run one after another (--sequential), the encoder has the machine to itself while it works:
    its own choice. Pipelined, the network works at the same time, and x264's extra threads take
    its cores (and cost 8% more CPU than one thread): all cores but two. On this 2-core machine
    that is one thread, which took a pipelined ONNX Runtime run on 1024x2048 frames from 12-13
    to 13.5-14.5 fps (three runs each, 40 frames)."""
    return max(1, len(os.sched_getaffinity(0)) - 2) if pipelined else 0


class _CvWriter:
    """cv2.VideoWriter with the codec of ``FOURCC``."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], fourcc: str):
        self.codec = fourcc
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if not self._writer.isOpened():
            raise RtsegError(f"cannot write video {path} (codec {fourcc} at {size[0]}x{size[1]}); try --output with .avi")

    def write(self, picture: np.ndarray, fmt: str) -> None:
        self._writer.write(picture if fmt == "bgr" else i420_to_bgr(picture))

    def release(self) -> None:
        self._writer.release()  # writes the mp4 index (moov atom): without it the file does not play


class _H264Writer:
    """H.264 (x264, preset ultrafast) through PyAV. Against OpenCV's mp4v on 1024x2048 overlay
    frames: 20 ms a frame instead of 24, files 23% smaller, and browsers play them."""

    codec = "h264"

    def __init__(self, path: Path, fps: float, size: tuple[int, int], threads: int = 0):
        import av

        self._av = av
        w, h = size
        rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)
        try:
            self._container = av.open(str(path), mode="w")
            self._stream = self._container.add_stream("libx264", rate=rate)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise RtsegError(f"cannot write video {path} ({exc})") from None
        # 4:2:0, what every player and browser reads, needs even sides; 4:4:4 keeps odd ones exact.
        self._even = w % 2 == 0 and h % 2 == 0
        self._stream.width, self._stream.height = w, h
        self._stream.pix_fmt = "yuv420p" if self._even else "yuv444p"
        self._stream.options = {"preset": "ultrafast",  # the write stage is the dearest host stage
                                "threads": str(threads)}  # 0: x264's choice (see encoder_threads)
        self._index = 0

    def write(self, picture: np.ndarray, fmt: str) -> None:
        if self._even:
            # An I420 picture as it is; BGR by OpenCV's I420 conversion (SIMD) rather than PyAV's
            # swscale from bgr24: about 5 ms less a frame at 1024x2048.
            i420 = picture if fmt == "i420" else cv2.cvtColor(picture, cv2.COLOR_BGR2YUV_I420)
            frame = self._av.VideoFrame.from_ndarray(i420, format="yuv420p")
        else:  # odd sides: post draws these in BGR (I420 needs even ones)
            frame = self._av.VideoFrame.from_ndarray(picture, format="bgr24")  # PyAV converts it to 4:4:4
        frame.pts = self._index
        self._index += 1
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def release(self) -> None:
        try:
            for packet in self._stream.encode():  # flush the frames x264 still holds
                self._container.mux(packet)
        finally:
            self._container.close()  # writes the mp4 index: without it the file does not play


class NullSink(Sink):
    """Discards pictures (engine or pipeline measurements without output)."""

    takes_i420 = True

    def write(self, packet: Packet) -> None:
        pass


class VideoSink(Sink):
    """Writes ``packet.picture`` to a video at ``fps``; opened on the first picture (its size).

    ``codec``: ``auto`` writes H.264 when PyAV is installed and the container takes it, else
    OpenCV's codec for the container; ``h264`` insists; ``opencv`` never uses PyAV. Pictures
    may come in BGR or I420; the H.264 writer encodes I420 as it comes. ``threads``: x264's
    threads (0 = its own choice; see ``encoder_threads``)."""

    takes_i420 = True

    def __init__(self, path: str | Path, fps: float, *, codec: str = "auto", threads: int = 0):
        self.path = Path(path)
        self.threads = threads
        suffix = self.path.suffix.lower()
        if suffix not in FOURCC:
            raise RtsegError(f"--output {path}: unsupported video type {suffix or '(none)'!r}; use one of "
                             f"{', '.join(FOURCC)}")
        if codec not in ("auto", "h264", "opencv"):
            raise RtsegError(f"--codec {codec!r} is not allowed; use auto, h264 or opencv")
        if codec == "h264" and (suffix not in H264_CONTAINERS or not h264_available()):
            raise RtsegError(f"--codec h264 needs PyAV (pip install av) and one of "
                             f"{', '.join(H264_CONTAINERS)}; got {suffix}")
        if not self.path.parent.is_dir():
            raise RtsegError(f"--output {path}: folder {self.path.parent} does not exist")
        self.partial = self.path.with_name(f"{self.path.stem}.partial{self.path.suffix}")
        self.fps = fps
        self.codec_choice = codec
        self.frames = 0
        self.codec: str | None = None  # h264, mp4v or MJPG, once the first picture has opened the file
        self._writer: _CvWriter | _H264Writer | None = None
        self._size: tuple[int, int] | None = None  # (w, h)

    def _open(self, w: int, h: int) -> _CvWriter | _H264Writer:
        suffix = self.path.suffix.lower()
        if self.codec_choice != "opencv" and suffix in H264_CONTAINERS and h264_available():
            return _H264Writer(self.partial, self.fps, (w, h), self.threads)
        if FOURCC[suffix] == "mp4v" and (w % 2 or h % 2):
            log.warning("OpenCV's mp4v writer rounds %dx%d pictures down to even sides; with PyAV installed "
                        "(pip install av) the video keeps them", h, w)
        return _CvWriter(self.partial, self.fps, (w, h), FOURCC[suffix])

    def write(self, packet: Packet) -> None:
        picture, fmt = packet.picture, packet.picture_format
        h, w = picture.shape[:2] if fmt == "bgr" else (picture.shape[0] * 2 // 3, picture.shape[1])
        if self._writer is None:
            self._size = (w, h)
            self._writer = self._open(w, h)
            self.codec = self._writer.codec
        elif (w, h) != self._size:  # the writer has one frame size (a view change in the window, say)
            bgr = picture if fmt == "bgr" else i420_to_bgr(picture)
            picture, fmt = cv2.resize(bgr, self._size, interpolation=cv2.INTER_AREA), "bgr"
        self._writer.write(picture, fmt)
        self.frames += 1

    def close(self, *, completed: bool, interrupted: bool) -> None:
        if self._writer is None:
            return
        try:
            self._writer.release()
        finally:
            self._writer = None
        if completed or interrupted:
            os.replace(self.partial, self.path)  # atomic on one file system
        else:
            log.warning("run failed: the %d frames written so far are in %s", self.frames, self.partial)


class ImageSink(Sink):
    """Pictures as image files: one file (``-o out.png``, for a source of one frame) or a folder
    (``-o DIR/``) of ``<frame name><suffix>``, the input images' names. Each file is written
    under a temporary name and renamed, so an interrupted run leaves no half-written image."""

    def __init__(self, path: str | Path, *, folder: bool, suffix: str = ".png"):
        self.path, self.folder, self.suffix = Path(path), folder, suffix.lower()
        image_suffixes = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
        if self.suffix not in image_suffixes:
            raise RtsegError(f"--output {path}: unsupported image type {self.suffix!r}; use one of {', '.join(image_suffixes)}")
        target = self.path if folder else self.path.parent
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RtsegError(f"--output {path}: cannot create the folder ({exc.strerror})") from None
        self.frames = 0

    def write(self, packet: Packet) -> None:
        if not self.folder and self.frames:
            raise RtsegError(f"--output {self.path} is one image but the source has more frames; use -o DIR/ for a folder")
        picture = packet.picture if packet.picture_format == "bgr" else i420_to_bgr(packet.picture)
        path = self.path / f"{packet.name}{self.suffix}" if self.folder else self.path
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in (".jpg", ".jpeg") else []
        if not cv2.imwrite(str(tmp), picture, params):
            raise RtsegError(f"cannot write {path}")
        os.replace(tmp, path)
        self.frames += 1


class StatsSink(Sink):
    """``--stats PATH``: each frame's class pixel shares as JSON Lines
    (``{"frame": 0, "name": "000000", "shares": {"Road": 0.41, ...}}``, classes present only),
    and per-class totals for the run's summary (jetson-inference's --stats is the model).
    Shares are of the frame's pixels, counted on the ids at the inference size."""

    takes_i420 = True  # it reads ids, not pictures

    def __init__(self, path: str | Path, class_names: Sequence[str]):
        self.path, self.names = Path(path), list(class_names)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w")
        except OSError as exc:
            raise RtsegError(f"--stats {path}: cannot write it ({exc.strerror})") from None
        self.share_sum = np.zeros(len(self.names))  # summed over frames
        self.present = np.zeros(len(self.names), np.int64)  # frames where the class has any pixel
        self.frames = 0

    def write(self, packet: Packet) -> None:
        n = len(self.names)
        counts = np.bincount(packet.ids.ravel(), minlength=n)[:n]
        shares = counts / max(1, packet.ids.size)
        self.share_sum += shares
        self.present += counts > 0
        self.frames += 1
        line = {"frame": packet.index, "name": packet.name,
                "shares": {self.names[i]: round(float(shares[i]), 5) for i in np.flatnonzero(counts)}}
        self._fh.write(json.dumps(line) + "\n")

    def summary(self) -> list[dict]:
        """Per class: mean share of the pixels over the run, and the share of frames it appears in."""
        f = max(1, self.frames)
        return [{"class": name, "mean_share": float(self.share_sum[i] / f), "frames_present": float(self.present[i] / f)}
                for i, name in enumerate(self.names)]

    def close(self, *, completed: bool, interrupted: bool) -> None:
        self._fh.close()


class MaskSink(Sink):
    """Lossless PNGs of the class ids, one per frame: ``DIR/<frame name>.png`` (uint8, value = class id)."""

    takes_i420 = True  # it writes ids, not pictures

    def __init__(self, folder: str | Path, classes: dict | None = None):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if classes is not None:  # which id is which class, beside the masks (viz.classes_table)
                (self.folder / "classes.json").write_text(json.dumps(classes, indent=1) + "\n")
        except OSError as exc:
            raise RtsegError(f"--masks {folder}: cannot create the folder ({exc.strerror})") from None
        self.frames = 0

    def write(self, packet: Packet) -> None:
        path = self.folder / f"{packet.name}.png"
        # Compression 1: PNG is lossless at any level; 1 is ~3x faster to write than the default 3.
        if not cv2.imwrite(str(path), packet.frame_ids(), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise RtsegError(f"cannot write {path}")
        self.frames += 1


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
        look.view = VIEWS[(VIEWS.index(look.view) + 1) % len(VIEWS)]
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
        else:
            picture = compose(packet.frame, packet.ids, self.lut, self.look.view, self.look.alpha)
            if self.look.legend and self.legend is not None:
                self.legend.draw(picture, "bgr", packet.frame.shape[:2], packet.ids)
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


class MultiSink(Sink):
    """Several sinks in order; every one is closed even if another's close fails."""

    def __init__(self, sinks: Sequence[Sink]):
        self.sinks = list(sinks)
        self.takes_i420 = all(sink.takes_i420 for sink in self.sinks)

    def write(self, packet: Packet) -> None:
        for sink in self.sinks:
            sink.write(packet)

    def close(self, *, completed: bool, interrupted: bool) -> None:
        errors = []
        for sink in self.sinks:
            try:
                sink.close(completed=completed, interrupted=interrupted)
            except Exception as exc:  # keep closing the others: a video must still be finalised
                errors.append(exc)
        if errors:
            raise errors[0]

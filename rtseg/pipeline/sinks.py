"""Where the pictures go: an overlay video, images, per-frame class-id PNGs, class statistics
(the window is :mod:`rtseg.pipeline.window`).

The video is written to ``<name>.partial<suffix>`` and renamed when the run ends normally or is
interrupted (Ctrl-C, SIGTERM, SIGHUP), after the writer has written the container's index: so the
file under the final name is always complete and playable. While the run goes on, the partial
file plays too, up to its last second (H.264: fragmented, :mod:`rtseg.pipeline.video_writers`),
so a killed process or a full disk loses about a second. A write error (full disk, I/O error,
folder gone) is an :class:`RtsegError` naming the output and the reason; what was written stays.
Images and masks are written under a temporary name and renamed: never half a file.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from rtseg.errors import RtsegError
from rtseg.pipeline.packet import Packet
from rtseg.pipeline.runner import Sink
from rtseg.pipeline.sources import IMAGE_SUFFIXES
from rtseg.pipeline.video_writers import FRAGMENTED, CvWriter, H264Writer, playable_frames, remux_faststart
from rtseg.viz import i420_to_bgr

__all__ = ["VideoSink", "ImageSink", "MaskSink", "ConfidenceSink", "StatsSink", "MultiSink", "NullSink", "FOURCC", "h264_available",
           "encoder_threads", "write_image"]

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
    its cores (and more CPU than one thread would): all cores but two, at least one."""
    return max(1, len(os.sched_getaffinity(0)) - 2) if pipelined else 0


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
        self._writer: CvWriter | H264Writer | None = None
        self._size: tuple[int, int] | None = None  # (w, h)
        self._failed = False  # a write error: the partial file stays as it is

    def _open(self, w: int, h: int) -> CvWriter | H264Writer:
        suffix = self.path.suffix.lower()
        if self.codec_choice != "opencv" and suffix in H264_CONTAINERS and h264_available():
            return H264Writer(self.partial, self.fps, (w, h), self.threads)
        if FOURCC[suffix] == "mp4v" and (w % 2 or h % 2):
            log.warning("OpenCV's mp4v writer rounds %dx%d pictures down to even sides; with PyAV installed "
                        "(pip install av) the video keeps them", h, w)
        return CvWriter(self.partial, self.fps, (w, h), FOURCC[suffix])

    def write(self, packet: Packet) -> None:
        self.write_picture(packet.picture, packet.picture_format)

    def write_picture(self, picture: np.ndarray, fmt: str = "bgr") -> None:
        """One picture in ``fmt``: "bgr" (H, W, 3) or "i420" (H * 3/2, W)."""
        h, w = picture.shape[:2] if fmt == "bgr" else (picture.shape[0] * 2 // 3, picture.shape[1])
        if self._failed:
            raise RtsegError(f"cannot write {self.path}: an earlier write failed")
        try:
            if self._writer is None:
                self._size = (w, h)
                self._writer = self._open(w, h)
                self.codec = self._writer.codec
            elif (w, h) != self._size:  # the writer has one frame size (a view change in the window, say)
                bgr = picture if fmt == "bgr" else i420_to_bgr(picture)
                picture, fmt = cv2.resize(bgr, self._size, interpolation=cv2.INTER_AREA), "bgr"
            self._writer.write(picture, fmt)
        except OSError as exc:
            raise self._write_error(exc) from exc
        self.frames += 1

    def _write_error(self, exc: OSError) -> RtsegError:
        """The one line for a failed write (full disk, I/O error, folder gone); the writer is
        abandoned and what it wrote kept under the partial name."""
        self._failed = True
        if isinstance(self._writer, H264Writer):
            self._writer.abandon(self.partial)
        kept = ""
        if self.codec == "h264" and self.partial.exists():
            n = playable_frames(self.partial)
            kept = f"; its first {n} frames ({n / (self.fps or 25):.1f} s) play in {self.partial}" if n else ""
        return RtsegError(f"cannot write {self.path} ({exc.strerror or exc}){kept}")

    def close(self, *, completed: bool, interrupted: bool) -> None:
        if self._writer is None or self._failed:
            self._writer = None
            return
        try:
            self._writer.release()
        except OSError as exc:
            raise self._write_error(exc) from exc
        finally:
            self._writer = None
        if not (completed or interrupted):
            log.warning("run failed: the %d frames written so far are in %s", self.frames, self.partial)
            return
        try:
            self._finalise()
        except OSError as exc:  # the folder removed or made read-only during the run
            kept = f"; the complete video is in {self.partial}" if self.partial.exists() else ""
            raise RtsegError(f"cannot write {self.path} ({exc.strerror or exc}){kept}") from exc

    def _finalise(self) -> None:
        """The partial file under the final name: an H.264 MP4/MOV rewritten with its index at the
        front (a copy of the packets, no re-encoding), else renamed as it is (atomic on one file
        system). With no room for the copy, the fragmented file is kept: it plays all the same."""
        if self.codec == "h264" and self.path.suffix.lower() in FRAGMENTED:
            remuxed = self.path.with_name(f"{self.path.stem}.partial.remux{self.path.suffix}")
            try:
                remux_faststart(self.partial, remuxed)
            except OSError as exc:
                if not self.partial.exists():
                    raise
                log.warning("%s stays fragmented (%s while moving its index to the front); FFmpeg-based players "
                            "play it all the same", self.path, exc.strerror or exc)
            else:
                os.replace(remuxed, self.path)
                os.remove(self.partial)
                return
        os.replace(self.partial, self.path)


def write_image(path: Path, picture: np.ndarray, params: Sequence[int] = (), *, flag: str = "--output",
                kept: str = "") -> None:
    """``picture`` encoded by ``path``'s suffix and written under a temporary name, then renamed:
    an interrupted or killed run leaves no half-written image. A write error (full disk, I/O
    error, folder gone) is one line naming the file, the reason and ``kept`` (what stays)."""
    ok, data = cv2.imencode(path.suffix, picture, list(params))
    if not ok:
        raise RtsegError(f"{flag}: cannot encode {path} ({picture.shape} {picture.dtype})")
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.remove(tmp)
        except OSError:
            pass
        kept = f"; {kept}" if kept and path.parent.is_dir() else ""  # not when the folder itself is gone
        raise RtsegError(f"{flag}: cannot write {path} ({exc.strerror or exc}){kept}") from exc


class ImageSink(Sink):
    """Pictures as image files: one file (``-o out.png``, for a source of one frame) or a folder
    (``-o DIR/``) of ``<frame name><suffix>``, the input images' names. Each file is written
    under a temporary name and renamed, so an interrupted run leaves no half-written image."""

    def __init__(self, path: str | Path, *, folder: bool, suffix: str = ".png"):
        self.path, self.folder, self.suffix = Path(path), folder, suffix.lower()
        if self.suffix not in IMAGE_SUFFIXES:
            raise RtsegError(f"--output {path}: unsupported image type {self.suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}")
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
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in (".jpg", ".jpeg") else []
        write_image(path, picture, params, kept=f"the {self.frames} images before it are kept" if self.frames else "")
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
            self._fh = open(self.path, "w", buffering=1)  # line-buffered: a killed run keeps every whole line
        except OSError as exc:
            raise RtsegError(f"--stats {path}: cannot write it ({exc.strerror})") from None
        self._failed = False
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
        try:
            self._fh.write(json.dumps(line) + "\n")
        except OSError as exc:
            raise self._write_error(exc) from exc

    def _write_error(self, exc: OSError) -> RtsegError:
        self._failed = True
        return RtsegError(f"--stats {self.path}: cannot write it ({exc.strerror or exc}); "
                          f"the lines of the frames before are kept")

    def summary(self) -> list[dict]:
        """Per class: mean share of the pixels over the run, and the share of frames it appears in."""
        f = max(1, self.frames)
        return [{"class": name, "mean_share": float(self.share_sum[i] / f), "frames_present": float(self.present[i] / f)}
                for i, name in enumerate(self.names)]

    def close(self, *, completed: bool, interrupted: bool) -> None:
        try:
            self._fh.close()
        except OSError as exc:
            if not self._failed:  # after a write error, its line has been said already
                raise self._write_error(exc) from exc


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
        # Compression 1: PNG is lossless at any level, and 1 writes fastest.
        write_image(path, packet.frame_ids(), [cv2.IMWRITE_PNG_COMPRESSION, 1], flag="--masks",
                    kept=f"the {self.frames} masks before it are kept" if self.frames else "")
        self.frames += 1


class ConfidenceSink(Sink):
    """The top class's probability, one 8-bit PNG per frame at the frame's size: ``DIR/<frame
    name>.png``, 0..255 for probability 0..1 (``--confidence``)."""

    takes_i420 = True  # it writes probabilities, not pictures

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RtsegError(f"--confidence {folder}: cannot create the folder ({exc.strerror})") from None
        self.frames = 0

    def write(self, packet: Packet) -> None:
        level = np.clip(packet.confidence() * 255.0 + 0.5, 0, 255).astype(np.uint8)
        write_image(self.folder / f"{packet.name}.png", level, [cv2.IMWRITE_PNG_COMPRESSION, 1], flag="--confidence",
                    kept=f"the {self.frames} images before it are kept" if self.frames else "")
        self.frames += 1


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

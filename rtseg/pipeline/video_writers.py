"""The two video writers behind :class:`rtseg.pipeline.sinks.VideoSink`, and the remux that
gives a finished MP4 its index at the front.

Crash safety: the H.264 writer writes fragmented MP4/MOV (a ``moof`` + ``mdat`` pair per
fragment, each fragment starting at a keyframe, a keyframe every second of video) or Matroska
with a cluster a second, and hands every fragment to the kernel as it is complete. A process
killed with ``kill -9`` (or an out-of-memory kill, a full disk) leaves a file that plays every
frame up to its last complete fragment: at most about a second is lost. A run that ends (or is
stopped by Ctrl-C, SIGTERM, SIGHUP) rewrites the fragmented MP4/MOV into a regular one with the
index (``moov``) at the front, without re-encoding (:func:`remux_faststart`): what every player
and browser reads, as before. Matroska needs no rewrite (its index at the end is the norm).
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from rtseg.errors import RtsegError
from rtseg.viz import i420_to_bgr

__all__ = ["CvWriter", "H264Writer", "remux_faststart", "trim_fragments", "playable_frames", "KEYFRAME_S", "FRAGMENTED"]

KEYFRAME_S = 1.0  # s of video between keyframes, so between fragments: what a kill -9 loses at most (plus x264's delay)
# Fragmented MP4/MOV: an empty index first, then self-contained fragments cut at keyframes
# (default_base_moof: the offsets each fragment carries are its own, as browsers' MSE expects).
_MOV_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
_MKV_OPTIONS = {"cluster_time_limit": str(int(KEYFRAME_S * 1000))}  # ms a cluster spans at most
FRAGMENTED = (".mp4", ".m4v", ".mov")  # containers written fragmented and remuxed at the end
_CLOCK = Fraction(1, 90000)  # a live stream's time base: RTP's video clock, in which each picture is stamped


class CvWriter:
    """cv2.VideoWriter with a codec from ``FOURCC`` (no PyAV). Not crash-safe: an MP4 without
    its index (written at ``release``) does not play; an AVI mostly does."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], fourcc: str):
        self.codec = fourcc
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if not self._writer.isOpened():
            raise RtsegError(f"cannot write video {path} (codec {fourcc} at {size[0]}x{size[1]}); try --output with .avi")

    def write(self, picture: np.ndarray, fmt: str) -> None:
        self._writer.write(picture if fmt == "bgr" else i420_to_bgr(picture))

    def release(self) -> None:
        self._writer.release()  # writes the mp4 index (moov atom): without it the file does not play


class H264Writer:
    """H.264 (x264, preset ultrafast) through PyAV: faster than OpenCV's mp4v, smaller files, and
    browsers play them. Written fragmented (see the module's docstring). Raises ``OSError`` (PyAV's
    ``av.error.OSError``) when the file cannot be written: the caller names the output.

    ``path`` may also be a URL, with ``format`` and ``options`` (the muxer's): a stream to a server
    (:mod:`rtseg.pipeline.publish`), ``live``: x264 tuned for latency (no frame held back) and each
    picture stamped with the time it was written (``at``, on RTP's 90 kHz clock), so that it plays at
    the pace it is made."""

    codec = "h264"

    def __init__(self, path: Path | str, fps: float, size: tuple[int, int], threads: int = 0, *,
                 format: str | None = None, options: dict[str, str] | None = None, live: bool = False):
        import av

        self._av = av
        w, h = size
        rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)
        if options is None:
            # flush_packets: each write goes to the kernel at once (a fragment, as the muxer holds a
            # fragment's frames until it is complete), so a killed process loses no complete fragment.
            options = {**(_MKV_OPTIONS if Path(path).suffix.lower() == ".mkv" else _MOV_OPTIONS), "flush_packets": "1"}
        try:
            self._container = av.open(str(path), mode="w", format=format, options=options)
            self._stream = self._container.add_stream("libx264", rate=rate)
        except OSError:
            raise  # a folder without write permission, a full disk: the sink names the output
        except (av.error.FFmpegError, ValueError) as exc:
            raise RtsegError(f"cannot write video {path} ({exc})") from None
        # 4:2:0, what every player and browser reads, needs even sides; 4:4:4 keeps odd ones exact.
        self._even = w % 2 == 0 and h % 2 == 0
        self._stream.width, self._stream.height = w, h
        self._stream.pix_fmt = "yuv420p" if self._even else "yuv444p"
        # A keyframe a second starts a fragment a second; x264's default (250 frames) would leave
        # 8-16 s of a crashed file unplayable. About 3% more bytes on the demo clip (docs/architecture.md).
        # A viewer joining a stream waits for a keyframe: at most a second too.
        self._stream.codec_context.gop_size = max(1, round(float(rate) * KEYFRAME_S))
        self._stream.options = {"preset": "ultrafast",  # the write stage is the dearest host stage
                                "threads": str(threads),  # 0: x264's choice (see encoder_threads)
                                **({"tune": "zerolatency"} if live else {})}  # a packet out for every picture in
        self._live = live
        self._clock: float | None = None  # live: the `at` of the first picture (s)
        if live:
            self._stream.codec_context.time_base = _CLOCK
        self._index = 0

    def write(self, picture: np.ndarray, fmt: str, at: float | None = None) -> None:
        """One picture in ``fmt`` ("bgr" or "i420"); ``at``: when it was made (s, monotonic; live only)."""
        if self._even:
            # An I420 picture as it is; BGR by OpenCV's I420 conversion (SIMD), faster than PyAV's
            # swscale from bgr24.
            i420 = picture if fmt == "i420" else cv2.cvtColor(picture, cv2.COLOR_BGR2YUV_I420)
            frame = self._av.VideoFrame.from_ndarray(i420, format="yuv420p")
        else:  # odd sides: post draws these in BGR (I420 needs even ones)
            frame = self._av.VideoFrame.from_ndarray(picture, format="bgr24")  # PyAV converts it to 4:4:4
        frame.pts = self._index
        if self._live and at is not None:
            self._clock = at if self._clock is None else self._clock
            frame.pts = max(self._index, round((at - self._clock) * _CLOCK.denominator))  # increasing, as muxers want
            frame.time_base = _CLOCK
        self._index = frame.pts + 1
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def release(self) -> None:
        try:
            for packet in self._stream.encode():  # flush the frames x264 still holds
                self._container.mux(packet)
        finally:
            self._container.close()  # the last fragment and the fragments' index (mfra)

    def abandon(self, path: Path | None = None) -> None:
        """Close after a write error (a full disk, a server gone), keeping the complete fragments of
        ``path`` (:func:`trim_fragments`); raises nothing."""
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - the disk is full or gone: what is on it stays as it is
            pass
        if path is not None and path.suffix.lower() in FRAGMENTED:
            try:
                trim_fragments(path)
            except OSError:
                pass


def trim_fragments(path: Path) -> int:
    """Cut a fragmented MP4/MOV after its last complete fragment (``moof`` + ``mdat``): a write
    that failed half-way leaves a fragment whose frames are missing, which decoders report as
    corrupt data. Returns the file's new size; a file of other boxes is left as it is."""
    size, at, end = path.stat().st_size, 0, 0
    with open(path, "rb+") as fh:
        while at + 8 <= size:
            fh.seek(at)
            head = fh.read(16)
            box, kind = int.from_bytes(head[:4], "big"), head[4:8]
            box = int.from_bytes(head[8:16], "big") if box == 1 else box
            if box < 8 or at + box > size:
                break
            at += box
            if kind in (b"moov", b"mdat", b"mfra"):  # the (empty) index, a fragment's frames, the fragments' index
                end = at
        if end and end < size:
            fh.truncate(end)
    return end or size


def playable_frames(path: Path) -> int:
    """The frames in a video file, counted from its packets (no decoding); 0 when it does not open."""
    import av

    try:
        with av.open(str(path)) as container:
            return sum(1 for p in container.demux(container.streams.video[0]) if p.size)
    except (av.error.FFmpegError, OSError, IndexError):
        return 0


def remux_faststart(src: Path, dst: Path) -> None:
    """Copy the video of ``src`` (a fragmented MP4/MOV) into ``dst`` as a regular file with its
    index at the front (movflags faststart), packet for packet: no re-encoding. ``dst`` is
    removed again when the copy fails (the error is raised: OSError for a full disk)."""
    import av

    try:
        with av.open(str(src)) as inp, av.open(str(dst), mode="w", options={"movflags": "faststart"}) as out:
            video = inp.streams.video[0]
            stream = out.add_stream_from_template(video)
            for packet in inp.demux(video):
                if packet.dts is None:  # the demuxer's empty packet at the end
                    continue
                packet.stream = stream
                out.mux(packet)
    except BaseException:
        try:
            os.remove(dst)
        except OSError:
            pass
        raise

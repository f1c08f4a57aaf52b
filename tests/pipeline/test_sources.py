"""Sources: what they report, what they read, and the one-line errors for bad input."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline_fakes import write_video
from rtseg.errors import RtsegError
from rtseg.pipeline.live import LiveSource, open_camera
from rtseg.pipeline.opener import open_source
from rtseg.pipeline.sources import ImageFolderSource, VideoFileSource


def _read_all(source) -> list[np.ndarray]:
    frames = []
    while (f := source.read()) is not None:
        frames.append(f)
    source.close()
    return frames


def test_video_file_reports_fps_size_count_and_reads_every_frame(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 17, size=(48, 64), fps=12)
    source = open_source(str(path))
    assert isinstance(source, VideoFileSource) and not source.live
    assert (source.fps, source.size, source.frame_count, source.name) == (12.0, (48, 64), 17, "clip")
    frames = _read_all(source)
    assert len(frames) == 17
    levels = [f.mean() for f in frames]  # the writer made each frame 9 grey levels brighter
    assert all(b > a + 4 for a, b in zip(levels, levels[1:])), levels  # in order, none repeated


def test_the_bundled_demo_clip_opens():
    from rtseg.bundled import DEMO_CLIP

    source = open_source(str(DEMO_CLIP))
    assert source.size == (360, 480) and source.frame_count == 101 and source.fps == pytest.approx(15)
    source.close()


def test_image_folder_and_glob(tmp_path):
    for i, name in enumerate(["b.png", "a.png", "c.jpg"]):
        cv2.imwrite(str(tmp_path / name), np.full((30, 40, 3), 50 * i, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    folder = open_source(str(tmp_path))
    assert isinstance(folder, ImageFolderSource) and folder.frame_count == 3 and folder.size == (30, 40)
    assert [folder.frame_name(i) for i in range(3)] == ["a", "b", "c"]
    assert [int(f.mean()) for f in _read_all(folder)][:2] == [50, 0]  # a.png then b.png
    pngs = open_source(str(tmp_path / "*.png"))
    assert pngs.frame_count == 2 and len(_read_all(pngs)) == 2


def test_image_folder_fits_odd_sizes_to_the_first(tmp_path):
    cv2.imwrite(str(tmp_path / "0.png"), np.zeros((30, 40, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "1.png"), np.zeros((60, 80, 3), np.uint8))
    assert [f.shape for f in _read_all(ImageFolderSource(tmp_path))] == [(30, 40, 3), (30, 40, 3)]


def _truncated_avi(tmp_path):
    full = write_video(tmp_path / "full.avi", 30, fourcc="MJPG")
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    return cut


@pytest.mark.parametrize("case, message", [
    ("missing", r"no such file or folder: .*missing\.mp4"),
    ("text", r"is not a video OpenCV can read"),
    ("empty", r"is empty \(0 bytes\)"),
    ("mp4_cut", r"looks like a video container but cannot be decoded: it is truncated or corrupt"),
    ("no_frames", r"looks like a video container but cannot be decoded"),
    ("empty_folder", r"no images .* in folder"),
    ("glob_nothing", r"no images .* in glob"),
    ("bad_image", r"cannot read image .*broken\.png"),
    ("url_scheme", r"unsupported URL scheme 'ftp'"),
])
def test_bad_sources_give_one_line_errors(tmp_path, case, message):
    if case == "text":
        (tmp_path / "notes.mp4").write_text("hello " * 100)
        spec = tmp_path / "notes.mp4"
    elif case == "empty":
        (tmp_path / "empty.mp4").touch()
        spec = tmp_path / "empty.mp4"
    elif case == "mp4_cut":  # mp4v puts the index at the end: a cut file has none
        data = write_video(tmp_path / "full.mp4", 30).read_bytes()
        (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
        spec = tmp_path / "cut.mp4"
    elif case == "no_frames":
        writer = cv2.VideoWriter(str(tmp_path / "zero.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
        writer.release()
        spec = tmp_path / "zero.mp4"
    elif case == "empty_folder":
        (tmp_path / "d").mkdir()
        spec = tmp_path / "d"
    elif case == "glob_nothing":
        spec = str(tmp_path / "*.png")
    elif case == "bad_image":
        (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
        spec = tmp_path / "broken.png"
    elif case == "url_scheme":
        spec = "ftp://example.invalid/clip.mp4"
    else:
        spec = tmp_path / "missing.mp4"
    with pytest.raises(RtsegError, match=message) as info:
        source = open_source(str(spec))
        _read_all(source)
    assert "\n" not in str(info.value)


def test_a_file_cut_short_mid_stream_gives_every_frame_that_decodes_then_a_warning(tmp_path, caplog):
    """An AVI cut in half still opens (its header says 30 frames) but ends early: the frames that
    decode come out, then the stream ends with one warning naming where decoding stopped."""
    source = open_source(str(_truncated_avi(tmp_path)))
    assert source.frame_count == 30
    frames = _read_all(source)
    assert 0 < len(frames) < 30 and source.cut_short
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and f"ended after {len(frames)} of its 30 frames (decoding stopped at frame " in warnings[0]


def test_camera_that_cannot_be_opened():
    with pytest.raises(RtsegError, match=r"^camera 57 cannot be opened"):
        open_camera(57)


def test_live_source_without_frames_fails_at_open():
    class Dead:
        def read(self):
            return False, None

        def release(self):
            pass

    with pytest.raises(RtsegError, match="delivered no frame"):
        LiveSource(Dead(), name="camera 3", fps=30, first_frame_timeout=1)

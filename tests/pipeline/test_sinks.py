"""Sinks: a complete video (even after Ctrl-C), lossless mask PNGs, window keys; timing."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline_fakes import FakeEngine, ListSource, RecordingSink, count_frames, write_video
from rtseg.errors import RtsegError
from rtseg.pipeline import Look, Timings, engine_stages, open_source, run
from rtseg.pipeline.sinks import MaskSink, MultiSink, VideoSink, h264_available
from rtseg.pipeline.window import handle_key
from rtseg.pipeline.timing import StageStats


class _Interrupt(RecordingSink):
    """Ctrl-C arriving in the main thread while frame ``at`` is being written."""


needs_h264 = pytest.mark.skipif(not h264_available(), reason="PyAV with x264 is not installed (pip install av)")


@pytest.mark.parametrize("suffix, codec, written", [(".mp4", "opencv", "mp4v"), (".avi", "auto", "MJPG"),
                                                    pytest.param(".mp4", "auto", "h264", marks=needs_h264),
                                                    pytest.param(".mkv", "h264", "h264", marks=needs_h264)])
def test_output_video_has_the_inputs_size_fps_and_frame_count(tmp_path, suffix, codec, written):
    src = write_video(tmp_path / "in.mp4", 23, size=(48, 64), fps=12)
    out = tmp_path / f"out{suffix}"
    source = open_source(str(src))
    video = VideoSink(out, source.fps, codec=codec)
    result = run(source, engine_stages(FakeEngine(), Look()), video)
    assert result.frames == 23 and video.codec == written
    assert count_frames(out) == (23, 12.0, (48, 64))
    assert not (tmp_path / f"out.partial{suffix}").exists()


@needs_h264
def test_h264_keeps_a_fractional_frame_rate_and_the_picture(tmp_path):
    out = tmp_path / "out.mp4"
    video = VideoSink(out, 30000 / 1001)
    run(ListSource(10, size=(64, 96)), engine_stages(FakeEngine(), Look(view="mask")), video)
    frames, fps, size = count_frames(out)
    assert (frames, size, video.codec) == (10, (64, 96), "h264") and fps == pytest.approx(29.97, abs=0.01)


@pytest.mark.parametrize("codec", [pytest.param("h264", marks=needs_h264), "opencv"])
@pytest.mark.parametrize("view", ["overlay", "side-by-side"])
def test_pictures_drawn_in_i420_are_what_the_video_holds(tmp_path, codec, view):
    """With a sink that takes I420 the post stage draws in it; the file holds the same picture a
    BGR run writes (H.264 encodes I420 as it comes, the OpenCV writer gets it back in BGR)."""
    frames = []
    for i420 in (False, True):
        out = tmp_path / f"{i420}.mp4"
        video = VideoSink(out, 10, codec=codec)
        # no legend: its small coloured squares lose chroma detail in I420 (tests/test_viz.py covers it)
        stages = engine_stages(FakeEngine(), Look(view=view, legend=False), i420=i420)
        sink = MultiSink([video, kept := RecordingSink()])
        run(ListSource(6, size=(64, 96)), stages, sink)
        assert len(kept.seen) == 6 and kept.formats == {"i420" if i420 else "bgr"}
        cap = cv2.VideoCapture(str(out))
        frames.append([cap.read()[1].astype(int) for _ in range(6)])
        cap.release()
    for bgr_run, i420_run in zip(*frames):
        assert bgr_run.shape == (64, 96 * (2 if view == "side-by-side" else 1), 3)
        # the same picture: one level of YUV rounding is up to 3 in BGR, and the codec adds its own
        assert np.abs(bgr_run - i420_run).mean() < 3 and np.abs(bgr_run - i420_run).max() <= 12


def test_odd_frames_are_drawn_in_bgr_even_when_the_sink_takes_i420():
    sink = RecordingSink()
    run(ListSource(3, size=(45, 61)), engine_stages(FakeEngine(), Look(), i420=True), sink)
    assert sink.formats == {"bgr"}


def test_which_sinks_take_i420(tmp_path):
    from rtseg.pipeline.window import WindowSink
    from rtseg.viz import palette_lut

    window = WindowSink(Look(), palette_lut([(0, 0, 0)]))
    video, masks = VideoSink(tmp_path / "x.mp4", 25), MaskSink(tmp_path / "m")
    assert MultiSink([video, masks]).takes_i420 and not MultiSink([video, window]).takes_i420


def test_encoder_threads_leave_the_network_its_cores_when_pipelined(monkeypatch):
    import os

    from rtseg.pipeline.sinks import encoder_threads

    for cores, want in [(1, 1), (2, 1), (4, 2), (16, 14)]:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)))
        assert encoder_threads(pipelined=True) == want
        assert encoder_threads(pipelined=False) == 0  # x264's own choice


@needs_h264
def test_the_thread_count_reaches_x264(tmp_path):
    from rtseg.pipeline.packet import Packet

    video = VideoSink(tmp_path / "t.mp4", 10, threads=1)
    for i in range(2):
        video.write(Packet(index=i, name=str(i), frame=None, t_read=0.0, picture=np.zeros((32, 48, 3), np.uint8)))
    threads = video._writer._stream.codec_context.thread_count  # set when x264 opened, on the first frame
    video.close(completed=True, interrupted=False)
    assert threads == 1 and count_frames(tmp_path / "t.mp4")[0] == 2


@needs_h264
def test_h264_keeps_odd_frame_sides(tmp_path, caplog):
    video = VideoSink(tmp_path / "odd.mp4", 10)
    run(ListSource(4, size=(45, 61)), engine_stages(FakeEngine(), Look()), video)
    assert video.codec == "h264" and count_frames(tmp_path / "odd.mp4")[::2] == (4, (45, 61))
    # OpenCV's mp4v writer cannot: it rounds down, and says so.
    run(ListSource(4, size=(45, 61)), engine_stages(FakeEngine(), Look()), VideoSink(tmp_path / "cv.mp4", 10, codec="opencv"))
    assert count_frames(tmp_path / "cv.mp4")[2] == (44, 60) and "rounds 45x61 pictures down" in caplog.text


def test_bad_codec_choices_are_one_line(tmp_path):
    with pytest.raises(RtsegError, match="--codec 'vp9' is not allowed"):
        VideoSink(tmp_path / "x.mp4", 25, codec="vp9")
    with pytest.raises(RtsegError, match="--codec h264 needs"):
        VideoSink(tmp_path / "x.avi", 25, codec="h264")


def test_side_by_side_is_twice_as_wide(tmp_path):
    src = write_video(tmp_path / "in.mp4", 5, size=(48, 64))
    out = tmp_path / "sbs.mp4"
    run(open_source(str(src)), engine_stages(FakeEngine(), Look(view="side-by-side")), VideoSink(out, 12))
    assert count_frames(out)[2] == (48, 128)


@pytest.mark.parametrize("codec", ["opencv", pytest.param("h264", marks=needs_h264)])
def test_ctrl_c_leaves_a_complete_playable_video(tmp_path, codec):
    """The interrupt lands in the main thread during a write; what was written plays back, under the final name."""
    out = tmp_path / "out.mp4"
    video = VideoSink(out, 25, codec=codec)
    sink = MultiSink([video, RecordingSink(interrupt_at=12)])
    result = run(ListSource(500), engine_stages(FakeEngine(), Look()), sink)
    assert result.interrupted
    assert count_frames(out)[0] == video.frames == 13  # frame 12 reached the video before the interrupt
    assert not (tmp_path / "out.partial.mp4").exists()


def test_a_failed_run_keeps_its_partial_file_under_the_partial_name(tmp_path):
    from pipeline_fakes import Boom
    from rtseg.pipeline import StageError

    out = tmp_path / "out.mp4"
    with pytest.raises(StageError, match="^infer stage failed"):
        run(ListSource(100), engine_stages(FakeEngine(fail={"infer": 20}), Look()), VideoSink(out, 25))
    assert not out.exists()
    assert count_frames(tmp_path / "out.partial.mp4")[0] > 0  # still a valid file to inspect
    assert Boom


def test_video_sink_rejects_unknown_containers_and_missing_folders(tmp_path):
    with pytest.raises(RtsegError, match=r"unsupported video type '\.gif'"):
        VideoSink(tmp_path / "x.gif", 25)
    with pytest.raises(RtsegError, match="does not exist"):
        VideoSink(tmp_path / "nope" / "x.mp4", 25)


def test_masks_are_lossless_class_ids_named_by_frame(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for name, value in [("f1", 3), ("f2", 7)]:
        cv2.imwrite(str(folder / f"{name}.png"), np.full((30, 40, 3), value, np.uint8))
    masks = tmp_path / "masks"
    run(open_source(str(folder)), engine_stages(FakeEngine(), Look()), MaskSink(masks))
    assert sorted(p.name for p in masks.iterdir()) == ["f1.png", "f2.png"]
    ids = cv2.imread(str(masks / "f2.png"), cv2.IMREAD_UNCHANGED)
    assert ids.dtype == np.uint8 and ids.shape == (30, 40) and (ids == 7).all()


def test_window_keys():
    look = Look(view="overlay", alpha=0.5)
    assert handle_key(-1, look) is None
    assert handle_key(ord("m"), look) is None and look.view == "mask"
    handle_key(ord("m"), look)
    assert look.view == "side-by-side"
    handle_key(ord("m"), look)
    assert look.view == "overlay"
    handle_key(ord("+"), look)
    handle_key(ord("+"), look)
    assert look.alpha == pytest.approx(0.7)
    for _ in range(10):
        handle_key(ord("-"), look)
    assert look.alpha == 0.0
    assert handle_key(ord(" "), look) == "pause"
    assert handle_key(ord("q"), look) == "quit" and handle_key(27, look) == "quit"


def test_look_validates():
    with pytest.raises(RtsegError, match="--view must be one of overlay, mask, side-by-side"):
        Look(view="heatmap")
    with pytest.raises(RtsegError, match="--alpha must be in 0..1"):
        Look(alpha=1.5)


def test_stage_stats_mean_and_percentiles_with_a_bounded_window():
    stats = StageStats(window=100)
    for v in range(1, 201):  # 1..200 ms; the window keeps the last 100 (101..200)
        stats.add(float(v))
    s = stats.summary()
    assert s["mean"] == pytest.approx(100.5)  # exact over all samples
    assert s["p50"] == pytest.approx(150.5) and s["p95"] == pytest.approx(195.05)
    assert stats.count == 200
    timings = Timings(["read"])
    with timings.time("read"):
        pass
    assert timings.stages["read"].count == 1
    assert np.isnan(Timings(["x"]).summary()["x"]["mean"])


def test_l_toggles_the_legend_and_masks_come_with_a_class_table(tmp_path):
    import json

    from rtseg.viz import classes_table

    look = Look()
    assert look.legend and look.key() == ("overlay", 0.5, True)
    handle_key(ord("l"), look)
    assert not look.legend and look.key()[2] is False
    table = classes_table(["road", "car"], [(128, 64, 128), (0, 0, 142)])
    MaskSink(tmp_path / "m", table)
    written = json.loads((tmp_path / "m" / "classes.json").read_text())
    assert written["classes"][1] == {"id": 1, "name": "car", "rgb": [0, 0, 142], "bgr": [142, 0, 0]}
    assert written["ignore_index"] == 255


# Crash safety and write errors (docs/architecture.md, "Exit codes and signals").

def _boxes(path) -> list[str]:
    """The top-level boxes of an MP4/MOV file, in order."""
    data, at, kinds = path.read_bytes(), 0, []
    while at + 8 <= len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        size = int.from_bytes(data[at + 8:at + 16], "big") if size == 1 else size
        kinds.append(data[at + 4:at + 8].decode("latin-1"))
        at += max(size, 8)
    return kinds


def _picture(i: int) -> np.ndarray:
    picture = np.full((48, 64, 3), (i * 9) % 250, np.uint8)
    picture[:, i % 64] = 255  # something that moves, so that frames differ
    return picture


@needs_h264
@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv"])
def test_the_partial_video_plays_while_the_run_goes_on(tmp_path, suffix):
    """Fragments (clusters for .mkv) of a second each, a keyframe at the start of each: before the
    writer is closed, the partial file plays every frame but those of the last second or so."""
    av = pytest.importorskip("av")
    video = VideoSink(tmp_path / f"out{suffix}", 10)
    for i in range(57):
        video.write_picture(_picture(i))
    with av.open(str(video.partial)) as c:
        packets = [p for p in c.demux(c.streams.video[0]) if p.size]
    assert 57 - 10 - 3 <= len(packets) < 57  # at most a second (10 frames) and x264's few frames of delay lost
    assert [i for i, p in enumerate(packets) if p.is_keyframe][:3] == [0, 10, 20]
    video.close(completed=True, interrupted=False)
    assert count_frames(tmp_path / f"out{suffix}")[0] == 57
    if suffix != ".mkv":  # the finished file is a regular one, its index first
        assert _boxes(tmp_path / f"out{suffix}")[:2] == ["ftyp", "moov"] and "moof" not in _boxes(tmp_path / f"out{suffix}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{suffix}"]


@needs_h264
def test_a_full_disk_is_one_line_and_keeps_what_was_written(tmp_path, monkeypatch):
    import errno

    from rtseg.pipeline import video_writers

    real = video_writers.H264Writer.write

    def write(self, picture, fmt):
        if self._index == 34:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, picture, fmt)

    monkeypatch.setattr(video_writers.H264Writer, "write", write)
    out = tmp_path / "out.mp4"
    with pytest.raises(RtsegError) as caught:
        run(ListSource(100, size=(48, 64)), engine_stages(FakeEngine(), Look()), VideoSink(out, 10))
    line, plays = str(caught.value), count_frames(tmp_path / "out.partial.mp4")[0]
    assert "\n" not in line and line.startswith(f"write stage: cannot write {out} (No space left on device)")
    assert line.endswith(f"its first {plays} frames ({plays / 10:.1f} s) play in {tmp_path / 'out.partial.mp4'}")
    assert 30 <= plays <= 34 and not out.exists()
    assert caught.value.__cause__ is not None  # batch reads the errno from the chain


@needs_h264
def test_a_fragment_cut_short_is_trimmed_away(tmp_path):
    """What a write that failed half-way leaves (a fragment without all its frames) is cut off, so
    that decoders see no corrupt data; the complete fragments stay."""
    av = pytest.importorskip("av")
    from rtseg.pipeline.video_writers import trim_fragments

    video = VideoSink(tmp_path / "out.mp4", 10)
    for i in range(45):
        video.write_picture(_picture(i))
    video.close(completed=False, interrupted=False)  # a failed run: the partial file stays fragmented
    whole = (tmp_path / "out.partial.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[:len(whole) - 3000])  # the last fragment (and the fragments' index) cut short
    size = trim_fragments(cut)
    assert size == cut.stat().st_size < len(whole) - 3000 and _boxes(cut)[-1] == "mdat"
    with av.open(str(cut)) as c:
        decoded = sum(1 for _ in c.decode(c.streams.video[0]))  # raises on corrupt data
    assert decoded % 10 == 0 and 10 <= decoded < 45  # whole seconds: the fragments that were complete
    assert trim_fragments(cut) == size  # a file that ends on a complete fragment is left as it is


@needs_h264
def test_no_room_for_the_faststart_copy_keeps_the_fragmented_file(tmp_path, monkeypatch, caplog):
    import errno

    from rtseg.pipeline import sinks

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sinks, "remux_faststart", full)
    out = tmp_path / "out.mp4"
    run(ListSource(25, size=(48, 64)), engine_stages(FakeEngine(), Look()), VideoSink(out, 10))
    assert count_frames(out)[0] == 25 and "moof" in _boxes(out) and "stays fragmented" in caplog.text
    assert not (tmp_path / "out.partial.mp4").exists()


def test_masks_and_stats_write_errors_are_one_line(tmp_path, monkeypatch):
    import errno
    import shutil

    from rtseg.pipeline.sinks import StatsSink

    masks = MaskSink(tmp_path / "masks")
    source = ListSource(10, size=(48, 64))

    class _Gone(RecordingSink):  # the masks folder removed mid-run
        def write(self, packet):
            if packet.index == 4:
                shutil.rmtree(tmp_path / "masks")
            super().write(packet)

    with pytest.raises(RtsegError, match=rf"^write stage: --masks: cannot write {tmp_path / 'masks'}/000004.png "
                                         r"\(No such file or directory\)$"):
        run(source, engine_stages(FakeEngine(), Look()), MultiSink([_Gone(), masks]))

    stats = StatsSink(tmp_path / "stats.jsonl", ["a", "b"])

    class _Full:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    stats._fh = _Full()
    with pytest.raises(RtsegError, match=rf"^write stage: --stats {tmp_path / 'stats.jsonl'}: cannot write it "
                                         r"\(No space left on device\)"):
        run(ListSource(3, size=(48, 64)), engine_stages(FakeEngine(), Look()), stats)


def test_images_are_never_half_written(tmp_path, monkeypatch):
    import builtins
    import errno

    from rtseg.pipeline.sinks import ImageSink

    real_open = builtins.open

    def full(path, mode="r", *a, **k):
        if "w" in mode and str(path).endswith(".tmp.png"):
            fh = real_open(path, mode, *a, **k)
            fh.write(b"\x89PNG half")
            fh.close()
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *a, **k)

    sink = ImageSink(tmp_path / "frames", folder=True)
    monkeypatch.setattr(builtins, "open", full)
    with pytest.raises(RtsegError, match="No space left on device"):
        run(ListSource(3, size=(48, 64)), engine_stages(FakeEngine(), Look()), sink)
    assert list((tmp_path / "frames").iterdir()) == []  # neither the image nor its temporary


@needs_h264
def test_the_library_video_writer_says_a_full_disk_in_one_line(tmp_path, monkeypatch):
    import errno

    from rtseg.pipeline import video_writers
    from rtseg.streaming import VideoWriter

    real = video_writers.H264Writer.write

    def write(self, picture, fmt):
        if self._index == 25:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, picture, fmt)

    monkeypatch.setattr(video_writers.H264Writer, "write", write)
    out = tmp_path / "lib.mp4"
    with pytest.raises(RtsegError, match=rf"^cannot write {out} \(No space left on device\); its first 2\d frames"):
        with VideoWriter(out, fps=10) as writer:
            for i in range(60):
                writer.write(_picture(i))
    assert count_frames(tmp_path / "lib.partial.mp4")[0] >= 20 and not out.exists()

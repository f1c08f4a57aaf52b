"""--start / --end / --stride (rtseg/pipeline/trim.py): positions as frames or times, the frames
handed out, their names, the frame rate kept in real time, and one-line errors."""
from __future__ import annotations

import pytest
from pipeline_fakes import ListSource, frame_mark

from rtseg.errors import RtsegError
from rtseg.pipeline.trim import parse_position, trim


@pytest.mark.parametrize("text, want", [("120", ("frame", 120)), ("0", ("frame", 0)), ("4.5s", ("time", 4.5)),
                                        ("1:02", ("time", 62.0)), ("0:01:02.5", ("time", 62.5)), ("10s", ("time", 10.0))])
def test_positions(text, want):
    assert parse_position(text, "--start") == want


@pytest.mark.parametrize("text", ["-3", "abc", "1:2:3:4", "s", "1.5", "nan s"])
def test_bad_positions_are_one_line(text):
    with pytest.raises(RtsegError, match=r"--start .* is not a position; use a frame number"):
        parse_position(text, "--start")


def test_start_end_and_stride_pick_the_frames_and_keep_real_time():
    src = trim(ListSource(20, fps=10.0), start="0.5s", end="15", stride=3)  # 0.5 s at 10 fps = frame 5
    got = []
    while (frame := src.read()) is not None:
        got.append(frame_mark(frame))
    assert got == [5, 8, 11, 14] and src.frame_count == 4 and src.fps == pytest.approx(10 / 3)
    assert [src.frame_name(i) for i in range(4)] == ["000005", "000008", "000011", "000014"]  # original numbers


def test_nothing_asked_is_the_source_itself_and_mistakes_are_one_line():
    src = ListSource(20)
    assert trim(src) is src
    with pytest.raises(RtsegError, match="--stride 0 is not allowed"):
        trim(src, stride=0)
    with pytest.raises(RtsegError, match="--end 5 is not after --start 10"):
        trim(src, start="10", end="5")
    with pytest.raises(RtsegError, match="--start 25 is past the end of list"):
        trim(src, start="25")

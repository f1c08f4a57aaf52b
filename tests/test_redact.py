"""No output shows a password given in a URL: messages, names, JSON (rtseg/errors.py redact)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rtseg.errors import redact

sys.path.insert(0, str(Path(__file__).resolve().parent / "cli"))


@pytest.mark.parametrize("text, want", [
    ("rtsp://admin:hunter2@127.0.0.1:9/stream", "rtsp://***@127.0.0.1:9/stream"),
    ("cannot open http://user@cam.local/x.mjpg (x)", "cannot open http://***@cam.local/x.mjpg (x)"),
    ("http://cam/x?password=hunter2&fps=5", "http://cam/x?password=***&fps=5"),
    ("rtsp://cam/live?token=abc123", "rtsp://cam/live?token=***"),
    ("a plain path/video.mp4 and rtsp://cam/x", "a plain path/video.mp4 and rtsp://cam/x"),
])
def test_redact(text, want):
    assert redact(text) == want


def test_a_file_served_over_http_is_named_without_its_credentials():
    from rtseg.pipeline.sources import VideoFileSource

    class Cap:  # two frames, then the end
        def __init__(self):
            self.n = 0

        def get(self, prop):
            return 2 if prop == 7 else 25.0  # CAP_PROP_FRAME_COUNT = 7

        def read(self):
            import numpy as np

            self.n += 1
            return (self.n <= 2), (np.zeros((8, 8, 3), np.uint8) if self.n <= 2 else None)

        def release(self):
            pass

    for url, name in (("http://admin:hunter2@cam.local", "stream"), ("http://admin:hunter2@cam/v/clip.mp4", "clip")):
        src = VideoFileSource.from_capture(Cap(), url)
        assert src.name == name and "hunter2" not in src.describe()


@pytest.mark.slow
def test_no_command_prints_a_password_from_a_url(tmp_path):
    from test_run import rtseg_subprocess

    for args in (["run", "rtsp://admin:hunter2@127.0.0.1:9/stream"],
                 ["run", "http://admin:hunter2@127.0.0.1:9/x.mjpg?token=t0ps3cret"],
                 ["bench", "rtsp://admin:hunter2@127.0.0.1:9/stream"],
                 ["webcam", "rtsp://admin:hunter2@127.0.0.1:9/stream"]):
        res = rtseg_subprocess(*args, cwd=tmp_path, timeout=120)
        assert res.returncode == 2, (args, res.stderr)
        assert "hunter2" not in res.stdout + res.stderr and "t0ps3cret" not in res.stdout + res.stderr, res.stderr
        assert "***@127.0.0.1:9" in res.stderr

"""The --show window, for real: an X server (Xvfb) runs the window, screenshots (xwd) show its
pixels, and key presses (xdotool) drive it. Needs the Debian packages xvfb and x11-apps (xwd);
xdotool for the key part. Skips when Xvfb is not installed or does not start."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

FAKES = Path(__file__).resolve().parent

# Endless flat frames of grey 40 -> the fake engine's ids are 40 -> palette[40] in the mask view.
SCRIPT = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(FAKES)!r})
    from pipeline_fakes import FakeEngine, ListSource
    from rtseg.pipeline import Look, engine_stages, run
    from rtseg.pipeline.window import WindowSink
    from rtseg.viz import palette_lut

    class Grey(ListSource):
        def read(self, stop=None):
            frame = super().read(stop)
            return None if frame is None else frame * 0 + 40

    engine = FakeEngine(delay={{"infer": 0.02}})
    look = Look(view="mask", alpha=0.5)
    result = run(Grey(100_000, size=(120, 160)), engine_stages(engine, look),
                 WindowSink(look, palette_lut(engine.meta.palette), title="rtseg-test"), queue_size=1)
    print(f"frames={{result.frames}} stopped_by_user={{result.stopped_by_user}}", flush=True)
""")
MASK_BGR = (24, 215, 40)  # palette[40] = RGB (40, 255 - 40, 7 * 40 % 256), as the screen shows it in BGR
GREY = (40, 40, 40)


def read_xwd(data: bytes) -> np.ndarray:
    """An X window dump (24/32-bit TrueColor, as Xvfb makes) -> (H, W, 3) BGR uint8."""
    header = np.frombuffer(data, ">u4", 25)
    header_size, width, height = int(header[0]), int(header[4]), int(header[5])
    byte_order, bits_per_pixel, bytes_per_line, ncolors = int(header[7]), int(header[11]), int(header[12]), int(header[19])
    if bits_per_pixel not in (24, 32):
        pytest.skip(f"screenshot has {bits_per_pixel} bits per pixel; this reader handles 24 and 32")
    offset = header_size + ncolors * 12  # the colour map (12 bytes an entry) precedes the pixels
    rows = np.frombuffer(data, np.uint8, height * bytes_per_line, offset).reshape(height, bytes_per_line)
    step = bits_per_pixel // 8  # Xvfb at depth 24 dumps 32-bit pixels, or packed 24-bit ones once Qt has drawn
    pixels = rows[:, : width * step].reshape(height, width, step)
    return pixels[..., :3] if byte_order == 0 else pixels[..., step - 1:step - 4:-1]  # LSBFirst: B, G, R (, x)


def _colour_share(img: np.ndarray, bgr) -> int:
    return int((img == np.array(bgr, np.uint8)).all(axis=2).sum())


@pytest.fixture
def display():
    xvfb = shutil.which("Xvfb")
    if xvfb is None or shutil.which("xwd") is None:
        pytest.skip("Xvfb and xwd are not installed (Debian: apt-get install xvfb x11-apps)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen([xvfb, "-displayfd", str(write_fd), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    number = b""
    with os.fdopen(read_fd, "rb") as pipe:  # Xvfb writes its display number here once it is ready
        number = pipe.readline().strip()
    if not number:
        proc.kill()
        pytest.skip("Xvfb did not start")
    name = f":{number.decode()}"
    # A fresh Xvfb can refuse the first connections for a moment, and Qt gives up at once when
    # it cannot connect: wait until a client gets through before the window's process starts.
    deadline = time.monotonic() + 30
    while _screenshot(name) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    yield name
    proc.terminate()
    proc.wait(timeout=10)


def _screenshot(display: str) -> np.ndarray | None:
    """The screen, or None when xwd could not connect yet (a fresh Xvfb can refuse the first
    connections for a moment; the callers retry until their deadline)."""
    done = subprocess.run(["xwd", "-root", "-silent", "-display", display], capture_output=True, timeout=30)
    return read_xwd(done.stdout) if done.returncode == 0 and done.stdout else None


def _wait_for(display: str, proc, what, label: str, timeout: float = 300) -> np.ndarray:
    deadline = time.monotonic() + timeout
    shot = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the window process ended early: {proc.communicate()}")
        shot = _screenshot(display)
        if shot is not None and what(shot):
            return shot
        time.sleep(0.3)
    if shot is None:
        pytest.fail(f"xwd could not take a screenshot of {display} before the deadline")
    colours, counts = np.unique(shot.reshape(-1, 3), axis=0, return_counts=True)
    common = [tuple(c) for c in colours[np.argsort(-counts)[:5]]]
    pytest.fail(f"the window never showed {label}; commonest screen colours (BGR): {common}")


def test_window_shows_the_mask_and_fps_and_obeys_keys(display):
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        frame_px = 120 * 160
        shot = _wait_for(display, proc, lambda s: _colour_share(s, MASK_BGR) > frame_px // 2,
                         "the mask view")
        # The mask view: the class colour fills the frame, apart from the FPS read-out drawn in white.
        ys, xs = np.nonzero((shot == np.array(MASK_BGR, np.uint8)).all(axis=2))
        box = shot[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
        assert box.shape[:2] == (120, 160)  # shown at its own size
        light = (box > 200).all(axis=2).sum()  # the read-out's white text (anti-aliased, so not all pure white)
        assert light > 20, "no FPS read-out in the window"
        # The frame itself (uniform grey) is not shown in the mask view. A stray pixel of the
        # read-out's anti-aliasing can land on the same value, so allow a handful, not a frame.
        assert _colour_share(box, GREY) < box.shape[0] * box.shape[1] // 100

        if shutil.which("xdotool") is None:
            pytest.skip("xdotool is not installed: the window's pixels were checked, its keys were not")
        win = subprocess.run(["xdotool", "search", "--name", "^rtseg-test$"], env=env, capture_output=True,
                             text=True, timeout=30).stdout.split()[0]
        subprocess.run(["xdotool", "windowfocus", "--sync", win], env=env, check=True, timeout=30)
        subprocess.run(["xdotool", "key", "m"], env=env, check=True, timeout=30)  # mask -> side-by-side
        # side-by-side: the grey frame beside the overlay, the window twice as wide
        _wait_for(display, proc, lambda s: _colour_share(s, GREY) > frame_px // 2, "side-by-side after 'm'")
        subprocess.run(["xdotool", "key", "q"], env=env, check=True, timeout=30)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "stopped_by_user=True" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

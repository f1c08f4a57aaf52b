"""What SIGTERM, SIGHUP, ``kill -9`` and a full disk leave of ``rtseg run``: each in a subprocess
on the bundled demo clip (101 frames at 15 fps), with the real console entry point, the bundled
weights on PyTorch at a small size, and every output (video, --masks, --stats, --json).

The source is slowed (a sleep per frame read, patched in by the driver) so that a signal lands
mid-run; the masks folder, a PNG per frame written, is how the test sees the run's progress."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

av = pytest.importorskip("av")

ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / "assets" / "demo" / "camvid_0016E5_val_15fps.mp4"
FPS = 15
pytestmark = pytest.mark.skipif(not CLIP.is_file(), reason="the demo clip is not in this checkout")

# The console entry point with the source slowed by RTSEG_TEST_READ_S a frame, and (with
# RTSEG_TEST_FSIZE) a cap on the size of any file this process writes: past it, writes fail
# with EFBIG as they would with ENOSPC on a full disk.
DRIVER = r"""
import os, resource, signal, sys, time
cap = int(os.environ.get("RTSEG_TEST_FSIZE", "0"))
if cap:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails (EFBIG) instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (cap, cap))
import rtseg.pipeline.context as context
delay = float(os.environ.get("RTSEG_TEST_READ_S", "0"))
opener = context.open_source
def slowed(*args, **kwargs):
    src = opener(*args, **kwargs)
    read = src.read
    def slow(*a, **k):
        time.sleep(delay)
        return read(*a, **k)
    src.read = slow
    return src
context.open_source = slowed
from rtseg.cli import main
sys.argv = ["rtseg"] + sys.argv[1:]
main()
"""


def _command(out_dir: Path) -> list[str]:
    return ["run", str(CLIP), "-o", str(out_dir / "out.mp4"), "--runtime", "pytorch", "--size", "72x96",
            "--masks", str(out_dir / "masks"), "--stats", str(out_dir / "stats.jsonl"),
            "--json", str(out_dir / "run.json")]


def _start(args: list[str], *, read_s: float = 0.0, fsize: int = 0, wrap: list[str] = ()) -> subprocess.Popen:
    env = {**os.environ, "RTSEG_TEST_READ_S": str(read_s), "RTSEG_TEST_FSIZE": str(fsize), "COLUMNS": "120",
           "PYTHONUNBUFFERED": "1"}
    env.pop("DISPLAY", None)
    return subprocess.Popen([*wrap, sys.executable, "-c", DRIVER, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _masks(out_dir: Path) -> int:
    folder = out_dir / "masks"
    return len(list(folder.glob("[0-9]*.png"))) if folder.is_dir() else 0


def _wait_for_frames(proc: subprocess.Popen, out_dir: Path, n: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while _masks(out_dir) < n:
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {n} frames: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"fewer than {n} frames written in {timeout:.0f} s")
        time.sleep(0.05)


def _frames(path: Path) -> int:
    """Frames PyAV decodes from ``path`` (what a player shows)."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def _top_level_boxes(path: Path) -> list[str]:
    boxes, data, at = [], path.read_bytes(), 0
    while at + 8 <= len(data):
        size, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8].decode("latin-1")
        size = int.from_bytes(data[at + 8:at + 16], "big") if size == 1 else size
        boxes.append(kind)
        if size < 8:
            break
        at += size
    return boxes


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGHUP, 129, "hung up")])
def test_sigterm_and_sighup_finalise_every_output(tmp_path, sig, code, word):
    proc = _start(_command(tmp_path), read_s=0.08)
    _wait_for_frames(proc, tmp_path, 20)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and stderr.strip() == "", stderr
    written = [line for line in stdout.splitlines() if line.startswith(f"wrote {tmp_path / 'out.mp4'}")]
    assert len(written) == 1 and f"({word}: the " in written[0], stdout
    frames = int(written[0].split(f"({word}: the ")[1].split()[0])
    assert 20 <= frames < 101
    # every output holds the same frames, the video complete under its final name, index first
    out = tmp_path / "out.mp4"
    assert _frames(out) == frames == _masks(tmp_path)
    assert _top_level_boxes(out)[:2] == ["ftyp", "moov"] and not (tmp_path / "out.partial.mp4").exists()
    assert len((tmp_path / "stats.jsonl").read_text().splitlines()) == frames
    assert json.loads((tmp_path / "run.json").read_text())["frames"] == frames


@pytest.mark.slow
def test_kill_9_leaves_a_video_that_plays_all_but_the_last_second(tmp_path):
    proc = _start(_command(tmp_path), read_s=0.08)
    _wait_for_frames(proc, tmp_path, 50)
    proc.kill()
    proc.communicate(timeout=30)
    written = _masks(tmp_path)  # the video gets each frame before the masks do
    partial = tmp_path / "out.partial.mp4"
    assert proc.returncode == -signal.SIGKILL and not (tmp_path / "out.mp4").exists()
    plays = _frames(partial)
    assert written - 2 * FPS <= plays <= written + 1, (plays, written)
    # --stats is written a line at a time: all but the line being written survive
    assert len((tmp_path / "stats.jsonl").read_text().splitlines()) >= written - 1


def _assert_one_line_and_a_playable_partial(proc: subprocess.Popen, tmp_path: Path, reason: str) -> None:
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 2, stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and reason in lines[0], stderr
    assert str(tmp_path / "out.mp4") in lines[0] and "out.partial.mp4" in lines[0]
    plays = _frames(tmp_path / "out.partial.mp4")
    assert plays >= FPS, (plays, lines)  # at least the first second's fragment
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.slow
def test_a_file_size_cap_is_one_line_exit_2_and_a_playable_partial(tmp_path):
    """Writes past 600 kB fail (RLIMIT_FSIZE: EFBIG), as on a full disk; no root needed."""
    args = ["run", str(CLIP), "-o", str(tmp_path / "out.mp4"), "--runtime", "pytorch", "--size", "72x96",
            "--stats", str(tmp_path / "stats.jsonl")]
    proc = _start(args, fsize=600_000)
    _assert_one_line_and_a_playable_partial(proc, tmp_path, "File too large")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux") or not shutil.which("unshare"), reason="needs Linux unshare")
def test_a_full_disk_is_one_line_exit_2_and_a_playable_partial(tmp_path):
    """The output on a 600 kB tmpfs (mounted in a mount namespace of its own, as root)."""
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=600k tmpfs {tmp_path}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.strip()}")
    keep = tmp_path / "kept"  # outside the namespace the folder is the ordinary one: the partial lands here
    keep.mkdir()
    disk = tmp_path / "disk"
    disk.mkdir()
    args = ["run", str(CLIP), "-o", str(disk / "out.mp4"), "--runtime", "pytorch", "--size", "72x96"]
    script = (f'mount -t tmpfs -o size=600k tmpfs {disk} && "$@"; rc=$?; cp -p {disk}/* {keep}/ 2>/dev/null; '
              f"exit $rc")
    proc = _start(args, wrap=["unshare", "-m", "sh", "-c", script, "sh"])
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 2, stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0] and str(disk / "out.mp4") in lines[0], stderr
    assert _frames(keep / "out.partial.mp4") >= FPS and not (keep / "out.mp4").exists()


# The handlers themselves, in this process (no run).

def test_the_handlers_raise_a_keyboard_interrupt_carrying_the_exit_code():
    from rtseg import signals

    before = signal.getsignal(signal.SIGTERM)
    with signals.interrupt_on_signals():
        with pytest.raises(KeyboardInterrupt) as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs in this (the main) thread at the next bytecode
        assert isinstance(caught.value, signals.Interrupted) and caught.value.exit_code == 143
        assert str(caught.value) == "terminated" and signals.exit_code() == 143
        os.kill(os.getpid(), signal.SIGHUP)  # a second one, while the first is being handled: ignored
        time.sleep(0.05)
        assert signals.received() == signal.SIGTERM
        with pytest.raises(signals.Interrupted):  # but Ctrl-C again is a person insisting
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGTERM) is before  # the library's caller gets its handlers back


def test_a_signal_while_deferred_is_recorded_not_raised():
    from rtseg import signals

    with signals.interrupt_on_signals():
        with signals.deferred():
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.05)
        assert signals.received() == signal.SIGHUP and signals.exit_code() == 129
    with signals.interrupt_on_signals():  # each use starts afresh
        assert signals.received() is None and signals.exit_code() == 130

"""``rtseg batch``: inputs and output names, the manifest, reruns, a corrupt input, a full disk,
a stop, a driver killed mid-video and resumed, and a real local Ray instance whose worker is
killed mid-video (retried, every output complete)."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rtseg.fleet import BatchOptions, find_inputs, plan, read_manifest, run_batch
from rtseg.errors import RtsegError

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo" / "camvid_0016E5_val_15fps.mp4"
# PyTorch at a small size: no export into the cache, a fraction of a second a clip.
OPTIONS = BatchOptions.of(runtime="pytorch", size="72x96", threads=1)
CLI_OPTIONS = ["--runtime", "pytorch", "--size", "72x96", "--threads", "1", "-q"]
FRAMES = {"a.mp4": 10, "b.mp4": 8, "sub/b.mp4": 12}


def _write_clip(path: Path, frames: list) -> None:
    import av
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(cv2.resize(f, (160, 120)), format="bgr24")))
        out.mux(stream.encode())


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """clips/{a.mp4, b.mp4, sub/b.mp4} (10, 8, 12 frames of the demo at 120x160) and bad.mp4 (cut short)."""
    import av

    folder = tmp_path_factory.mktemp("clips")
    with av.open(str(DEMO)) as src:
        frames = [f.to_ndarray(format="bgr24") for _, f in zip(range(sum(FRAMES.values())), src.decode(video=0))]
    at = 0
    for name, n in FRAMES.items():
        _write_clip(folder / name, frames[at:at + n])
        at += n
    (folder / "bad.mp4").write_bytes((folder / "a.mp4").read_bytes()[:600])
    return folder


def _frames(path: str | Path) -> int:
    """Frames PyAV decodes from the file (it must open: a complete, playable video)."""
    import av

    with av.open(str(path)) as f:
        return sum(1 for _ in f.decode(video=0))


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if ".tmp" in p.name]


def _check_done(out: Path, clips: Path, records: dict) -> None:
    for name, n in FRAMES.items():
        rec = records[str(clips / name)]
        assert rec["status"] in ("done", "skipped"), rec
        assert rec["frames"] == n and _frames(rec["output"]) == n
    assert not _temporaries(out)


def test_inputs_and_names_mirror_without_collisions(clips, tmp_path):
    out = tmp_path / "out"
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"# clips\n{clips / 'a.mp4'}\n\n{clips / 'sub'}\n")
    (clips / "b.avi").write_bytes(b"")
    try:
        found = find_inputs([str(clips / "*.mp4"), listing, clips / "b.avi", clips / "missing.mp4"], exclude=out)
        assert found == [clips / "a.mp4", clips / "b.mp4", clips / "bad.mp4", clips / "sub" / "b.mp4",
                         clips / "b.avi", clips / "missing.mp4"]
        names = [Path(i.output).relative_to(out.resolve()).as_posix() for i in plan(found, out)]
        assert names == ["a_seg.mp4", "b_mp4_seg.mp4", "bad_seg.mp4", "sub/b_seg.mp4", "b_avi_seg.mp4",
                         "missing_seg.mp4"]
        item = plan(found, out, masks=True, stats=True)[0]
        assert (Path(item.masks).name, Path(item.stats).name) == ("a_masks", "a_stats.jsonl")
    finally:
        (clips / "b.avi").unlink()
    assert find_inputs([clips], exclude=clips / "sub") == [clips / "a.mp4", clips / "b.mp4", clips / "bad.mp4"]
    with pytest.raises(RtsegError, match="matches no file"):
        find_inputs([str(clips / "*.mkv")])


def test_local_batch_manifest_and_rerun(clips, tmp_path):
    out = tmp_path / "out"
    result = run_batch([clips], out, OPTIONS)
    assert [r["status"] for r in result.records] == ["done", "done", "failed", "done"]
    assert result.failed[0]["input"] == str(clips / "bad.mp4") and "corrupt" in result.failed[0]["error"]
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and {"input", "status", "frames", "fps", "wall_s", "output", "error"} <= set(lines[0])
    records = read_manifest(out / "manifest.jsonl")
    _check_done(out, clips, records)
    shares = records[str(clips / "a.mp4")]["classes"]
    assert "Road" in shares and sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
    assert records[str(clips / "a.mp4")]["fps"] > 0 and records[str(clips / "a.mp4")]["error"] is None

    again = run_batch([clips], out, OPTIONS)  # the done ones skipped, the failed one tried again
    assert [r["status"] for r in again.records] == ["skipped", "skipped", "failed", "skipped"]
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 4
    os.unlink(records[str(clips / "b.mp4")]["output"])  # a file gone: that input is done again
    third = run_batch([clips / "a.mp4", clips / "b.mp4"], out, OPTIONS)
    assert [r["status"] for r in third.records] == ["skipped", "done"] and third.ok


def test_cli_exit_codes_name_each_failure(clips, tmp_path):
    from typer.testing import CliRunner

    from rtseg.cli import app

    out = tmp_path / "out"
    runner = CliRunner()
    bad = runner.invoke(app, ["batch", str(clips / "a.mp4"), str(clips / "bad.mp4"), "-d", str(out), *CLI_OPTIONS])
    assert bad.exit_code == 2, bad.output
    assert f"failed: {clips / 'bad.mp4'}: " in bad.output
    good = runner.invoke(app, ["batch", str(clips / "a.mp4"), "-d", str(out), "--masks", *CLI_OPTIONS])
    assert good.exit_code == 0, good.output
    masks = sorted((out / "a_masks").glob("*.png"))
    assert len(masks) == FRAMES["a.mp4"]
    bad_flag = runner.invoke(app, ["batch", str(clips / "a.mp4"), "-d", str(out / "t"), "--temporal", "maybe"])
    assert isinstance(bad_flag.exception, RtsegError) and "--temporal must be auto, on or off" in str(bad_flag.exception)
    assert not (out / "t").exists()  # refused before any video started
    wrong = runner.invoke(app, ["batch", str(clips), "-d", str(out), "--cluster", "spark"])
    assert isinstance(wrong.exception, RtsegError) and "--cluster 'spark'" in str(wrong.exception)  # main(): exit 2


def test_disk_full_fails_that_input_and_starts_no_other(clips, tmp_path, monkeypatch):
    from rtseg.pipeline.sinks import VideoSink

    real = VideoSink.write

    def write(self, packet):
        if self.frames == 4 and self.path.name.startswith(".b_seg.") and self.path.parent.name == "out":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, packet)

    monkeypatch.setattr(VideoSink, "write", write)
    result = run_batch([clips / "a.mp4", clips / "b.mp4", clips / "sub"], tmp_path / "out", OPTIONS)
    assert [r["status"] for r in result.records] == ["done", "failed"]
    assert result.disk_full and result.failed[0]["error"].startswith("disk full")
    assert result.not_started == [str(clips / "sub" / "b.mp4")]
    assert not _temporaries(tmp_path / "out") and not list((tmp_path / "out").glob("b*"))


def test_stop_keeps_what_is_complete(clips, tmp_path):
    stop = threading.Event()

    def on_frame(source: str, frames: int) -> None:
        if source.endswith("b.mp4") and frames == 2:
            stop.set()

    result = run_batch([clips / "a.mp4", clips / "b.mp4", clips / "sub"], tmp_path / "out", OPTIONS, stop=stop,
                       on_frame=on_frame)
    assert result.interrupted and [r["status"] for r in result.records] == ["done"]
    assert result.not_started == [str(clips / "b.mp4"), str(clips / "sub" / "b.mp4")]
    assert not _temporaries(tmp_path / "out") and not (tmp_path / "out" / "b_seg.mp4").exists()


def test_resume_after_the_driver_is_killed(clips, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "rtseg.cli", "batch", str(clips / "a.mp4"), str(clips / "b.mp4"),
               str(clips / "sub"), "-d", str(out), *CLI_OPTIONS]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, mid_video = time.monotonic() + 60, False
    while time.monotonic() < deadline and driver.poll() is None:  # kill it once one is done and the next begun
        if read_manifest(out / "manifest.jsonl") and _temporaries(out):
            mid_video = True
            break
        time.sleep(0.01)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    if mid_video:
        assert _temporaries(out)  # the killed video's partial file, under its temporary name only
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    records = read_manifest(out / "manifest.jsonl")
    _check_done(out, clips, records)
    assert records[str(clips / "a.mp4")]["status"] == "skipped"


def test_sigterm_stops_the_batch_and_says_how_to_resume(clips, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "rtseg.cli", "batch", str(clips / "a.mp4"), str(clips / "sub"),
               str(clips / "b.mp4"), "-d", str(out), *CLI_OPTIONS]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and driver.poll() is None and not read_manifest(out / "manifest.jsonl"):
        time.sleep(0.01)
    driver.send_signal(signal.SIGTERM)
    stdout, stderr = driver.communicate(timeout=60)
    if driver.returncode == 0:
        pytest.skip("the batch ended before SIGTERM came")  # a very fast machine
    assert driver.returncode == 143, stderr
    assert "Resume with: rtseg batch " in stderr
    done = read_manifest(out / "manifest.jsonl")
    assert all(r["status"] == "done" and _frames(r["output"]) == r["frames"] for r in done.values())
    assert not _temporaries(out)


def test_no_ray_names_the_extra(clips, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RtsegError, match=r'pip install "rtseg\[ray\]"'):
        run_batch([clips / "a.mp4"], tmp_path / "out", OPTIONS, cluster="ray")


def _ray_task_pids() -> list[int]:
    """Processes running a batch video as a Ray task (Ray titles a worker ``ray::process_one`` while it runs one)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"ray::process_one"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _kill_a_worker_mid_video(out: Path, done: threading.Event, killed: list) -> None:
    """SIGKILL the first Ray worker seen writing a video (a temporary output with bytes in it)."""
    while not done.is_set() and not killed:
        writing = [p for p in out.rglob("*.tmp*") if p.is_file() and p.stat().st_size > 0] if out.is_dir() else []
        pids = _ray_task_pids() if writing else []
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
        done.wait(0.01)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the Ray worker through /proc (Linux)")
def test_ray_local_cluster_with_a_worker_killed(clips, tmp_path, monkeypatch):
    """A local Ray instance (127.0.0.1, 2 CPUs); the first worker seen writing a video is killed
    (SIGKILL): its task is run again, every output ends complete, the corrupt clip the only failure."""
    ray = pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = tmp_path / "out"
    done, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_a_worker_mid_video, args=(out, done, killed), daemon=True)
    killer.start()
    try:
        result = run_batch([clips], out, OPTIONS, cluster="ray", cpus=2, retries=2)
    finally:
        done.set()
        killer.join(timeout=5)
    assert not ray.is_initialized()  # shut down at the end
    assert killed  # a worker did die mid-video
    assert [r["status"] for r in result.records] == ["done", "done", "failed", "done"]
    assert [r["input"] for r in result.failed] == [str(clips / "bad.mp4")]
    _check_done(out, clips, read_manifest(out / "manifest.jsonl"))
    assert sorted(p.name for p in out.rglob("*_seg.mp4")) == ["a_seg.mp4", "b_seg.mp4", "b_seg.mp4"]

"""``rtseg run`` / ``webcam`` / ``bench`` end to end, as a user runs them (subprocesses: exit codes,
one-line errors, Ctrl-C). Most use the pipeline tests' fake engine patched in for ``--engine``,
so they test the app, not a network; one runs a real checkpoint."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "tests" / "pipeline"
sys.path.insert(0, str(FAKES))
from pipeline_fakes import count_frames, write_video  # noqa: E402
from tests.conftest import run_main  # noqa: E402

# Patch the one place runs open engines (rtseg.pipeline.context.open_engine) with the fake engine
# (its arguments come from the FAKE_ENGINE environment variable as JSON), then run the real console
# entry point.
DRIVER = """
import json, os, sys
sys.path.insert(0, {fakes!r})
from pipeline_fakes import FakeEngine
import rtseg.pipeline.context as context
kw = json.loads(os.environ.get("FAKE_ENGINE", "{{}}"))
context.open_engine = lambda *a, **k: FakeEngine(**kw, streams=k.get("streams") or 1)
from rtseg.cli import main
sys.argv = ["rtseg"] + sys.argv[1:]
main()
"""


def rtseg_subprocess(*args, cwd: Path, fake: dict | None = None, timeout: float = 300, real: bool = False):
    env = {**os.environ, "FAKE_ENGINE": json.dumps(fake or {}), "COLUMNS": "120"}
    env.pop("DISPLAY", None)
    cmd = [sys.executable, "-m", "rtseg.cli"] if real else [sys.executable, "-c", DRIVER.format(fakes=str(FAKES))]
    return subprocess.run([*cmd, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def rtseg(monkeypatch, capfd, tmp_path):
    """Run the console entry point in this process (a subprocess costs a torch import each):
    ``rtseg(*args, fake={...})`` -> Result(returncode, stdout, stderr)."""
    from pipeline_fakes import FakeEngine

    import rtseg.pipeline.context as context

    def call(*args, fake: dict | None = None) -> Result:
        monkeypatch.setattr(context, "open_engine",
                            lambda *a, **k: FakeEngine(**(fake or {}), streams=k.get("streams") or 1))
        monkeypatch.setenv("COLUMNS", "120")
        monkeypatch.chdir(tmp_path)
        return Result(*run_main(args, monkeypatch, capfd))  # fd level: OpenCV's and FFmpeg's own messages too

    return call


def test_run_writes_a_video_with_the_inputs_frames_and_masks(tmp_path, rtseg):
    clip = write_video(tmp_path / "clip.mp4", 14, size=(48, 64), fps=12)
    res = rtseg("run", clip, "--masks", tmp_path / "masks", "--view", "side-by-side")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "clip_seg.mp4"  # the default name, in the working directory
    assert count_frames(out) == (14, 12.0, (48, 128))
    assert len(list((tmp_path / "masks").glob("*.png"))) == 14
    for stage in ("read", "transform", "infer", "post", "write"):
        assert stage in res.stdout
    assert f"wrote {out}" in res.stdout.replace("\n", "")


@pytest.mark.parametrize("sequential", [False, True])
def test_run_image_folder_keeps_every_frame(tmp_path, rtseg, sequential):
    for i in range(9):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((40, 60, 3), 20 * i, np.uint8))
    args = ["run", tmp_path, "-o", tmp_path / "o.avi", "--queue-size", "1"] + (["--sequential"] if sequential else [])
    res = rtseg(*args)
    assert res.returncode == 0, res.stderr
    assert count_frames(tmp_path / "o.avi")[0] == 9


@pytest.mark.parametrize("args, message", [
    (["run", "missing.mp4"], "no such file or folder: missing.mp4"),
    (["run", "notes.mp4"], "is not a video OpenCV can read"),
    (["run", "clip.mp4", "--view", "heatmap"], "--view must be one of overlay, mask, side-by-side"),
    (["run", "clip.mp4", "--alpha", "2"], "--alpha must be in 0..1"),
    (["run", "clip.mp4", "-o", "out.gif"], "unsupported video type '.gif'"),
    (["run", "clip.mp4", "--max-frames", "-1"], "--max-frames -1 is not allowed; use >= 0 (0 = all frames)"),
    (["run", "clip.mp4", "-o", "clip.mp4"], "--output clip.mp4 is the input file itself"),
    (["run", "clip.mp4", "--show"], "--show needs a display and this session has none"),
    (["webcam", "0"], "rtseg webcam needs a display and this session has none"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, rtseg, args, message, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)  # as over SSH: refused before any window is tried
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    (tmp_path / "notes.mp4").write_text("not a video " * 50)
    write_video(tmp_path / "clip.mp4", 3)
    res = rtseg(*args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    # the last line is ours (in this process FFmpeg may already have printed its own: see the next test)
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last


@pytest.mark.parametrize("watched", [["--serve", "0"], ["-o", "rtsp://127.0.0.1:8554/seg"], ["--rerun", "x.rrd"]])
def test_webcam_watched_from_elsewhere_needs_no_display(rtseg, monkeypatch, watched, tmp_path):
    """On a robot over SSH: the page, an RTSP server or Rerun shows the run, so no window is
    needed: the run gets past the display check (to the camera, missing here)."""
    if watched[0] == "--rerun":
        pytest.importorskip("rerun")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.chdir(tmp_path)
    res = rtseg("webcam", "57", *watched)
    assert res.returncode == 2 and "needs a display" not in res.stderr
    assert "camera 57 cannot be opened" in res.stderr.strip().splitlines()[-1]


def test_a_missing_camera_is_one_line_where_a_display_exists(rtseg, monkeypatch):
    monkeypatch.setenv("DISPLAY", ":99")  # the display check passes; the camera does not open
    res = rtseg("webcam", "57")
    assert res.returncode == 2 and res.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "camera 57 cannot be opened" in res.stderr


def test_max_frames_0_means_all_and_version_prints(tmp_path, rtseg):
    write_video(tmp_path / "clip.mp4", 5)
    res = rtseg("run", tmp_path / "clip.mp4", "-o", tmp_path / "o.mp4", "--max-frames", "0")
    assert res.returncode == 0, res.stderr
    assert count_frames(tmp_path / "o.mp4")[0] == 5
    res = rtseg("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"rtseg {__import__('rtseg').__version__}"


@pytest.mark.slow
def test_a_fresh_process_prints_exactly_one_line(tmp_path):
    """FFmpeg's and OpenCV's own messages ("moov atom not found") are silenced: one line, exit 2."""
    (tmp_path / "notes.mp4").write_text("not a video " * 50)
    res = rtseg_subprocess("run", "notes.mp4", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: notes.mp4 is not a video OpenCV can read (tried FFmpeg); use a video file, an image folder or glob, "
        "a camera index or a stream URL"]


def test_a_failing_stage_is_one_line_naming_it_and_exit_1(tmp_path, rtseg):
    clip = write_video(tmp_path / "clip.mp4", 20)
    res = rtseg("run", clip, fake={"fail": {"infer": 4}})
    assert res.returncode == 1
    assert res.stderr.strip() == "error: infer stage failed: Boom: injected fault in infer at frame 4"


@pytest.mark.slow
def test_ctrl_c_stops_within_seconds_and_leaves_a_playable_video(tmp_path):
    for i in range(400):
        cv2.imwrite(str(tmp_path / f"{i:04d}.png"), np.full((48, 64, 3), i % 200, np.uint8))
    out = tmp_path / "out.mp4"
    env = {**os.environ, "FAKE_ENGINE": json.dumps({"delay": {"infer": 0.05}}), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER.format(fakes=str(FAKES)), "run", str(tmp_path), "-o",
                             str(out)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = tmp_path / "out.partial.mp4"
    deadline = time.monotonic() + 120
    while not partial.exists() and time.monotonic() < deadline:  # the run is under way
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    lines = []
    for line in proc.stdout:  # the run has stopped and the video is final once "wrote" is printed
        lines.append(line)
        if line.startswith("wrote "):
            stopped_after = time.monotonic() - t0
            break
    else:
        pytest.fail("no 'wrote' line: " + "".join(lines) + proc.stderr.read())
    # (the interpreter's own exit with torch loaded can take seconds more on a loaded machine: not timed)
    stdout, stderr = proc.communicate(timeout=120)
    assert stopped_after < 5, f"Ctrl-C took {stopped_after:.1f} s to stop the run"
    assert proc.returncode == 130, stderr
    assert "interrupted" in "".join(lines) + stdout
    frames, fps, size = count_frames(out)
    assert 0 < frames < 400 and size == (48, 64) and not partial.exists()


@pytest.mark.slow
def test_run_with_a_real_checkpoint(tmp_path, tiny_checkpoint):
    engines = pytest.importorskip("rtseg.engines")
    if not hasattr(engines, "open_engine"):
        pytest.skip("rtseg.engines.open_engine is not there yet")
    clip = write_video(tmp_path / "clip.mp4", 3, size=(96, 128))
    res = rtseg_subprocess("run", clip, "--engine", tiny_checkpoint, "--size", "64x96", "-o", tmp_path / "o.mp4",
                           cwd=tmp_path, real=True)
    assert res.returncode == 0, res.stderr
    assert count_frames(tmp_path / "o.mp4") == (3, 12.0, (96, 128))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ddrnet23_slim", "bisenetv2", "unet"])
def test_run_each_network_with_the_default_runtime(tmp_path, name):
    """Every network through the whole app as a user runs it: a checkpoint of that network, the
    default runtime (exported once into the cache, then the fastest CPU runtime), a video out."""
    import torch

    from rtseg import create_model
    from rtseg.formats.checkpoint import save_checkpoint
    from rtseg.meta import ModelMeta

    torch.manual_seed(0)
    args = {"width": 8} if name == "unet" else {}
    weights = save_checkpoint(tmp_path / f"{name}.pt", create_model(name, num_classes=11, **args).eval(),
                              ModelMeta.for_dataset("camvid", model=name, model_args=args, input_size=(64, 96)))
    clip = write_video(tmp_path / "clip.mp4", 3, size=(96, 128))
    res = rtseg_subprocess("run", clip, "--engine", weights, "-o", tmp_path / "o.mp4", "--json", tmp_path / "run.json",
                           cwd=tmp_path, real=True)
    assert res.returncode == 0, res.stderr
    assert count_frames(tmp_path / "o.mp4") == (3, 12.0, (96, 128))
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["frames"] == 3 and summary["runtime"] in ("openvino", "onnxruntime")


def test_bench_writes_the_design_json(tmp_path, rtseg):
    clip = write_video(tmp_path / "clip.mp4", 12, size=(48, 64))
    # one stream: with two (the default where auto picks OpenVINO or ONNX Runtime) "engine_streams" is added
    res = rtseg("bench", clip, "--frames", "8", "--rounds", "2", "--streams", "1", "--json", tmp_path / "b.json")
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "b.json").read_text())
    assert set(data) == {"engine", "device", "model", "source", "source_size", "input_size", "frames", "stages_ms",
                         "pipelined", "sequential", "engine_only", "rounds", "streams", "precision", "machine",
                         "temporal"}  # auto, the default: off here (the fake engine gives no scores), so no temporal_ms
    assert list(data["stages_ms"]) == ["read", "transform", "infer", "post", "write"] and data["temporal"] == "off"
    assert data["streams"] == 1  # as asked: so no "engine_streams" either
    assert data["machine"]["cores"] >= 1 and data["machine"]["cpu"] and data["precision"] == "fp32"
    rounds = data["rounds"]
    assert rounds["count"] == 2 and all(len(v) == 2 for v in rounds["fps"].values())
    # The headline figures are the medians of the rounds (of two: their mean).
    assert data["pipelined"]["fps"] == pytest.approx(sum(rounds["fps"]["pipelined"]) / 2, abs=2e-3)
    assert data["engine_only"]["fps"] == pytest.approx(sum(rounds["fps"]["engine_only"]) / 2, abs=2e-3)
    assert list(data["stages_ms"]) == ["read", "transform", "infer", "post", "write"]
    assert all(set(s) == {"mean", "p50", "p95"} for s in data["stages_ms"].values())
    assert set(data["pipelined"]) == {"fps", "wall_s", "latency_ms_p50"} and set(data["sequential"]) == {"fps", "wall_s"}
    assert data["frames"] == 8 and data["source_size"] == [48, 64] and data["input_size"] == [24, 32]
    assert data["engine"] == "fake" and data["engine_only"]["fps"] > 0
    assert "throughput" in res.stdout


def test_bench_with_streams_measures_the_engine_with_its_streams_busy(tmp_path, rtseg):
    clip = write_video(tmp_path / "clip.mp4", 12, size=(48, 64))
    res = rtseg("bench", clip, "--frames", "8", "--rounds", "2", "--streams", "2", "--json", tmp_path / "b.json")
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["streams"] == 2 and data["engine_streams"]["streams"] == 2 and data["engine_streams"]["fps"] > 0
    assert len(data["rounds"]["fps"]["engine_streams"]) == 2 and data["rounds"]["pipelined_vs_engine_streams"] > 0
    assert "engine alone, 2 streams" in res.stdout and "with its 2 streams busy" in res.stdout


def test_bench_refuses_zero_rounds(tmp_path, rtseg):
    clip = write_video(tmp_path / "clip.mp4", 4, size=(48, 64))
    res = rtseg("bench", clip, "--frames", "4", "--rounds", "0")
    assert res.returncode == 2 and "--rounds" in res.stderr and "Traceback" not in res.stderr


def test_the_legend_is_drawn_in_a_corner_unless_asked_not_to(tmp_path, rtseg):
    write_video(tmp_path / "clip.mp4", 2, size=(240, 320))
    for name, extra in (("with", []), ("without", ["--no-legend"])):
        res = rtseg("run", tmp_path / "clip.mp4", "-o", tmp_path / f"{name}.mp4", *extra)
        assert res.returncode == 0, res.stderr
    first = [cv2.VideoCapture(str(tmp_path / f"{n}.mp4")).read()[1].astype(int) for n in ("with", "without")]
    diff = np.abs(first[0] - first[1]).max(axis=2) > 24
    ys, xs = np.nonzero(diff)
    assert len(ys) > 100  # the legend is there in one and not the other
    assert ys.max() < 240 * 0.7 and xs.max() < 320 * 0.5  # in the top-left corner only


@pytest.mark.slow
def test_a_truncated_video_writes_every_frame_that_decodes_then_warns_in_one_line(tmp_path):
    full = write_video(tmp_path / "full.avi", 60, fourcc="MJPG")
    data = full.read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: int(len(data) * 0.7)])
    decodable = 0
    cap = cv2.VideoCapture(str(tmp_path / "cut.avi"))
    while cap.read()[0]:
        decodable += 1
    cap.release()
    assert 0 < decodable < 60
    res = rtseg_subprocess("run", tmp_path / "cut.avi", "-o", tmp_path / "out.mp4", cwd=tmp_path)  # logging as a user sees it
    assert res.returncode == 0, res.stderr
    assert count_frames(tmp_path / "out.mp4")[0] == decodable  # none of the frames in flight lost
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and f"ended after {decodable} of its 60 frames" in warnings[0]
    assert "WARNING" not in res.stderr  # the CLI's own format, not logging's


def test_start_end_and_stride_through_the_cli(tmp_path, rtseg):
    write_video(tmp_path / "clip.mp4", 24, fps=12.0)
    res = rtseg("run", tmp_path / "clip.mp4", "-o", tmp_path / "part.mp4", "--start", "0.5s", "--end", "20",
                "--stride", "2", "--masks", tmp_path / "m")
    assert res.returncode == 0, res.stderr
    frames, fps, _ = count_frames(tmp_path / "part.mp4")
    assert frames == 7 and fps == pytest.approx(6.0, abs=0.05)  # frames 6, 8, ..., 18 at half the rate
    assert sorted(p.stem for p in (tmp_path / "m").glob("*.png"))[:2] == ["000006", "000008"]
    res = rtseg("run", tmp_path / "clip.mp4", "--start", "5s")
    assert res.returncode == 2 and "--start 5s is past the end of clip (24 frames at 12 fps)" in res.stderr


def test_images_in_images_out(tmp_path, rtseg):
    folder = tmp_path / "shots"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"shot{i}.jpg"), np.full((40, 56, 3), 40 * i, np.uint8))
    res = rtseg("run", folder, "-o", str(tmp_path / "out") + "/")  # a folder: an image per input, same names
    assert res.returncode == 0, res.stderr
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["shot0.jpg", "shot1.jpg", "shot2.jpg"]
    assert cv2.imread(str(tmp_path / "out" / "shot1.jpg")).shape == (40, 56, 3)
    res = rtseg("run", folder / "shot2.jpg")  # one image: one image, named after it, here
    assert res.returncode == 0 and (tmp_path / "shot2_seg.jpg").is_file(), res.stderr
    res = rtseg("run", folder, "-o", tmp_path / "one.png")
    assert res.returncode == 2 and "is one image but shots has 3 frames; use -o DIR/" in res.stderr
    res = rtseg("run", folder, "-o", str(folder) + "/")
    assert res.returncode == 2 and "is the input folder itself" in res.stderr
    res = rtseg("run", folder, "--fps", "5", "-o", tmp_path / "slow.mp4")
    assert res.returncode == 0 and count_frames(tmp_path / "slow.mp4")[:2] == (3, pytest.approx(5.0, abs=0.01))


def test_stats_write_each_frames_class_shares_and_a_summary(tmp_path, rtseg):
    write_video(tmp_path / "clip.mp4", 4)
    res = rtseg("run", tmp_path / "clip.mp4", "-o", tmp_path / "o.mp4", "--stats", tmp_path / "s.jsonl")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == [0, 1, 2, 3]
    for line in lines:  # shares of the frame's pixels, classes present only
        assert abs(sum(line["shares"].values()) - 1) < 1e-3 and all(v > 0 for v in line["shares"].values())
    assert "classes over 4 frames" in res.stdout and "pixels %" in res.stdout


@pytest.mark.slow
def test_show_without_a_display_is_one_line_in_a_real_process_and_writes_nothing(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", 3)
    res = rtseg_subprocess("run", clip, "--show", "-o", tmp_path / "o.mp4", cwd=tmp_path)  # DISPLAY removed
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == ["error: --show needs a display and this session has none (DISPLAY "
                                               "and WAYLAND_DISPLAY are unset); run without --show: the overlay "
                                               "video is written all the same"]
    assert not (tmp_path / "o.mp4").exists()

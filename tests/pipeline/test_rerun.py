"""--rerun: a run logged to Rerun. A run of the demo clip saved to .rrd and read back (its frames,
class names and colours, confidence, stage times, on the capture time); rtseg.stream's frames on a
wall-clock timeline; a real Rerun server receiving a run; and the refusals, each one line before
any output file exists: a bad value, a viewer that does not answer, a missing SDK (tested without
the SDK too)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_fakes import FakeEngine, marked_frame  # noqa: E402

from rtseg.errors import RtsegError  # noqa: E402
from rtseg.pipeline.rerun_sink import parse_rerun  # noqa: E402
from tests.conftest import run_main  # noqa: E402

NO_SDK = "--rerun's tests need the Rerun SDK: pip install 'rtseg[rerun]'"


@pytest.fixture
def sdk():
    return pytest.importorskip("rerun", reason=NO_SDK)


@pytest.fixture
def read_rrd(sdk):
    """``read_rrd(path)`` -> {entity path: [row dicts]} of the file's one recording (static rows too)."""
    chunk = pytest.importorskip("rerun.chunk", reason="reading an .rrd back needs rerun-sdk's rerun.chunk (0.41)")
    import pyarrow as pa

    def read(path: Path) -> dict[str, list[dict]]:
        reader = chunk.RrdReader(str(path))
        assert len(reader.recordings()) == 1
        rows: dict[str, list[dict]] = {}
        for c in reader.stream():
            batch = c.to_record_batch()
            columns = {}
            for name, column in zip(batch.schema.names, batch.columns):
                if pa.types.is_duration(column.type) or pa.types.is_timestamp(column.type):
                    columns[name] = [(str(column.type), v) for v in column.cast(pa.int64()).to_pylist()]  # ns
                else:
                    columns[name] = column.to_pylist()
            rows.setdefault(c.entity_path, []).extend(dict(zip(columns, values)) for values in zip(*columns.values()))
        return rows

    return read


def _labels(rows: dict[str, list[dict]]) -> list[tuple[int, str, int]]:
    """(id, name, RGBA as one int) of each class in the annotation context logged at the root."""
    (context,) = [r["AnnotationContext:context"] for r in rows["/"]]
    return [(c["class_id"], c["class_description"]["info"]["label"], c["class_description"]["info"]["color"])
            for c in context[0]]


def test_a_run_of_the_demo_clip_saved_to_rrd_reads_back(read_rrd, monkeypatch, capfd, tmp_path):
    from rtseg.classes import DATASETS

    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(["run", "--runtime", "pytorch", "--max-frames", "6", "--confidence", "conf",
                               "--rerun", "run.rrd", "-o", "out.mp4", "-q"], monkeypatch, capfd)
    assert code == 0, err
    assert "wrote run.rrd (Rerun recording, 6 frames)" in out
    rows = read_rrd(tmp_path / "run.rrd")
    for entity in ("/video/frame", "/video/classes", "/confidence", "/timings/infer", "/timings/latency"):
        assert len(rows[entity]) == 6, entity  # one row per frame the run wrote
    names, palette, _ = DATASETS["camvid"]
    assert _labels(rows) == [(i, n, (r << 24) | (g << 16) | (b << 8) | 255)
                             for i, (n, (r, g, b)) in enumerate(zip(names, palette))]
    frames = rows["/video/frame"]
    assert [r["frame"] for r in frames] == list(range(6))
    fps = 15.0  # the demo clip's
    assert [r["capture_time"] for r in frames] == [("duration[ns]", round(i / fps * 1e9)) for i in range(6)]
    assert [r["EncodedImage:media_type"] for r in frames] == [["image/jpeg"]] * 6
    jpeg = np.frombuffer(bytes(frames[0]["EncodedImage:blob"][0]), np.uint8)
    assert cv2.imdecode(jpeg, cv2.IMREAD_COLOR).shape == (360, 480, 3)  # the frame as read
    size = {(f["height"], f["width"]) for r in rows["/video/classes"] for f in r["SegmentationImage:format"]}
    assert size == {(360, 480)}  # the class map at the frame's size: the viewer draws it over the frame
    assert {"/timings/read", "/timings/transform", "/timings/post"} <= set(rows)


def test_stream_logs_stamped_frames_on_a_wall_clock_timeline(read_rrd, monkeypatch, tmp_path):
    import rtseg
    import rtseg.pipeline.context as context

    monkeypatch.setattr(context, "open_engine", lambda *a, **k: FakeEngine())
    t0 = 1_750_000_000.0  # 2025: a wall-clock capture time, as a camera's or a robot's clock gives
    frames = [(marked_frame(i), t0 + i / 10) for i in range(5)]
    results = list(rtseg.stream(frames, rerun=str(tmp_path / "s.rrd"), device="cpu", view=None))
    assert len(results) == 5
    rows = read_rrd(tmp_path / "s.rrd")
    stamps = [r["capture_time"] for r in rows["/video/classes"]]
    assert [kind for kind, _ in stamps] == ["timestamp[ns]"] * 5
    assert [ns for _, ns in stamps] == pytest.approx([(t0 + i / 10) * 1e9 for i in range(5)], abs=1e3)
    assert "/confidence" not in rows  # no class scores kept: none logged
    assert len(_labels(rows)) == 251  # the fake engine's classes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.filterwarnings("ignore:RRD file has no footer")  # the server's file, read while it is written
def test_a_rerun_server_receives_the_run(read_rrd, monkeypatch, capfd, tmp_path):
    """The viewer path end to end: Rerun's own server (the viewer binary, headless, saving what it
    receives) takes the run sent to --rerun HOST:PORT."""
    import rerun_cli

    binary = Path(rerun_cli.__file__).parent / ("rerun.exe" if sys.platform == "win32" else "rerun")
    if not binary.is_file():
        pytest.skip(f"no Rerun viewer binary at {binary}")
    import rtseg.pipeline.context as context

    monkeypatch.setattr(context, "open_engine", lambda *a, **k: FakeEngine(streams=k.get("streams") or 1))
    monkeypatch.chdir(tmp_path)
    port, saved = _free_port(), tmp_path / "received.rrd"
    server = subprocess.Popen([str(binary), "--port", str(port), "--save", str(saved)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env={**os.environ, "RERUN_ANALYTICS": "0"})
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # listening?
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        code, out, err = run_main(["run", _clip(tmp_path, 7), "--rerun", f"127.0.0.1:{port}", "-q"], monkeypatch,
                                  capfd)
        assert code == 0, err
        assert f"logged 7 frames to the Rerun viewer at rerun+http://127.0.0.1:{port}/proxy" in out
        frames = 0
        while time.monotonic() < deadline and frames < 7:  # the server writes what it received as it comes
            time.sleep(0.2)
            frames = len(read_rrd(saved).get("/video/frame", [])) if saved.is_file() and saved.stat().st_size else 0
        assert frames == 7
    finally:
        server.terminate()
        server.wait(timeout=10)


def _clip(folder: Path, n: int) -> Path:
    from pipeline_fakes import write_video

    return write_video(folder / "clip.mp4", n, size=(48, 64), fps=12)


@pytest.mark.parametrize("text, kind, where", [
    ("run.rrd", "file", "run.rrd"),
    ("out/Run.RRD", "file", "out/Run.RRD"),
    ("9876", "viewer", "rerun+http://127.0.0.1:9876/proxy"),
    ("robot.local:9000", "viewer", "rerun+http://robot.local:9000/proxy"),
    ("[::1]:9876", "viewer", "rerun+http://[::1]:9876/proxy"),
    ("rerun+http://10.0.0.2:9876/proxy", "viewer", "rerun+http://10.0.0.2:9876/proxy"),
    ("spawn", "spawn", "rerun+http://127.0.0.1:9876/proxy"),
])
def test_parse_rerun(text, kind, where):
    target = parse_rerun(text)
    assert (target.kind, target.where, target.given) == (kind, where, text)


@pytest.mark.parametrize("text", ["run.mp4", "host:", "99999", "http://host:9876", "rerun+http://:9876", "x:y"])
def test_a_bad_value_is_one_line_naming_the_flag(text):
    from rtseg.pipeline.spec import Outputs

    with pytest.raises(RtsegError, match=r"^--rerun .* is not allowed; use FILE\.rrd") as info:
        Outputs(rerun=text)
    assert "\n" not in str(info.value)


def _not_a_viewer(server: socket.socket) -> None:
    """Answers every connection as an HTTP/1.1 server would, not as Rerun's gRPC server does."""
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.recv(64)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")


@pytest.mark.parametrize("peer, why", [("nothing", "connection refused"),
                                       ("http", "something answers, but not as a Rerun viewer does")])
def test_a_viewer_that_does_not_answer_refuses_the_run_before_any_file(peer, why, sdk, monkeypatch, capfd, tmp_path):
    import rtseg.pipeline.context as context

    monkeypatch.setattr(context, "open_engine", lambda *a, **k: FakeEngine(streams=k.get("streams") or 1))
    monkeypatch.chdir(tmp_path)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    if peer == "http":
        server.listen(4)
        threading.Thread(target=_not_a_viewer, args=(server,), daemon=True).start()
    else:
        server.close()
    try:
        code, out, err = run_main(["run", _clip(tmp_path, 3), "--rerun", f"127.0.0.1:{port}", "-o", "out.mp4",
                                   "--masks", "masks"], monkeypatch, capfd)
    finally:
        server.close()
    assert code == 2
    assert err.strip() == (f"error: --rerun 127.0.0.1:{port}: no Rerun viewer there ({why}); start one with: rerun, "
                           "or use --rerun spawn, or --rerun run.rrd to save a file")
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "masks").exists()


def test_a_missing_folder_refuses_the_run_before_any_file(sdk, monkeypatch, capfd, tmp_path):
    import rtseg.pipeline.context as context

    monkeypatch.setattr(context, "open_engine", lambda *a, **k: FakeEngine(streams=k.get("streams") or 1))
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(["run", _clip(tmp_path, 3), "--rerun", "no/such/run.rrd", "-o", "out.mp4"],
                              monkeypatch, capfd)
    assert (code, err.strip()) == (2, "error: --rerun no/such/run.rrd: folder no/such does not exist")
    assert not (tmp_path / "out.mp4").exists()




def test_without_the_sdk_rerun_is_one_line_before_anything_opens(tmp_path, blocked_env):
    env = blocked_env("rerun")  # a fresh process where `import rerun` fails, as where the SDK is not installed
    proc = subprocess.run([sys.executable, "-m", "rtseg.cli", "run", "--rerun", "run.rrd", "-o", "out.mp4"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "error: --rerun needs the Rerun SDK: pip install 'rtseg[rerun]'"
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "run.rrd").exists()
    # the same line from Python, at the call
    code = ("import rtseg\ntry:\n    rtseg.stream(rerun='run.rrd')\nexcept rtseg.RtsegError as exc:\n"
            "    print(json.dumps(str(exc)))")
    proc = subprocess.run([sys.executable, "-c", "import json\n" + code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert json.loads(proc.stdout) == "--rerun needs the Rerun SDK: pip install 'rtseg[rerun]'", proc.stderr

"""The export cache behind --runtime for a .pt (rtseg/engines/cache.py): a miss exports once,
a hit reuses, a changed key or a corrupt entry is exported again, an unwritable cache falls
back to a temporary folder, and two processes exporting at once never read a half-written file."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rtseg._version
from rtseg import load_engine
from rtseg.engines import cache
from rtseg.formats.onnx_meta import read_onnx_meta

SIZE = (64, 96)  # small: an export takes about a second


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("RTSEG_CACHE", str(folder))
    monkeypatch.setattr(cache._fallback, "folder", None)
    return folder


@pytest.fixture
def exports(monkeypatch) -> list:
    """Counts the exports the cache makes."""
    calls = []
    real = cache._export

    def counted(*a, **k):
        calls.append(a)
        return real(*a, **k)

    monkeypatch.setattr(cache, "_export", counted)
    return calls


def test_a_miss_exports_once_and_a_hit_reuses_it(tiny_checkpoint, cache_dir, exports):
    notes = []
    first = cache.cached_artifact(tiny_checkpoint, "onnxruntime", SIZE, note=notes.append)
    assert first.parent == cache_dir and first.suffix == ".onnx" and len(exports) == 1
    assert len(notes) == 1 and notes[0].startswith("exporting fastscnn_untrained.pt to ONNX at 64x96 for onnxruntime")
    meta = read_onnx_meta(first)
    assert meta.input_size == SIZE and meta.extra["cache_key"] == cache.cache_key(tiny_checkpoint, "onnxruntime", SIZE)
    again = cache.cached_artifact(tiny_checkpoint, "onnxruntime", SIZE, note=notes.append)
    assert again == first and len(exports) == 1 and len(notes) == 1  # nothing said, nothing exported
    other = cache.cached_artifact(tiny_checkpoint, "onnxruntime", (96, 64), note=notes.append)
    assert other != first and len(exports) == 2  # the size is part of the key
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted([first.name, other.name])  # no temporary files left


def test_changed_weights_or_a_new_rtseg_version_make_a_new_entry(tiny_checkpoint, cache_dir, exports, tmp_path, monkeypatch):
    first = cache.cached_artifact(tiny_checkpoint, "openvino", SIZE, note=lambda _: None)
    monkeypatch.setattr(rtseg._version, "__version__", "99.0")
    second = cache.cached_artifact(tiny_checkpoint, "openvino", SIZE, note=lambda _: None)
    assert second != first and len(exports) == 2
    changed = tmp_path / "fastscnn_untrained.pt"
    changed.write_bytes(tiny_checkpoint.read_bytes() + b"\0")  # another file content, same name
    assert cache.cached_artifact(changed, "openvino", SIZE, note=lambda _: None) not in (first, second)


def test_a_corrupt_or_stale_entry_is_exported_again(tiny_checkpoint, cache_dir, exports):
    notes = []
    entry = cache.cached_artifact(tiny_checkpoint, "onnxruntime", SIZE, note=notes.append)
    entry.write_bytes(b"not an onnx file")  # corrupt
    rebuilt = cache.cached_artifact(tiny_checkpoint, "onnxruntime", SIZE, note=notes.append)
    assert rebuilt == entry and len(exports) == 2 and "unreadable or stale" in notes[1]
    assert read_onnx_meta(rebuilt).input_size == SIZE
    # stale: a valid rtseg ONNX under the entry's name but made for another key (e.g. other weights)
    other = cache.cached_artifact(tiny_checkpoint, "onnxruntime", (96, 64), note=notes.append)
    entry.write_bytes(other.read_bytes())
    cache.cached_artifact(tiny_checkpoint, "onnxruntime", SIZE, note=notes.append)
    assert len(exports) == 4 and read_onnx_meta(entry).input_size == SIZE


def test_an_unwritable_cache_falls_back_to_a_temporary_folder_with_a_note(tiny_checkpoint, tmp_path, monkeypatch, exports):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RTSEG_CACHE", str(blocker / "cache"))  # cannot be created, even by root
    monkeypatch.setattr(cache._fallback, "folder", None)
    notes = []
    path = cache.cached_artifact(tiny_checkpoint, "onnxruntime", SIZE, note=notes.append)
    assert path.is_file() and not str(path).startswith(str(blocker))
    assert notes[0].startswith(f"note: the cache {blocker / 'cache'} is not writable") and len(notes) == 2
    engine = load_engine(tiny_checkpoint, runtime="onnxruntime", size=SIZE, note=notes.append)
    assert engine.name == "onnxruntime" and len(exports) == 1  # the same temporary folder, reused in the process


def test_two_processes_exporting_at_once_both_get_a_complete_entry(tiny_checkpoint, cache_dir):
    code = ("import sys; from rtseg.engines.cache import cached_artifact; from rtseg.formats.onnx_meta import read_onnx_meta; "
            f"p = cached_artifact(sys.argv[1], 'onnxruntime', {SIZE}, note=lambda _: None); "
            "read_onnx_meta(p); print(p)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tiny_checkpoint)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    paths = {out.strip() for out, _ in results}
    assert len(paths) == 1
    assert [p.name for p in cache_dir.iterdir()] == [Path(paths.pop()).name]  # one entry, no temporary files


def test_load_engine_runs_a_pt_on_each_runtime_with_the_same_ids(tiny_checkpoint, cache_dir, street_frame):
    frame = np.ascontiguousarray(street_frame[:256, :384])
    torch_ids = load_engine(tiny_checkpoint, size=SIZE).predict(frame)
    for runtime in ("onnxruntime", "openvino"):
        if runtime == "openvino":
            pytest.importorskip("openvino")
        engine = load_engine(tiny_checkpoint, runtime=runtime, size=SIZE, note=lambda _: None)
        assert engine.name == runtime and engine.input_size == SIZE
        agree = (engine.predict(frame) == torch_ids).mean()
        assert agree >= (0.999 if runtime == "onnxruntime" else 0.95)  # OpenVINO may run bf16


def test_resolve_runtime_picks_by_device_and_refuses_what_cannot_run(monkeypatch):
    import importlib.util

    from rtseg.engines import resolve_runtime
    from rtseg.errors import RtsegError

    have = {"openvino": True, "tensorrt": False}
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if have.get(name) else
                        (None if name in have else real_find(name, *a)))
    assert resolve_runtime("w.pt", "auto", "cpu") == "openvino" and resolve_runtime(None, None, "cpu") == "openvino"
    assert resolve_runtime("w.pt", "auto", "cuda") == "pytorch"
    have["tensorrt"] = True
    assert resolve_runtime("w.pt", "auto", "cuda") == "tensorrt"
    have["openvino"] = False
    assert resolve_runtime("w.pt", "auto", "cpu") == "onnxruntime"
    assert resolve_runtime("w.plan", "auto", "cuda") == "tensorrt"
    assert resolve_runtime("w.pt", "pytorch", "cpu") == "pytorch"
    for path, runtime in (("w.onnx", "pytorch"), ("w.plan", "openvino"), ("w.pt", "tflite")):
        with pytest.raises(RtsegError):
            resolve_runtime(path, runtime, "cpu")


def test_a_cache_that_fails_mid_export_falls_back_to_a_temporary_folder(tiny_checkpoint, cache_dir, monkeypatch):
    real, calls = cache._export, []

    def full_disk_once(weights, runtime, size, fp16, key, dest):
        calls.append(dest)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real(weights, runtime, size, fp16, key, dest)

    monkeypatch.setattr(cache, "_export", full_disk_once)
    notes = []
    path = cache.cached_artifact(tiny_checkpoint, "onnxruntime", SIZE, note=notes.append)
    assert path.is_file() and path.parent != cache_dir and "No space left on device" in notes[-1]

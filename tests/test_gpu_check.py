"""benchmarks/gpu_check.py --cpu: the GPU machine's script, rehearsed on the CPU with tiny sizes
so that it cannot rot between GPU sessions (and benchmarks/pack_camvid.py, which feeds it)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _fake_camvid(root: Path, frames: dict[str, int], size=(48, 64)) -> Path:
    """A CamVid-layout folder of random PNG frames and labels (ids 0..11, 11 = void)."""
    rng = np.random.default_rng(0)
    for split, n in frames.items():
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(root / split / f"f{i:03d}.png"), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
            cv2.imwrite(str(root / f"{split}annot" / f"f{i:03d}.png"), rng.integers(0, 12, size, dtype=np.uint8))
    return root


def test_pack_camvid_keeps_labels_exact_and_pairs_by_stem(tmp_path: Path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from pack_camvid import pack
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from rtseg.train.data import build_dataset

    src = _fake_camvid(tmp_path / "src", {"train": 3, "val": 2})
    result = pack(src, tmp_path / "packed")
    assert result["frames"] == {"train": 3, "val": 2}
    ds = build_dataset("camvid", tmp_path / "packed", "train+val")
    orig = build_dataset("camvid", src, "train+val")
    assert len(ds) == 5 and all(p[0].suffix == ".jpg" for p in ds.pairs)
    for i in range(5):
        (img, label), (img0, label0) = ds.read(i), orig.read(i)
        np.testing.assert_array_equal(label, label0)  # labels: lossless
        assert np.abs(img.astype(int) - img0).mean() < 12  # images: JPEG q95 of random noise, the worst case


@pytest.mark.slow
def test_gpu_check_cpu_rehearsal_runs_every_step(tmp_path: Path):
    data = _fake_camvid(tmp_path / "camvid", {"train": 6, "val": 3})
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--cpu", "--out", str(out),
                           "--data", str(data)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((out / "gpu_check_all.json").read_text())
    assert summary["environment"]["device"] == "cpu"
    tests = summary["pytest_gpu"]
    assert tests["exit_code"] == 0 and tests["tests"] >= 2 and tests["failures"] == tests["errors"] == 0
    bench = summary["bench"]["64x128"]
    assert bench["exit_code"] == 0 and set(bench["result"]["stages_ms"]) == {"read", "transform", "infer", "post", "write"}
    assert bench["result"]["pipelined"]["fps"] > 0 and bench["pipelined_vs_engine_only"] > 0
    graph = summary["cuda_graph"]["64x128"]  # on the CPU both modes are the eager path: same ids, nothing captured
    assert graph["graph_fps"] > 0 and graph["eager_fps"] > 0 and graph["ids_agree"] == 1.0 and not graph["graph_captured"]
    train = summary["train"]
    assert train["probe"]["images_per_s"] > 0 and train["epochs"] == 2
    for name in ("train", "trainval"):
        run = train["runs"][name]
        assert run["exit_code"] == 0 and run["epochs_run"] == 2 and 0 <= run["final_val_miou"] <= 1
        from rtseg.formats.checkpoint import build_from_checkpoint

        _, meta = build_from_checkpoint(out / run["checkpoint"])
        assert meta.dataset == "camvid" and meta.extra["train_config"]["train_split"] == run["split"]
    assert train["runs"]["trainval"]["split"] == "train+val"

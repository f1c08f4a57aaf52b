"""An OpenVINO IR from another tool (#39): ultralytics' ``format="openvino"`` export, a folder with
the .xml, the .bin and metadata.yaml, runs with no flags (names, x/255, letterbox and size from
metadata.yaml), wrapped once into the cache as an rtseg IR, with the same ids as the model's ONNX
export. The IR here is made the way ultralytics makes its own (the ONNX converted by OpenVINO, the
rt_info and metadata.yaml it writes), not by ultralytics: tests/export/test_tool_parity.py runs
ultralytics' own."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

ov = pytest.importorskip("openvino")

from rtseg.engines import open_engine  # noqa: E402
from rtseg.errors import RtsegError  # noqa: E402

NAMES = ("road", "car", "sky")


class _IdsNet(nn.Module):
    """Ending as ultralytics' semantic exports do (scores at 1/2 enlarged to the input, ArgMax,
    uint8 ids (N, H, W)), with the RGB channels themselves as the 3 classes' scores: a pixel's id
    says which colour the network saw there."""

    def forward(self, x):
        s = nn.functional.avg_pool2d(x, 2)
        s = nn.functional.interpolate(s, size=x.shape[2:], mode="bilinear", align_corners=False)
        return s.argmax(1).to(torch.uint8)


def _exports(folder: Path, size=(96, 160)) -> tuple[Path, Path]:
    """(the ONNX export with ultralytics' metadata, the OpenVINO folder with its metadata.yaml)."""
    import onnx

    onnx_file = folder / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_IdsNet().eval(), (torch.zeros(1, 3, *size),), str(onnx_file), dynamo=False,
                          input_names=["images"], output_names=["output0"], opset_version=17)
    model = onnx.load(str(onnx_file))
    names = "{" + ", ".join(f"{i}: '{n}'" for i, n in enumerate(NAMES)) + "}"
    for k, v in {"author": "Ultralytics", "task": "semantic", "imgsz": str(list(size)), "names": names}.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(onnx_file))
    ir_dir = folder / "m_openvino_model"
    ir_dir.mkdir()
    ir = ov.convert_model(str(onnx_file))
    ir.set_rt_info("YOLO", ["model_info", "model_type"])
    ir.set_rt_info(list(NAMES), ["model_info", "labels"])
    ov.save_model(ir, str(ir_dir / "m.xml"), compress_to_fp16=False)
    (ir_dir / "metadata.yaml").write_text("author: Ultralytics\ntask: semantic\nimgsz:\n- %d\n- %d\nnames:\n%s"
                                          % (*size, "".join(f"  {i}: {n}\n" for i, n in enumerate(NAMES))))
    return onnx_file, ir_dir


def test_an_ultralytics_openvino_folder_runs_with_no_flags_as_its_onnx_does(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSEG_CACHE", str(tmp_path / "cache"))
    onnx_file, ir_dir = _exports(tmp_path)
    notes: list[str] = []
    ir = open_engine(ir_dir, runtime="openvino", precision="fp32", note=notes.append)
    said = " ".join(notes)
    assert "from ultralytics' metadata.yaml beside it (3 classes, x/255, RGB, letterboxed)" in said
    assert "an OpenVINO IR without rtseg metadata" in said
    assert ir.meta.class_names == NAMES and ir.resize == "letterbox" and ir.input_size == (96, 160)
    assert not ir.has_scores  # ids only: the temporal filter and confidence need the ONNX export
    assert "this OpenVINO IR gives class ids only" in ir.no_scores_reason()
    onnx_engine = open_engine(onnx_file, runtime="openvino", precision="fp32", note=lambda _: None)
    for shape in ((120, 160), (90, 200)):  # bands at the sides, and above and below
        frame = np.zeros((*shape, 3), np.uint8)
        frame[:, : shape[1] // 3] = (0, 0, 255)  # BGR: red, green, blue thirds
        frame[:, shape[1] // 3: 2 * shape[1] // 3] = (0, 255, 0)
        frame[:, 2 * shape[1] // 3:] = (255, 0, 0)
        ours = ir.predict(frame)
        assert ours.shape == shape and (ours[:, 5] == 0).all() and (ours[:, -5] == 2).all()  # RGB, not BGR
        assert np.array_equal(ours, onnx_engine.predict(frame))  # same model, same preprocessing
    again: list[str] = []
    open_engine(ir_dir / "m.xml", runtime="openvino", precision="fp32", note=again.append)
    assert not any("wrapped" in n for n in again)  # the cache's entry is reused
    kept = sorted(p.suffix for p in (tmp_path / "cache" / "foreign").iterdir())
    assert kept == [".bin", ".onnx", ".xml"]  # the IR's entry (its .xml and .bin), and the ONNX file's


def test_an_ir_is_refused_in_one_line_where_it_cannot_run(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSEG_CACHE", str(tmp_path / "cache"))
    _, ir_dir = _exports(tmp_path)
    with pytest.raises(RtsegError, match="runs on OpenVINO only"):
        open_engine(ir_dir, runtime="onnxruntime", note=lambda _: None)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RtsegError, match="a folder, with no OpenVINO model in it"):
        open_engine(empty, note=lambda _: None)
    (tmp_path / "junk.xml").write_text("not xml")
    with pytest.raises(RtsegError, match="not a readable OpenVINO IR"):
        open_engine(tmp_path / "junk.xml", note=lambda _: None)

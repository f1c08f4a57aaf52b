"""Run by tests/export/test_tool_parity.py in the tools' own Python (``RTSEG_TOOLS_PYTHON``: a
virtual environment with ultralytics and transformers, as .ci/run makes it), never imported by
rtseg's: each tool makes its model file, its own way, and predicts on the frames the test gives.

    python tool_models.py ultralytics|segformer FRAMES.npz OUT_DIR

FRAMES.npz holds BGR uint8 frames (H, W, 3) under ``f0``, ``f1``, ... (any sizes). Writes
OUT_DIR/<model files>, OUT_DIR/predicted.npz (the tool's class ids for frame ``fK`` under ``fK``, at
its size) and OUT_DIR/made.json (what was made, with which versions).

How the tools were installed (.ci/run): ``pip install torch==2.13.0 ultralytics transformers
onnx onnxslim``. pip then brings PyPI's torchvision, built against CUDA torch: with the CPU torch
its C operators do not load, and ``import torchvision`` stops at registering fakes for two of
them. :func:`_torchvision_without_c_ops` declares those two (nms, qnms) so the import works;
neither tool calls them here (semantic segmentation has no NMS)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch


def _torchvision_without_c_ops() -> None:
    try:
        import torchvision  # noqa: F401  (a torchvision whose C operators load: nothing to do)
        return
    except RuntimeError:
        for name in [m for m in sys.modules if m.startswith("torchvision")]:
            del sys.modules[name]
    lib = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _torchvision_without_c_ops.lib = lib  # kept alive: dropping it undefines the operators


def _openvino_at_fp32() -> None:
    """ultralytics compiles its OpenVINO model at OpenVINO's default precision (bf16 on CPUs with
    AMX), whose rounding flips a fifth of a random-weight model's pixels against fp32: pinned to
    fp32 here, as rtseg's side of the test is, so the comparison is of the preprocessing."""
    import openvino as ov

    plain = ov.Core.compile_model

    def at_fp32(self, model, device_name=None, config=None, **kw):
        return plain(self, model, device_name, {**(config or {}), "INFERENCE_PRECISION_HINT": "f32"}, **kw)

    ov.Core.compile_model = at_fp32


def _calibrate(model: torch.nn.Module, forward, frames: dict, size: tuple[int, int], head: torch.nn.Conv2d) -> None:
    """Random weights stand in for trained ones, made to behave like them: BatchNorm's statistics
    measured on the frames (fresh ones, mean 0 and var 1, let the signal fade with depth until
    the class map hardly depends on the picture), and each class's score centred and scaled on
    them, so that every class wins somewhere and the map has regions and edges, as a trained
    model's has. ``forward`` maps an RGB 0..1 batch (N, 3, h, w) to class scores."""
    batch = torch.cat([torch.nn.functional.interpolate(
        torch.from_numpy(np.ascontiguousarray(f[..., ::-1])).permute(2, 0, 1)[None].float() / 255, size=size,
        mode="bilinear") for f in frames.values()])
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a plain average over the calibration batch
    model.train()
    with torch.no_grad():
        forward(batch)
        model.eval()
        scores = forward(batch)
        mean, std = scores.mean((0, 2, 3)), scores.std((0, 2, 3))
        head.bias.sub_(mean).div_(std)
        head.weight.div_(std.view(-1, 1, 1, 1))


def ultralytics_model(frames: np.ndarray, out: Path, imgsz: tuple[int, int] = (384, 640)) -> dict:
    """yolo26n-sem built from ultralytics' own yaml (random weights, seed 0, calibrated), exported by
    ultralytics at ``imgsz`` to ONNX and to OpenVINO, and ultralytics' ``predict`` on each export
    (predicted.npz, predicted_openvino.npz)."""
    _torchvision_without_c_ops()
    import ultralytics
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO("yolo26n-sem.yaml", task="semantic")
    net = model.model
    _calibrate(net, net, frames, imgsz, net.model[-1].classifier[-1])
    exported = Path(model.export(format="onnx", imgsz=imgsz, device="cpu"))
    target = out / "yolo26n-sem.onnx"
    exported.replace(target)
    onnx_model = YOLO(str(target), task="semantic")
    ids = {k: onnx_model.predict(f, imgsz=imgsz, device="cpu", verbose=False)[0].semantic_mask.data.cpu().numpy()
           for k, f in frames.items()}  # BGR frames, as cv2 reads them
    np.savez_compressed(out / "predicted.npz", **{k: v.astype(np.uint8) for k, v in ids.items()})
    ov_dir = Path(model.export(format="openvino", imgsz=imgsz, device="cpu"))  # its OpenVINO export, predicted too
    target_ov = out / ov_dir.name
    ov_dir.replace(target_ov)
    _openvino_at_fp32()
    ov_model = YOLO(str(target_ov), task="semantic")
    ids = {k: ov_model.predict(f, imgsz=imgsz, device="cpu", verbose=False)[0].semantic_mask.data.cpu().numpy()
           for k, f in frames.items()}
    np.savez_compressed(out / "predicted_openvino.npz", **{k: v.astype(np.uint8) for k, v in ids.items()})
    return {"tool": "ultralytics", "openvino_model": target_ov.name, "version": ultralytics.__version__, "model": target.name, "imgsz": list(imgsz),
            "names": len(onnx_model.names)}


def segformer_model(frames: np.ndarray, out: Path, size: tuple[int, int] = (256, 320)) -> dict:
    """A small SegFormer (transformers, random weights, seed 0, calibrated) exported with torch.onnx beside its
    config.json and preprocessor_config.json (as ``save_pretrained`` writes them), and transformers'
    own preprocessing and ``post_process_semantic_segmentation`` on the frames."""
    _torchvision_without_c_ops()
    import transformers
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    torch.manual_seed(0)
    labels = ["road", "car", "person", "sky", "tree", "building"]
    config = SegformerConfig(num_labels=len(labels), id2label=dict(enumerate(labels)),
                             label2id={n: i for i, n in enumerate(labels)}, hidden_sizes=[16, 32, 64, 128],
                             decoder_hidden_size=64, num_attention_heads=[1, 2, 4, 8], depths=[1, 1, 1, 1])
    model = SegformerForSemanticSegmentation(config).eval()
    _calibrate(model, lambda x: model(pixel_values=x).logits, frames, size, model.decode_head.classifier)
    processor = SegformerImageProcessor(size={"height": size[0], "width": size[1]})
    model.save_pretrained(out)  # config.json (id2label)
    processor.save_pretrained(out)  # preprocessor_config.json (image_mean, image_std, size)
    (out / "model.safetensors").unlink(missing_ok=True)  # the ONNX file carries the weights

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return self.m(pixel_values=pixel_values).logits

    torch.onnx.export(Logits(model).eval(), (torch.zeros(1, 3, *size),), str(out / "segformer.onnx"), dynamo=False,
                      input_names=["pixel_values"], output_names=["logits"], opset_version=17)
    ids = {}
    with torch.no_grad():
        for k, f in frames.items():
            output = model(**processor(images=np.ascontiguousarray(f[..., ::-1]), return_tensors="pt"))  # RGB
            ids[k] = processor.post_process_semantic_segmentation(output, target_sizes=[f.shape[:2]])[0]
    np.savez_compressed(out / "predicted.npz", **{k: v.numpy().astype(np.uint8) for k, v in ids.items()})
    return {"tool": "transformers", "version": transformers.__version__, "model": "segformer.onnx",
            "size": list(size), "names": len(labels)}


def main(argv: list[str]) -> None:
    tool, frames_file, out = argv
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with np.load(frames_file) as npz:
        frames = {k: npz[k] for k in npz.files}
    made = {"ultralytics": ultralytics_model, "segformer": segformer_model}[tool](frames, out)
    (out / "made.json").write_text(json.dumps(made))


if __name__ == "__main__":
    main(sys.argv[1:])
